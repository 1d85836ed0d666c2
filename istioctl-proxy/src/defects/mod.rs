//! Deliberate defects, so the conformance suite can prove each check fails on a
//! broken proxy. Only settable with the `test-defects` cargo feature (never a
//! flag of the real binary); without it [`crate::ProxyConfig`] has no `defects`.
//!
//! The proxy reaches them only through the seams of [`Defects`] (`seams.rs`):
//! a handful of named points that take what the correct proxy would do and
//! return what this one does. Every defect's logic lives in this module;
//! without the feature no defect is ever on.

mod config_dump;
mod defect;
mod seams;
mod stream;

pub(crate) use config_dump::AskReplicas;
pub use defect::Defect;
pub(crate) use seams::Defects;
