//! The check API: what a check is ([`Check`], declared with [`check!`](crate::check)),
//! what it gets ([`CheckContext`]: the control plane, the proxy under test, the
//! expected tables), what it returns ([`Checked`]), the helpers checks share and
//! their timeouts. The checks, the runner and the topologies import this
//! module; it imports none of them.

pub mod attacks;
pub mod context;
pub mod control_plane;
pub mod helpers;
pub mod memory;
pub mod output_log;
pub mod snapshots;
pub mod tables;

use futures::future::BoxFuture;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

pub use context::CheckContext;
pub use control_plane::Capability;

/// What every check file imports.
pub mod prelude {
    pub use super::context::{CheckContext as Ctx, ClientErrorExt};
    pub use super::helpers::*;
    pub use super::{
        Capability, Check, Checked, Feature, Isolation, Profile, Verdict, fail, skip, verdict,
    };
}

/// Longest a single check may take on one scenario (istioctl's 30 s timeout
/// plus room): past it the check fails instead of hanging the run.
pub const CHECK_BOUND: Duration = Duration::from_secs(60);

/// A profile groups checks like gateway-api's conformance profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// What every istioctl user needs.
    Core,
    /// Faults of replicas, scale and concurrency.
    Resilience,
    /// Authentication, authorization and transport security.
    Security,
    /// Hostile clients: garbage, malformed and oversized requests, floods of
    /// connections, and every request type against every caller namespace.
    Robustness,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Core,
        Profile::Resilience,
        Profile::Security,
        Profile::Robustness,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Profile::Core => "core",
            Profile::Resilience => "resilience",
            Profile::Security => "security",
            Profile::Robustness => "robustness",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Optional behaviours a proxy may support; a check that requires one the
/// proxy does not claim (`--supported-features`) is skipped, visibly.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    clap::ValueEnum,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    /// Serves TLS.
    Tls,
    /// Answers `istio.io/debug/config_dump` (istioctl proxy-status <pod>.<ns>).
    ConfigDump,
    /// Finds its replicas by DNS (a headless Service's name) and follows
    /// them as they come and go (the docker topology's dns-discovery check).
    DnsDiscovery,
}

impl Feature {
    pub const ALL: [Feature; 3] = [Feature::Tls, Feature::ConfigDump, Feature::DnsDiscovery];
    pub fn name(self) -> &'static str {
        match self {
            Feature::Tls => "tls",
            Feature::ConfigDump => "config-dump",
            Feature::DnsDiscovery => "dns-discovery",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Why, in words a proxy author can act on (may span several lines, e.g. a diff).
    Fail(String),
    /// Why the check did not run.
    Skip(String),
}

impl Outcome {
    pub fn fail(msg: impl Into<String>) -> Self {
        Outcome::Fail(msg.into())
    }
}

impl From<Checked> for Outcome {
    fn from(checked: Checked) -> Self {
        match checked {
            Ok(()) => Outcome::Pass,
            Err(Verdict::Fail(why)) => Outcome::Fail(why),
            Err(Verdict::Skip(why)) => Outcome::Skip(why),
        }
    }
}

/// What a check body returns: `Ok(())` passes; `Err` fails or skips, with the
/// reason. A failure anywhere propagates with `?` (a `String` error is a failure).
pub type Checked = Result<(), Verdict>;

/// Why a check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Why, in words a proxy author can act on.
    Fail(String),
    /// Why the check could not run here.
    Skip(String),
}

impl From<String> for Verdict {
    fn from(why: String) -> Self {
        Verdict::Fail(why)
    }
}

impl From<&str> for Verdict {
    fn from(why: &str) -> Self {
        Verdict::Fail(why.to_string())
    }
}

/// A failure with this reason.
pub fn fail(why: impl Into<String>) -> Verdict {
    Verdict::Fail(why.into())
}

/// A skip with this reason.
pub fn skip(why: impl Into<String>) -> Verdict {
    Verdict::Skip(why.into())
}

/// Passes when there are no problems, else fails with them all, one a line.
pub fn verdict(problems: Vec<String>) -> Checked {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Verdict::Fail(problems.join("\n")))
    }
}

/// The async body of a check (declared with [`check!`](crate::check)).
pub type CheckFn = for<'a> fn(&'a CheckContext) -> BoxFuture<'a, Checked>;

/// One conformance check.
pub struct Check {
    /// Stable id (used by `--run-check`, `--skip-check` and in reports).
    pub id: &'static str,
    pub profile: Profile,
    pub description: &'static str,
    /// Features the proxy must claim for the check to run.
    pub features: &'static [Feature],
    /// What the topology must be able to do for the check to run (on one
    /// that cannot, the check is skipped with the reason).
    pub needs: &'static [Capability],
    /// Scenario names (files in `scenarios/` without `.yaml`) it runs on, in
    /// order, on a topology with a scripted mesh; elsewhere it runs once, on
    /// the live mesh.
    pub scenarios: &'static [&'static str],
    /// Whether it may run beside other checks (default: it may).
    pub isolation: Isolation,
    pub run: CheckFn,
}

/// Whether a check may run while other checks run (scenarios run side by
/// side, `run --jobs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Runs beside any other check: what it judges does not depend on the
    /// rest of the machine (it waits on hung replicas, compares answers, or
    /// has bounds far above what load could add).
    #[default]
    Shared,
    /// Judges how fast the proxy answers against a bound that load could
    /// blur (e.g. one replica's delay against the sum of all): never runs
    /// beside an [`Alone`](Isolation::Alone) check.
    Timed,
    /// Measures the proxy's memory or loads the machine on purpose (floods,
    /// idle connections, slow readers, large meshes): never runs beside
    /// another `Alone` or a `Timed` check, nor while a scenario starts or
    /// stops, so its numbers mean what they mean when it runs alone.
    Alone,
}

impl Check {
    /// What [`check!`](crate::check) fills in for the fields a check leaves
    /// out (today only `isolation`).
    pub const DEFAULTS: Check = Check {
        id: "",
        profile: Profile::Core,
        description: "",
        features: &[],
        needs: &[],
        scenarios: &[],
        isolation: Isolation::Shared,
        run: |_| Box::pin(async { Ok(()) }),
    };
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Declares a check module's `CHECK` from its fields; its body is the module's
/// `async fn run(ctx: &CheckContext) -> Checked`. `isolation` may be left out
/// ([`Isolation::Shared`]).
///
/// ```ignore
/// harness::check! {
///     id: "syncz-union",
///     profile: Profile::Core,
///     description: "...",
///     features: &[],
///     needs: &[],
///     scenarios: &["three-replicas"],
///     isolation: Isolation::Alone, // optional
/// }
/// ```
#[macro_export]
macro_rules! check {
    ($($field:ident: $value:expr),* $(,)?) => {
        #[allow(clippy::needless_update)]
        pub static CHECK: $crate::suite::Check = $crate::suite::Check {
            $($field: $value,)*
            run: |ctx| ::std::boxed::Box::pin(run(ctx)),
            ..$crate::suite::Check::DEFAULTS
        };
    };
}
