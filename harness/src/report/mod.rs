//! The results of a run and the three ways they are reported: the terminal
//! (`terminal`, and `live` while checks run), a gateway-api style YAML report
//! (`yaml`) and JUnit XML (`junit`).

pub mod junit;
pub mod live;
pub mod terminal;
pub mod yaml;

use crate::suite::{Outcome, Profile};
use std::time::Duration;

/// Who is being tested (from `--implementation-*` flags).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Implementation {
    #[serde(default)]
    pub organization: String,
    #[serde(default)]
    pub project: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub contact: Vec<String>,
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub id: String,
    pub profile: Profile,
    pub description: String,
    pub outcome: Outcome,
    pub duration: Duration,
    /// Output of the proxy under test while the failing check ran (only kept on failure).
    pub proxy_output: Option<String>,
    /// What the check measured (e.g. peak memory under an attack), whatever the outcome.
    pub notes: Vec<String>,
}

/// success: all ran and passed; partial: none failed but some were skipped;
/// failure: at least one failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileResult {
    Success,
    Partial,
    Failure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSummary {
    pub profile: Profile,
    pub result: ProfileResult,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub implementation: Implementation,
    /// RFC 3339 date of the run.
    pub date: String,
    /// How the proxy was run: `bundled`, `command`, `address` (local topology);
    /// `cluster service` (the deployed proxy's Service), `cluster address`.
    pub mode: String,
    /// The istioctl families the tables were rendered for.
    pub istioctl_versions: Vec<String>,
    pub results: Vec<CheckResult>,
    pub duration: Duration,
    /// Why the run ended before every selected check ran (interrupted, the
    /// proxy never came up, a topology that could not start): `results`
    /// then hold what concluded before. `None` for a whole run.
    pub stopped: Option<String>,
}

impl RunReport {
    /// Per profile that has at least one selected check, in profile order.
    pub fn profiles(&self) -> Vec<ProfileSummary> {
        Profile::ALL
            .into_iter()
            .filter_map(|profile| {
                let of: Vec<&CheckResult> = self
                    .results
                    .iter()
                    .filter(|r| r.profile == profile)
                    .collect();
                if of.is_empty() {
                    return None;
                }
                let count = |f: fn(&Outcome) -> bool| of.iter().filter(|r| f(&r.outcome)).count();
                let passed = count(|o| matches!(o, Outcome::Pass));
                let failed = count(|o| matches!(o, Outcome::Fail(_)));
                let skipped = count(|o| matches!(o, Outcome::Skip(_)));
                let result = if failed > 0 {
                    ProfileResult::Failure
                } else if skipped > 0 {
                    ProfileResult::Partial
                } else {
                    ProfileResult::Success
                };
                Some(ProfileSummary {
                    profile,
                    result,
                    passed,
                    failed,
                    skipped,
                })
            })
            .collect()
    }

    /// True when the whole run ran and no selected check failed (skips do
    /// not fail a run, they make it partial).
    pub fn succeeded(&self) -> bool {
        self.stopped.is_none()
            && !self
                .results
                .iter()
                .any(|r| matches!(r.outcome, Outcome::Fail(_)))
    }

    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> RunReport {
        let r = |id: &str, profile, outcome, ms| CheckResult {
            id: id.to_string(),
            profile,
            description: format!("{id} does its thing"),
            outcome,
            duration: Duration::from_millis(ms),
            proxy_output: None,
            notes: vec![],
        };
        RunReport {
            implementation: Implementation {
                organization: "example".into(),
                project: "my-proxy".into(),
                url: "https://example.com/my-proxy".into(),
                version: "v0.3.0".into(),
                contact: vec!["@me".into()],
            },
            date: "2026-11-22T02:00:00Z".into(),
            mode: "command".into(),
            istioctl_versions: vec!["1.12".into(), "1.30".into()],
            results: vec![
                r("syncz-union", Profile::Core, Outcome::Pass, 12),
                r(
                    "config-dump-owner",
                    Profile::Core,
                    Outcome::Fail("replica istiod-c owns a.b but the answer was empty\n<second line & \"quotes\">".into()),
                    40,
                ),
                r("replica-down", Profile::Resilience, Outcome::Pass, 30),
                r(
                    "replica-hang",
                    Profile::Resilience,
                    Outcome::Skip("requires feature annotate-partial".into()),
                    0,
                ),
                r("tls", Profile::Security, Outcome::Pass, 5),
            ],
            duration: Duration::from_millis(1234),
            stopped: None,
        }
    }

    #[test]
    fn profile_results() {
        let p = sample().profiles();
        assert_eq!(p.len(), 3);
        assert_eq!(
            (p[0].result, p[0].passed, p[0].failed),
            (ProfileResult::Failure, 1, 1)
        );
        assert_eq!((p[1].result, p[1].skipped), (ProfileResult::Partial, 1));
        assert_eq!(p[2].result, ProfileResult::Success);
        assert!(!sample().succeeded());
    }
}
