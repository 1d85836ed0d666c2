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

/// Replaces what legitimately differs between runs with fixed tokens: in the
/// `-o json` view, absolute RFC 3339 times, `versionInfo` and `nonce` (ages in
/// tables need no redaction: they are rendered at the scenario's load time).
/// Applied to both sides of a comparison.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let keyed = ["\"versionInfo\": ", "\"nonce\": "]
            .into_iter()
            .find(|k| trimmed.starts_with(k));
        match keyed {
            Some(k) => {
                let comma = if trimmed.ends_with(',') { "," } else { "" };
                let token = if k.contains("nonce") {
                    "<nonce>"
                } else {
                    "<version-info>"
                };
                out.push_str(&format!("{indent}{k}\"{token}\"{comma}"));
            }
            None => out.push_str(&redact_times(line)),
        }
    }
    out
}

/// `2026-11-22T03:03:14.632539833Z` → `<time>`.
fn redact_times(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < b.len() {
        if let Some(len) = rfc3339_at(&b[i..]) {
            out.push_str("<time>");
            i += len;
        } else {
            let ch = line[i..].chars().next().unwrap_or_default();
            out.push(ch);
            i += ch.len_utf8().max(1);
        }
    }
    out
}

/// Length of an RFC 3339 UTC time at the start of `b` (`YYYY-MM-DDTHH:MM:SS[.f]Z`).
fn rfc3339_at(b: &[u8]) -> Option<usize> {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < SHAPE.len() + 1 {
        return None;
    }
    for (c, s) in b.iter().zip(SHAPE) {
        let ok = if *s == b'd' {
            c.is_ascii_digit()
        } else {
            c == s
        };
        if !ok {
            return None;
        }
    }
    let mut n = SHAPE.len();
    if b.get(n) == Some(&b'.') {
        n += 1;
        while b.get(n).is_some_and(u8::is_ascii_digit) {
            n += 1;
        }
    }
    (b.get(n) == Some(&b'Z')).then_some(n + 1)
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

/// Compares one view of `istioctl proxy-status` with its snapshot the way
/// a user reads it: tables line by line ([`compare`]); `-o json` documents as
/// data, keyed by node id, because istiod fixes neither the order of the
/// ClientConfigs (one per connection, in Go map order:
/// `1.30.0:pilot/pkg/xds/statusgen.go` `debugSyncz`) nor `versionInfo` and
/// `nonce` (push version and a UUID). A proxy that keeps its replicas' order
/// passes as well as one that sorts.
pub fn compare_view(view: View, expected: &str, actual: &str) -> Result<(), String> {
    match view {
        View::Json => match (canonical_json(expected), canonical_json(actual)) {
            (Ok(e), Ok(a)) => {
                if e == a {
                    Ok(())
                } else {
                    Err(diff(&e, &a))
                }
            }
            // Not JSON: show the text difference.
            _ => compare(expected, actual),
        },
        View::Table | View::Verbose => compare(expected, actual),
    }
}

/// The JSON documents of a `-o json` output (one per istiod), redacted, without
/// `versionInfo`/`nonce`, each document's `resources` sorted by node id (then
/// by content, for a proxy listed twice), pretty-printed with sorted keys.
pub fn canonical_json(text: &str) -> Result<String, String> {
    let redacted = redact(text);
    let mut out = String::new();
    for doc in serde_json::Deserializer::from_str(&redacted).into_iter::<serde_json::Value>() {
        let mut doc = doc.map_err(|e| format!("not JSON: {e}"))?;
        if let Some(obj) = doc.as_object_mut() {
            obj.remove("versionInfo");
            obj.remove("nonce");
            if let Some(serde_json::Value::Array(resources)) = obj.get_mut("resources") {
                let key = |r: &serde_json::Value| {
                    (
                        r.pointer("/node/id")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string(),
                        r.to_string(),
                    )
                };
                resources.sort_by_key(key);
            }
        }
        // serde_json's maps are sorted by key: field order does not matter either.
        let pretty = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        out.push_str(&pretty);
        out.push('\n');
    }
    Ok(out)
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
    fn compare_shows_a_diff() {
        assert!(compare("A\nB\n", "A\nB").is_ok());
        let d = compare("A\nB\n", "A\nC\n").expect_err("differs");
        assert!(d.contains("-B") && d.contains("+C"), "{d}");
    }

    #[test]
    fn json_views_ignore_resource_order_version_info_and_nonce() {
        let a = r#"{
    "versionInfo": "2026-11-22T00:00:00Z/1",
    "resources": [
        {"node": {"id": "b.ns"}, "genericXdsConfigs": [{"configStatus": "SYNCED"}]},
        {"node": {"id": "a.ns"}, "genericXdsConfigs": [{"configStatus": "STALE"}]}
    ],
    "nonce": "2026-11-22T00:00:00Z/1a2b",
    "controlPlane": {"identifier": "{\"ID\":\"<external>\"}"}
}"#;
        let b = r#"{
    "versionInfo": "<version-info>",
    "resources": [
        {"node": {"id": "a.ns"}, "genericXdsConfigs": [{"configStatus": "STALE"}]},
        {"node": {"id": "b.ns"}, "genericXdsConfigs": [{"configStatus": "SYNCED"}]}
    ],
    "nonce": "<nonce>",
    "controlPlane": {"identifier": "{\"ID\":\"<external>\"}"}
}"#;
        assert_eq!(compare_view(View::Json, b, a), Ok(()));
        // The text comparison would have pinned the order.
        assert!(compare(b, a).is_err());
        // A changed status is still a difference, shown as a diff.
        let c = a.replace("STALE", "SYNCED");
        let d = compare_view(View::Json, b, &c).expect_err("status differs");
        assert!(d.contains("-") && d.contains("STALE"), "{d}");
        // A proxy missing is a difference too.
        let e = a.replace(
            ",\n        {\"node\": {\"id\": \"a.ns\"}, \"genericXdsConfigs\": [{\"configStatus\": \"STALE\"}]}",
            "",
        );
        assert!(canonical_json(&e).is_ok(), "{e}");
        let d = compare_view(View::Json, b, &e).expect_err("a.ns missing");
        assert!(d.contains("a.ns"), "{d}");
    }

    #[test]
    fn names() {
        assert_eq!(
            snapshot_name("three-replicas", IstioctlFamily::V1_30, View::Verbose),
            "three-replicas@1.30-v1"
        );
    }
}
