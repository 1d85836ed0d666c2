//! Expected `istioctl proxy-status` output per scenario and istioctl family:
//! insta snapshot files in `snapshots/`, read the same way by `cargo test`
//! (through insta) and by the runner against any proxy.

use proto::IstioctlFamily;
use std::collections::BTreeMap;
use std::path::Path;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}
pub use embedded::SCENARIOS as EMBEDDED_SCENARIOS;

/// Which rendering of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// The default table.
    Table,
    /// `-v 1` (1.27+).
    Verbose,
    /// `-o json` (1.30+).
    Json,
}

impl View {
    pub fn suffix(self) -> &'static str {
        match self {
            View::Table => "",
            View::Verbose => "-v1",
            View::Json => "-json",
        }
    }
    /// The views a family has.
    pub fn of(family: IstioctlFamily) -> &'static [View] {
        match family {
            IstioctlFamily::V1_27 => &[View::Table, View::Verbose],
            IstioctlFamily::V1_30 => &[View::Table, View::Verbose, View::Json],
            _ => &[View::Table],
        }
    }
}

/// `three-replicas@1.30`, `three-replicas@1.30-v1`, ...: the snapshot's name
/// (its file is `snapshots/<name>.snap`).
pub fn snapshot_name(scenario: &str, family: IstioctlFamily, view: View) -> String {
    format!("{scenario}@{}{}", family.label(), view.suffix())
}

/// The content of an insta `.snap` file (the part after its metadata header).
pub fn snap_body(file: &str) -> &str {
    let Some(rest) = file.strip_prefix("---\n") else {
        return file;
    };
    match rest.find("\n---\n") {
        Some(i) => &rest[i + 5..],
        None => file,
    }
}

/// Replaces what legitimately differs between runs (status ages such as
/// `SYNCED (5m)`, nonces) with fixed tokens. Applied to both sides of a comparison.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // Ages: "(<digits><unit>...)" right after a status word.
    while let Some(i) = rest.find('(') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(')');
        let is_age = end.is_some_and(|e| {
            let inner = &after[..e];
            !inner.is_empty()
                && inner.as_bytes()[0].is_ascii_digit()
                && inner
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.')
                && inner.bytes().any(|b| b.is_ascii_alphabetic())
        });
        match (is_age, end) {
            (true, Some(e)) => {
                out.push_str("(<age>)");
                rest = &after[e + 1..];
            }
            _ => {
                out.push('(');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A unified diff of expected vs actual, for failure messages.
pub fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .context_radius(3)
        .header("expected (snapshot)", "actual (through the proxy)")
        .to_string()
}

/// Compares modulo redactions and trailing whitespace; `Err(diff)` on mismatch.
pub fn compare(expected: &str, actual: &str) -> Result<(), String> {
    let norm = |s: &str| {
        let r = redact(s);
        let lines: Vec<&str> = r.lines().map(str::trim_end).collect();
        let mut t = lines.join("\n");
        t.truncate(t.trim_end().len());
        t.push('\n');
        t
    };
    let (e, a) = (norm(expected), norm(actual));
    if e == a { Ok(()) } else { Err(diff(&e, &a)) }
}

/// The expected outputs, by snapshot name.
#[derive(Debug, Clone, Default)]
pub struct Snapshots {
    by_name: BTreeMap<String, String>,
}

impl Snapshots {
    /// The copies compiled into the binary.
    pub fn embedded() -> Snapshots {
        Snapshots {
            by_name: embedded::SNAPSHOTS
                .iter()
                .map(|(n, body)| (n.to_string(), snap_body(body).to_string()))
                .collect(),
        }
    }

    /// Every `*.snap` file of a folder.
    pub fn from_dir(dir: &Path) -> std::io::Result<Snapshots> {
        let mut by_name = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("snap") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            if let Some(name) = path.file_stem().and_then(|s| s.to_str()) {
                by_name.insert(name.to_string(), snap_body(&text).to_string());
            }
        }
        Ok(Snapshots { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_after_header() {
        let f = "---\nsource: x.rs\nexpression: table\n---\nNAME   A\nx      1\n";
        assert_eq!(snap_body(f), "NAME   A\nx      1\n");
        assert_eq!(snap_body("plain"), "plain");
    }

    #[test]
    fn ages_are_redacted_other_parens_are_not() {
        assert_eq!(
            redact("a.b     SYNCED (5m)     STALE (2d3h)     IGNORED     5 (CDS,LDS)"),
            "a.b     SYNCED (<age>)     STALE (<age>)     IGNORED     5 (CDS,LDS)"
        );
        assert_eq!(
            redact("x (unreachable: deadline)"),
            "x (unreachable: deadline)"
        );
    }

    #[test]
    fn compare_shows_a_diff() {
        assert!(compare("A\nB\n", "A\nB").is_ok());
        let d = compare("A\nB\n", "A\nC\n").expect_err("differs");
        assert!(d.contains("-B") && d.contains("+C"), "{d}");
    }

    #[test]
    fn names() {
        assert_eq!(
            snapshot_name("three-replicas", IstioctlFamily::V1_30, View::Verbose),
            "three-replicas@1.30-v1"
        );
    }
}
