//! Embeds `scenarios/*.yaml` and `snapshots/*.snap` (from the workspace root) into
//! the binary, so `proxy-conformance` runs anywhere, and rebuilds when they change.
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn embed(dir: &Path, ext: &str) -> String {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut out = String::from("&[\n");
    for p in entries {
        let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            p.display().to_string()
        );
    }
    out.push(']');
    out
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("..");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let code = format!(
        "/// (name, YAML) of every file in scenarios/.\npub static SCENARIOS: &[(&str, &str)] = {};\n/// (name, insta file) of every file in snapshots/.\npub static SNAPSHOTS: &[(&str, &str)] = {};\n",
        embed(&root.join("scenarios"), "yaml"),
        embed(&root.join("snapshots"), "snap"),
    );
    if let Err(e) = std::fs::write(out.join("embedded.rs"), code) {
        panic!("cannot write embedded.rs: {e}");
    }
}
