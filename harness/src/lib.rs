//! The conformance harness: an istioctl-faithful client and table renderer, the
//! conformance checks, the topologies they run on, and reports. The
//! `proxy-conformance` binary is a thin CLI over this library.
//!
//! The flow of `proxy-conformance run`, and the module of each step:
//!
//! | step | module |
//! |---|---|
//! | options, flags and the options file → a [`config::RunConfig`] | [`config`] |
//! | a scenario (YAML) → a control plane and the proxy under test, as a session | [`topology`] (`local`, `docker`, `cluster`, `real-istio`) |
//! | what istioctl sends, decodes and prints | [`client`] (the `istioctl-client` crate), [`decode`], [`render`], [`ps`] |
//! | the check API: context, outcomes, shared helpers, timeouts | [`suite`] |
//! | the checks, one file each | [`checks`] |
//! | select, group, open, run, tally | [`runner`] |
//! | terminal, YAML and JUnit reports | [`report`] |
//! | the `run` and `checks` commands | [`run_command`] |
//! | `real-istio up`, `walkthrough`, `down` | [`real_istio_command`] |
//!
//! Imports go one way: `suite` imports none of `checks`, `runner`,
//! `topology`, `config`; `checks` and `topology` import `suite` only;
//! `config` maps `--topology` to a [`topology::Topology`]; `runner` drives
//! them all without naming a topology.

pub use istioctl_client as client;

pub mod checks;
pub mod config;
pub mod decode;
pub mod output;
pub mod ps;
pub mod real_istio_command;
pub mod render;
pub mod report;
pub mod run_command;
pub mod runner;
pub mod suite;
pub mod topology;
