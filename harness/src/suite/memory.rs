//! How much memory the proxy under test uses, read from `/proc` (Linux).
//!
//! - A proxy the runner started as a command: the resident set of its whole
//!   process tree (the `sh -c` and everything below it).
//! - The bundled proxy runs inside the harness: its memory cannot be told
//!   apart from the harness's (and the fake replicas'), so the harness
//!   process's own resident set is measured, and reports say so.
//! - `--proxy-addr`: not measurable; memory checks are skipped.

use std::time::Duration;

/// Whose memory a [`MemoryProbe`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryProbe {
    /// The process tree rooted at this pid.
    Tree(u32),
    /// This (harness) process, which also runs the proxy and the replicas.
    HarnessProcess,
}

impl MemoryProbe {
    /// Resident bytes now (`None` when `/proc` cannot be read).
    pub fn rss_bytes(&self) -> Option<u64> {
        match self {
            MemoryProbe::Tree(root) => tree_rss_bytes(*root),
            MemoryProbe::HarnessProcess => rss_of("self"),
        }
    }

    /// Words for reports: what was measured.
    pub fn describe(&self) -> &'static str {
        match self {
            MemoryProbe::Tree(_) => "the proxy's process tree",
            MemoryProbe::HarnessProcess => {
                "the harness process (the bundled proxy runs in it, with the fake replicas and the attacking clients)"
            }
        }
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes.
fn rss_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The parent pid in `/proc/<pid>/stat` (the command name may hold spaces
/// and parentheses: split after the last `)`).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Resident bytes of `root` and all its descendants.
pub fn tree_rss_bytes(root: u32) -> Option<u64> {
    let mut tree = vec![root];
    let entries = std::fs::read_dir("/proc").ok()?;
    let pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // Bounded: at most as many passes as there are processes.
    for _ in 0..pids.len().min(64) {
        let before = tree.len();
        for &p in &pids {
            if !tree.contains(&p) && parent_of(p).is_some_and(|pp| tree.contains(&pp)) {
                tree.push(p);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    let mut total = 0;
    let mut any = false;
    for p in tree {
        if let Some(b) = rss_of(&p.to_string()) {
            total += b;
            any = true;
        }
    }
    any.then_some(total)
}

/// Samples a probe every `every` in the background and keeps the peak.
pub struct PeakSampler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Option<u64>>,
}

impl PeakSampler {
    pub fn start(probe: MemoryProbe, every: Duration) -> Self {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peak = probe.rss_bytes();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    // A last reading at the end: a short attack may end
                    // between two periodic ones.
                    _ = rx.changed() => {
                        if let Some(now) = tokio::task::spawn_blocking(move || probe.rss_bytes())
                            .await
                            .ok()
                            .flatten()
                        {
                            peak = Some(peak.map_or(now, |p| p.max(now)));
                        }
                        break;
                    }
                }
                if let Some(now) = tokio::task::spawn_blocking(move || probe.rss_bytes())
                    .await
                    .ok()
                    .flatten()
                {
                    peak = Some(peak.map_or(now, |p| p.max(now)));
                }
            }
            peak
        });
        PeakSampler { stop, task }
    }

    /// Stops sampling; the peak seen.
    pub async fn finish(self) -> Option<u64> {
        let _ = self.stop.send(true);
        self.task.await.ok().flatten()
    }
}

/// Bytes as MiB for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_its_tree() {
        let me = std::process::id();
        let own = rss_of("self").expect("VmRSS of self");
        assert!(own > 0);
        let tree = tree_rss_bytes(me).expect("tree");
        assert!(tree >= own / 2, "{tree} vs {own}");
        assert_eq!(parent_of(me), Some(std::os::unix::process::parent_id()));
    }
}
