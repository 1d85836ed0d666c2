//! What a person sees: one line per check as it finishes, then a summary.
//! Colour only when writing to a terminal (and `NO_COLOR` is unset).

use super::{CheckResult, ProfileResult, RunReport};
use crate::suite::Outcome;
use std::io::IsTerminal;

/// ANSI styling, off unless the output is a TTY.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour iff stdout is a terminal and NO_COLOR is not set.
    pub fn detect() -> Self {
        Style {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn green(&self, t: &str) -> String {
        self.paint("32", t)
    }
    fn red(&self, t: &str) -> String {
        self.paint("31", t)
    }
    fn yellow(&self, t: &str) -> String {
        self.paint("33", t)
    }
    fn dim(&self, t: &str) -> String {
        self.paint("2", t)
    }
}

/// The line printed when a check finishes, e.g.
/// `[ 2/23] FAIL  core        config-dump-owner          0.040s` and, for a
/// failure or skip, its reason indented below.
pub fn check_line(style: Style, index: usize, total: usize, r: &CheckResult) -> String {
    let width = total.to_string().len();
    let (tag, reason) = match &r.outcome {
        Outcome::Pass => (style.green("PASS"), None),
        Outcome::Fail(why) => (style.red("FAIL"), Some(why.as_str())),
        Outcome::Skip(why) => (style.yellow("SKIP"), Some(why.as_str())),
    };
    let mut line = format!(
        "[{index:>width$}/{total}] {tag}  {:<11} {:<26} {}",
        r.profile.name(),
        r.id,
        style.dim(&format!("{:.3}s", r.duration.as_secs_f64())),
    );
    if let Some(why) = reason {
        for l in why.lines() {
            line.push_str("\n        ");
            line.push_str(l);
        }
    }
    for l in r.notes.iter().flat_map(|n| n.lines()) {
        line.push_str("\n        ");
        line.push_str(&style.dim(l));
    }
    if let (Outcome::Fail(_), Some(out)) = (&r.outcome, &r.proxy_output) {
        line.push_str("\n        --- proxy output (last lines) ---");
        for l in out.lines() {
            line.push_str("\n        | ");
            line.push_str(l);
        }
    }
    line
}

/// The closing summary.
pub fn summary(style: Style, report: &RunReport) -> String {
    let mut s = String::from("\nProfile      Result    Passed  Failed  Skipped\n");
    for p in report.profiles() {
        let result = match p.result {
            ProfileResult::Success => style.green("success "),
            ProfileResult::Partial => style.yellow("partial "),
            ProfileResult::Failure => style.red("failure "),
        };
        s.push_str(&format!(
            "{:<12} {result}  {:>6}  {:>6}  {:>7}\n",
            p.profile.name(),
            p.passed,
            p.failed,
            p.skipped
        ));
    }
    let passed = report.count(|o| matches!(o, Outcome::Pass));
    let failed = report.count(|o| matches!(o, Outcome::Fail(_)));
    let skipped = report.count(|o| matches!(o, Outcome::Skip(_)));
    if let Some(why) = &report.stopped {
        s.push_str(&format!("\n{} {why}\n", style.red("STOPPED:")));
    }
    let verdict = if failed > 0 || report.stopped.is_some() {
        style.red("FAILED")
    } else if skipped > 0 {
        style.yellow("PASSED (partial)")
    } else {
        style.green("PASSED")
    };
    s.push_str(&format!(
        "\n{verdict}: {passed} passed, {failed} failed, {skipped} skipped in {:.1}s\n",
        report.duration.as_secs_f64()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary_without_colour() {
        let report = crate::report::tests::sample();
        let style = Style { color: false };
        let mut out = String::new();
        for (i, r) in report.results.iter().enumerate() {
            out.push_str(&check_line(style, i + 1, report.results.len(), r));
            out.push('\n');
        }
        out.push_str(&summary(style, &report));
        insta::assert_snapshot!(out);
    }

    #[test]
    fn colour_only_when_asked() {
        let r = &crate::report::tests::sample().results[0];
        assert!(!check_line(Style { color: false }, 1, 1, r).contains('\x1b'));
        assert!(check_line(Style { color: true }, 1, 1, r).contains("\x1b[32mPASS"));
    }

    /// A passing check's measurement shows under its line.
    #[test]
    fn notes_show_under_a_pass() {
        let mut r = crate::report::tests::sample().results[0].clone();
        assert_eq!(r.outcome, Outcome::Pass);
        r.notes = vec!["peak memory 54 MiB (baseline 20 MiB, +34 MiB)".into()];
        let line = check_line(Style { color: false }, 1, 1, &r);
        assert!(
            line.ends_with("\n        peak memory 54 MiB (baseline 20 MiB, +34 MiB)"),
            "{line}"
        );
    }
}
