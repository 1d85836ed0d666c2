//! istioctl-proxy's integration tests, one test binary: a module per
//! behaviour, `support` for what they share (fake-istiod replicas on
//! 127.0.0.x, the proxy on 127.0.0.1:0, istioctl's client).

mod support;

mod accept_backoff;
mod auth;
mod authz_every_type;
mod config_dump_owner;
mod config_dump_silent_replicas;
#[cfg(feature = "test-defects")]
mod defects;
mod full_disk;
mod hardening;
mod hostile_replicas;
mod manifest;
#[cfg(feature = "test-defects")]
mod memory_bound;
mod operations;
mod replica_failures;
mod scale;
mod syncz_merge;
