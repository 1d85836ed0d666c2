//! fake-istiod's integration tests, one binary: one module per behaviour, and
//! `support` for what they share (the fake itself starts through
//! `fake_istiod::testing`).

mod support;

mod asked;
mod auth_matrix;
mod cli;
mod control_api;
mod faults;
mod key_files;
mod loopback;
mod replica_processes;
mod scenario_validation;
mod syncz_shapes;
