//! JUnit XML for CI systems: one testsuite per profile, one testcase per check.

use super::RunReport;
use crate::suite::Outcome;
use std::fmt::Write;

/// Escapes text for XML attribute and element content.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Renders the report as JUnit XML.
pub fn render(report: &RunReport) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let name = if report.implementation.project.is_empty() {
        "proxy-conformance".to_string()
    } else {
        format!("proxy-conformance: {}", report.implementation.project)
    };
    let total = report.results.len();
    let failures = report.count(|o| matches!(o, Outcome::Fail(_)));
    let skipped = report.count(|o| matches!(o, Outcome::Skip(_)));
    // write! into a String cannot fail.
    let _ = writeln!(
        x,
        "<testsuites name=\"{}\" tests=\"{total}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\" timestamp=\"{}\">",
        esc(&name),
        report.duration.as_secs_f64(),
        esc(&report.date)
    );
    // A run that ended early: an error CI systems show, with why.
    if let Some(why) = &report.stopped {
        let _ = writeln!(
            x,
            "  <testsuite name=\"run\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"{:.3}\">\n    <testcase classname=\"run\" name=\"stopped early\" time=\"{:.3}\">\n      <error message=\"{}\"/>\n    </testcase>\n  </testsuite>",
            report.duration.as_secs_f64(),
            report.duration.as_secs_f64(),
            esc(why)
        );
    }
    for summary in report.profiles() {
        let results: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.profile == summary.profile)
            .collect();
        let time: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{time:.3}\">",
            summary.profile,
            results.len(),
            summary.failed,
            summary.skipped
        );
        for r in results {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                summary.profile,
                esc(&r.id),
                r.duration.as_secs_f64()
            );
            match &r.outcome {
                Outcome::Pass => x.push_str("/>\n"),
                Outcome::Skip(why) => {
                    let _ = writeln!(
                        x,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        esc(why)
                    );
                }
                Outcome::Fail(why) => {
                    let first = why.lines().next().unwrap_or_default();
                    let _ = writeln!(
                        x,
                        ">\n      <failure message=\"{}\">{}</failure>",
                        esc(first),
                        esc(why)
                    );
                    if let Some(out) = &r.proxy_output {
                        let _ = writeln!(x, "      <system-out>{}</system-out>", esc(out));
                    }
                    x.push_str("    </testcase>\n");
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    #[test]
    fn junit_report() {
        insta::assert_snapshot!(super::render(&crate::report::tests::sample()));
    }

    #[test]
    fn a_stopped_run_is_an_error() {
        let mut report = crate::report::tests::sample();
        let whole = super::render(&report);
        assert!(!whole.contains("<error"), "{whole}");
        report.stopped = Some("interrupted (Ctrl-C)".into());
        let text = super::render(&report);
        assert!(
            text.contains("<testcase classname=\"run\" name=\"stopped early\"")
                && text.contains("<error message=\"interrupted (Ctrl-C)\"/>"),
            "{text}"
        );
    }

    #[test]
    fn escapes_control_characters() {
        assert_eq!(super::esc("a\u{1}b<&>"), "a\u{FFFD}b&lt;&amp;&gt;");
    }
}
