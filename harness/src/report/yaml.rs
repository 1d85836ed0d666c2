//! The machine-readable report, in the style of gateway-api's ConformanceReport.

use super::{ProfileResult, RunReport};
use crate::suite::Outcome;
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    api_version: &'static str,
    kind: &'static str,
    implementation: &'a super::Implementation,
    date: &'a str,
    mode: &'a str,
    istioctl_versions: &'a [String],
    duration_seconds: f64,
    /// Only in the report of a run that ended early: why, and which checks
    /// did not finish (those that did are in `profiles`).
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped: Option<&'a str>,
    profiles: Vec<ProfileDoc>,
    succeeded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProfileDoc {
    name: &'static str,
    result: ProfileResult,
    statistics: Statistics,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failed_tests: Vec<Entry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped_tests: Vec<Entry>,
    /// What checks measured (e.g. peak memory under an attack), whatever their outcome.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    measurements: Vec<Measurement>,
}

#[derive(Serialize)]
struct Measurement {
    id: String,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct Statistics {
    passed: usize,
    failed: usize,
    skipped: usize,
}

#[derive(Serialize)]
struct Entry {
    id: String,
    reason: String,
}

/// Renders the report as YAML.
pub fn render(report: &RunReport) -> Result<String, serde_yaml_ng::Error> {
    let profiles = report
        .profiles()
        .into_iter()
        .map(|s| {
            let entries = |want_fail: bool| {
                report
                    .results
                    .iter()
                    .filter(|r| r.profile == s.profile)
                    .filter_map(|r| match (&r.outcome, want_fail) {
                        (Outcome::Fail(why), true) | (Outcome::Skip(why), false) => Some(Entry {
                            id: r.id.clone(),
                            reason: why.clone(),
                        }),
                        _ => None,
                    })
                    .collect()
            };
            ProfileDoc {
                name: s.profile.name(),
                result: s.result,
                statistics: Statistics {
                    passed: s.passed,
                    failed: s.failed,
                    skipped: s.skipped,
                },
                failed_tests: entries(true),
                skipped_tests: entries(false),
                measurements: report
                    .results
                    .iter()
                    .filter(|r| r.profile == s.profile && !r.notes.is_empty())
                    .map(|r| Measurement {
                        id: r.id.clone(),
                        notes: r.notes.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    serde_yaml_ng::to_string(&Document {
        api_version: "proxy-conformance.dev/v1alpha1",
        kind: "ConformanceReport",
        implementation: &report.implementation,
        date: &report.date,
        mode: &report.mode,
        istioctl_versions: &report.istioctl_versions,
        duration_seconds: (report.duration.as_secs_f64() * 1000.0).round() / 1000.0,
        stopped: report.stopped.as_deref(),
        profiles,
        succeeded: report.succeeded(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn yaml_report() {
        let text = super::render(&crate::report::tests::sample()).expect("renders");
        insta::assert_snapshot!(text);
    }

    /// A run that stopped early says so, and does not succeed.
    #[test]
    fn a_stopped_run_says_so() {
        let mut report = crate::report::tests::sample();
        report
            .results
            .retain(|r| r.outcome == crate::suite::Outcome::Pass);
        report.stopped = Some("interrupted (Ctrl-C); not finished: tls".into());
        let text = super::render(&report).expect("renders");
        assert!(
            text.contains("stopped: 'interrupted (Ctrl-C); not finished: tls'"),
            "{text}"
        );
        assert!(text.contains("succeeded: false"), "{text}");
    }

    /// What a check measured is in the report whatever its outcome, under
    /// its profile; checks that measured nothing add nothing.
    #[test]
    fn measurements_are_listed_per_profile() {
        let mut report = crate::report::tests::sample();
        report.results[0].notes = vec!["peak memory 54 MiB (baseline 20 MiB, +34 MiB)".into()];
        let id = report.results[0].id.clone();
        let text = super::render(&report).expect("renders");
        let at = text.find("measurements:").expect("a measurements list");
        let rest = &text[at..];
        assert!(rest.contains(&format!("id: {id}")), "{text}");
        assert!(rest.contains("peak memory 54 MiB"), "{text}");
        assert_eq!(text.matches("measurements:").count(), 1, "{text}");
    }
}
