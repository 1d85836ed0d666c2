//! The harness's integration tests: one test binary, one module per
//! behaviour, all sharing `support` (tests/support/).
//!
//! Two suites have binaries of their own: `docker_topology` (the docker tier,
//! against a real engine) and `subreaper` (it makes its process a child
//! subreaper, which would adopt every other test's orphans).
//!
//! The snapshots of `render_families` and `scenario_families` are in
//! `snapshots/` next to this file (insta names them `integration__<module>__…`);
//! the expected tables of `table_snapshots` are the workspace's `snapshots/`,
//! which the runner reads too.

#[path = "../support/mod.rs"]
mod support;

mod client_ack;
mod client_tls;
mod closed_stdout;
mod cluster_topology;
mod daemon;
mod interrupt;
mod istioctl_golden;
mod proxy_addr;
mod proxy_cmd;
mod ps_loopback;
mod readme_catalog;
mod real_istio;
mod reference_passes;
mod render_families;
mod scenario_families;
mod table_snapshots;
mod teeth;
