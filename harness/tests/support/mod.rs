//! Shared by the harness's integration tests (the `integration` binary and
//! the docker tier's `docker_topology`): one module per kind of help.
#![allow(dead_code)]

pub mod process;
pub mod run;
pub mod scenarios;
pub mod syncz;
