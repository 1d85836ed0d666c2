//! The README's first command, `proxy-conformance run`, timed: scenarios one
//! at a time (`--jobs 1`) and side by side (the default `--jobs`), side by
//! side in one run, with the bundled proxy and with the `istioctl-proxy`
//! binary as `--proxy-cmd`; then what the memory and attack checks measured
//! in each run, so that their numbers can be compared (they run alone in
//! both).
//!
//! `cargo bench -p harness --bench main_job` (`BENCH_RUNS=3` for more runs of
//! each, `BENCH_JOBS=4` for another parallel `--jobs`, `BENCH_PROXY_BIN=…`
//! for another proxy binary; without one beside the runner, `cargo build
//! --release -p istioctl-proxy` first, or the `--proxy-cmd` rows are left out).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One run of the main job.
struct Measured {
    wall: Duration,
    /// The summary line (`PASSED (partial): 32 passed, …`).
    summary: String,
    /// Each memory or attack check's notes.
    notes: Vec<(String, Vec<String>)>,
}

fn runner_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_proxy-conformance"))
}

/// The proxy binary for the `--proxy-cmd` rows: `BENCH_PROXY_BIN`, or the
/// one beside the runner.
fn proxy_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BENCH_PROXY_BIN") {
        return Some(PathBuf::from(p));
    }
    let beside = runner_bin().parent()?.join("istioctl-proxy");
    beside.exists().then_some(beside)
}

fn proxy_cmd(bin: &Path) -> String {
    format!(
        "{} --listen {{listen}} --health-listen off --istiod {{istiod}} --cert {{cert}} --key {{key}} \
         --istiod-ca {{ca}} --istiod-server-name istiod.{{namespace}}.svc --identity passthrough \
         --token-public-key {{token_issuer_key}} --replica-timeout 2s --request-timeout 4s",
        bin.display()
    )
}

/// The checks that run alone (memory measured or the machine loaded).
const ALONE: &[&str] = &[
    "large-mesh",
    "concurrent-clients",
    "malformed-request",
    "oversized-request",
    "stream-flood",
    "idle-connections",
    "slow-readers",
    "garbage-bytes",
];

fn run(jobs: usize, cmd: Option<&str>) -> Result<Measured, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let report = dir.path().join("report.yaml");
    let mut c = Command::new(runner_bin());
    c.arg("run")
        .arg("--jobs")
        .arg(jobs.to_string())
        .arg("--report")
        .arg(&report)
        .env("NO_COLOR", "1");
    if let Some(cmd) = cmd {
        c.arg("--proxy-cmd").arg(cmd);
    }
    let t0 = Instant::now();
    let out = c
        .output()
        .map_err(|e| format!("cannot start the runner: {e}"))?;
    let wall = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .find(|l| l.contains(" passed, ") && l.contains(" skipped in "))
        .unwrap_or("(no summary)")
        .to_string();
    if !out.status.success() {
        return Err(format!(
            "the run failed ({}): {summary}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = std::fs::read_to_string(&report).map_err(|e| format!("the report: {e}"))?;
    Ok(Measured {
        wall,
        summary,
        notes: notes(&text),
    })
}

/// `measurements` of every profile in the YAML report.
fn notes(report: &str) -> Vec<(String, Vec<String>)> {
    let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(report) else {
        return vec![];
    };
    let mut out = Vec::new();
    for profile in doc["profiles"].as_sequence().into_iter().flatten() {
        for m in profile["measurements"].as_sequence().into_iter().flatten() {
            let id = m["id"].as_str().unwrap_or_default().to_string();
            let notes = m["notes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            out.push((id, notes));
        }
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let parallel: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(harness::config::DEFAULT_JOBS.into());
    let cmd = proxy_bin().map(|b| proxy_cmd(&b));
    let mut rows: Vec<(String, Vec<Measured>, Vec<Measured>)> = Vec::new();
    let proxies: Vec<(&str, Option<&str>)> = match &cmd {
        Some(c) => vec![("bundled", None), ("--proxy-cmd", Some(c.as_str()))],
        None => {
            println!(
                "(no istioctl-proxy binary beside the runner: the --proxy-cmd rows are left out)"
            );
            vec![("bundled", None)]
        }
    };
    for (name, cmd) in &proxies {
        let (mut seq, mut par) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            // Alternating, so that a slower moment of the machine hits both.
            for (jobs, into) in [(1, &mut seq), (parallel, &mut par)] {
                match run(jobs, *cmd) {
                    Ok(m) => into.push(m),
                    Err(e) => {
                        eprintln!("{name} --jobs {jobs}: {e}");
                        std::process::exit(1);
                    }
                }
            }
        }
        rows.push((name.to_string(), seq, par));
    }

    let secs = |ms: &[Measured]| {
        ms.iter()
            .map(|m| format!("{:.1}", m.wall.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "\nmain job wall time (s), {runs} run(s) each, `run --jobs 1` vs `run --jobs {parallel}`:"
    );
    println!("{:<12} {:>18} {:>18}", "proxy", "sequential", "parallel");
    for (name, seq, par) in &rows {
        println!("{name:<12} {:>18} {:>18}", secs(seq), secs(par));
    }
    for (name, seq, par) in &rows {
        if let (Some(s), Some(p)) = (seq.last(), par.last()) {
            println!(
                "\n{name}: sequential: {}\n{name}: parallel:   {}",
                s.summary, p.summary
            );
            println!("what the checks that run alone measured (sequential | parallel):");
            for id in ALONE {
                let of = |m: &Measured| {
                    m.notes
                        .iter()
                        .find(|(i, _)| i == id)
                        .map(|(_, n)| n.join("; "))
                        .unwrap_or_else(|| "-".into())
                };
                println!("  {id}:\n    {}\n    {}", of(s), of(p));
            }
        }
    }
}
