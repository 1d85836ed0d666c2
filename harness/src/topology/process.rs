//! The proxy under test as a child process (`--proxy-cmd`): placeholders filled
//! in, started in its own process group, its output kept (bounded) for the
//! report, and every process it started stopped afterwards — also the ones
//! that left its process group, and also on Ctrl-C, so nothing is orphaned.
//!
//! A proxy that daemonizes (forks, `setsid`, parent exits) leaves the group
//! and loses its parent: only a *child subreaper* still sees it (its orphans
//! are re-parented to the subreaper instead of init). The `proxy-conformance`
//! binary becomes one ([`become_subreaper`]); the library never does on its
//! own, because being a subreaper is process-wide: in a `cargo test` process
//! every test's orphans would become ours.

use crate::suite::output_log::{OutputLog, pump};
use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::process::{Child, Command};

/// Process groups still running, killed by [`kill_all`] on Ctrl-C.
static LIVE_GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
/// Every pid this process spawned as a proxy command: tokio waits for those;
/// the subreaper must never reap them.
static SPAWNED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);
/// Set by [`become_subreaper`].
static SUBREAPER: AtomicBool = AtomicBool::new(false);

fn register(pgid: i32) {
    if let Ok(mut g) = LIVE_GROUPS.lock() {
        g.get_or_insert_with(HashSet::new).insert(pgid);
    }
    if let Ok(mut s) = SPAWNED.lock() {
        s.get_or_insert_with(HashSet::new).insert(pgid);
    }
}

fn spawned_by_us(pid: i32) -> bool {
    SPAWNED
        .lock()
        .map(|s| s.as_ref().is_some_and(|s| s.contains(&pid)))
        .unwrap_or(true)
}

/// Makes this process a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`): a
/// proxy's daemonized descendants are re-parented to it, so [`ProxyProcess::stop`]
/// finds and stops them, and reaps them once dead. Process-wide: call it from a
/// binary that runs one proxy at a time (`proxy-conformance run`), not from
/// library code or tests that share their process.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers and
    // touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    SUBREAPER.store(true, Ordering::SeqCst);
    Ok(())
}

/// One line of /proc/PID/stat.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    zombie: bool,
}

/// Every process visible in /proc.
fn process_table() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid pgrp ...: comm may hold spaces, split after ')'.
            let (_, rest) = stat.rsplit_once(')')?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(Proc {
                pid,
                ppid: f.get(1)?.parse().ok()?,
                pgrp: f.get(2)?.parse().ok()?,
                zombie: *f.first()? == "Z",
            })
        })
        .collect()
}

/// The processes that belong to the proxy started as group `pgid` (its shell
/// has pid `pgid`): the group, every descendant of the shell or of a group
/// member (also those that called `setsid`), and, when this process is a
/// subreaper, every process re-parented to us (a daemon whose parent exited)
/// with its descendants. Zombies are included (`running_only` = false) or not.
fn proxy_processes(table: &[Proc], pgid: i32, running_only: bool) -> Vec<i32> {
    let me = std::process::id() as i32;
    let subreaper = SUBREAPER.load(Ordering::SeqCst);
    let mut set: HashSet<i32> = table
        .iter()
        .filter(|p| {
            p.pid != me
                && (p.pgrp == pgid
                    || p.pid == pgid
                    || (subreaper && p.ppid == me && !spawned_by_us(p.pid)))
        })
        .map(|p| p.pid)
        .collect();
    // Descendants, to a fixed point (bounded by the table's size).
    for _ in 0..table.len() {
        let before = set.len();
        for p in table {
            if p.pid != me && set.contains(&p.ppid) {
                set.insert(p.pid);
            }
        }
        if set.len() == before {
            break;
        }
    }
    table
        .iter()
        .filter(|p| set.contains(&p.pid) && !(running_only && p.zombie))
        .map(|p| p.pid)
        .collect()
}

fn signal_pid(pid: i32, signal: i32) {
    // SAFETY: kill(2) on a pid; no memory is touched.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Signals the group and every other process of the proxy.
fn signal_all(pgid: i32, signal: i32) {
    signal_group(pgid, signal);
    for pid in proxy_processes(&process_table(), pgid, true) {
        signal_pid(pid, signal);
    }
}

/// Reaps dead processes re-parented to us (never ones tokio waits for);
/// returns how many adopted processes are still alive.
fn reap_adopted() -> usize {
    if !SUBREAPER.load(Ordering::SeqCst) {
        return 0;
    }
    let me = std::process::id() as i32;
    let mut alive = 0;
    for p in process_table() {
        if p.ppid != me || spawned_by_us(p.pid) {
            continue;
        }
        if p.zombie {
            let mut status = 0;
            // SAFETY: waitpid on one specific child of ours that is a zombie
            // and that no one else waits for; WNOHANG never blocks.
            unsafe {
                libc::waitpid(p.pid, &mut status, libc::WNOHANG);
            }
        } else {
            alive += 1;
        }
    }
    alive
}

fn unregister(pgid: i32) {
    if let Ok(mut g) = LIVE_GROUPS.lock()
        && let Some(set) = g.as_mut()
    {
        set.remove(&pgid);
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Folders the processes worked in, removed by [`kill_all`] once they are dead.
static WORK_DIRS: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());

/// Removes `dir` on Ctrl-C too ([`kill_all`]), after its processes are killed.
pub fn remove_on_interrupt(dir: &std::path::Path) {
    if let Ok(mut d) = WORK_DIRS.lock() {
        d.push(dir.to_path_buf());
    }
}

/// `dir` is removed (or kept) by its owner: no longer on Ctrl-C.
pub fn forget_on_interrupt(dir: &std::path::Path) {
    if let Ok(mut d) = WORK_DIRS.lock() {
        d.retain(|p| p != dir);
    }
}

/// Kills every proxy process still running, with whatever it started, then
/// removes the folders they worked in (used on Ctrl-C).
pub fn kill_all() {
    if let Ok(mut g) = LIVE_GROUPS.lock() {
        for pgid in g.take().unwrap_or_default() {
            signal_all(pgid, libc::SIGKILL);
        }
    }
    if let Ok(mut d) = WORK_DIRS.lock() {
        for dir in d.drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Processes of group `pgid` that are still running (zombies do not count),
/// from /proc/*/stat.
pub fn running_in_group(pgid: i32) -> usize {
    process_table()
        .iter()
        .filter(|p| p.pgrp == pgid && !p.zombie)
        .count()
}

/// Values for the `{name}` placeholders of `--proxy-cmd`.
pub type Placeholders = BTreeMap<&'static str, String>;

/// Quotes a value for `sh` (single quotes, `'` escaped).
fn sh_quote(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=@".contains(&b))
    {
        return v.to_string();
    }
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// Fills `{name}` placeholders; an unknown `{word}` is an error naming it.
pub fn fill(template: &str, values: &Placeholders) -> Result<String, ProcessError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end)
                if after[..end]
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
                    && end > 0 =>
            {
                let name = &after[..end];
                let v = values
                    .get(name)
                    .ok_or_else(|| ProcessError::UnknownPlaceholder {
                        name: name.to_string(),
                        known: values
                            .keys()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    })?;
                out.push_str(&sh_quote(v));
                rest = &after[end + 1..];
            }
            // Not a placeholder (e.g. shell `${X}` or JSON): keep the brace.
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("--proxy-cmd uses unknown placeholder {{{name}}}; known: {known}")]
    UnknownPlaceholder { name: String, known: String },
    #[error("cannot start the proxy command `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
}

/// A running proxy command.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    pgid: Option<i32>,
    /// The tasks copying stdout and stderr into `output` (they end at EOF).
    pumps: Vec<tokio::task::JoinHandle<()>>,
    pub command: String,
    pub output: OutputLog,
}

impl ProxyProcess {
    /// Starts `sh -c <template with placeholders filled>` in a new process group,
    /// with the placeholders also exported as `PROXY_CONFORMANCE_<NAME>`.
    pub fn spawn(template: &str, values: &Placeholders) -> Result<ProxyProcess, ProcessError> {
        let command = fill(template, values)?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(&command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (k, v) in values {
            cmd.env(format!("PROXY_CONFORMANCE_{}", k.to_ascii_uppercase()), v);
        }
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            command: command.clone(),
            source,
        })?;
        let pgid = child.id().and_then(|p| i32::try_from(p).ok());
        if let Some(p) = pgid {
            register(p);
        }
        let output = OutputLog::default();
        let mut pumps = Vec::new();
        if let Some(o) = child.stdout.take() {
            pumps.push(pump(o, output.clone()));
        }
        if let Some(e) = child.stderr.take() {
            pumps.push(pump(e, output.clone()));
        }
        Ok(ProxyProcess {
            child,
            pumps,
            pgid,
            command,
            output,
        })
    }

    /// Waits (at most `bound`) until everything the process wrote is in
    /// `output`: after it exited, its last words may still be in the pipes.
    pub async fn drain_output(&mut self, bound: Duration) {
        let deadline = tokio::time::Instant::now() + bound;
        for p in &mut self.pumps {
            let _ = tokio::time::timeout_at(deadline, p).await;
        }
    }

    /// Sends `signal` to its whole process group (e.g. SIGSTOP, SIGCONT).
    pub fn signal(&self, signal: i32) {
        if let Some(pgid) = self.pgid {
            signal_group(pgid, signal);
        }
    }

    /// The pid of the started `sh` (the root of the proxy's process tree).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(description)` when the process has exited, unless it exited
    /// successfully leaving processes of its own running: a launcher that
    /// daemonized the proxy (found only as a subreaper, see [`become_subreaper`]).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) if status.success() && self.running() > 0 => None,
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown state: {e}")),
        }
    }

    /// The pids of the proxy's processes still running: its group, their
    /// descendants (also after `setsid`) and, as a subreaper, daemons it left
    /// behind. E.g. to add up the proxy's memory.
    pub fn pids(&self) -> Vec<i32> {
        self.pgid
            .map(|g| proxy_processes(&process_table(), g, true))
            .unwrap_or_default()
    }

    /// How many processes of the proxy are running (see [`Self::pids`]).
    pub fn running(&self) -> usize {
        self.pids().len()
    }

    /// SIGTERM to every process of the proxy, up to `grace` for ALL of them to
    /// exit (not only the shell: a `docker run` client must get to forward the
    /// signal to its container), then SIGKILL to whatever is left; adopted
    /// daemons are reaped once dead.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pgid) = self.pgid.take() {
            signal_all(pgid, libc::SIGTERM);
            let deadline = tokio::time::Instant::now() + grace;
            let _ = tokio::time::timeout_at(deadline, self.child.wait()).await;
            while !proxy_processes(&process_table(), pgid, true).is_empty()
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            signal_all(pgid, libc::SIGKILL);
            let _ = self.child.wait().await;
            // SIGKILLed adopted processes die at once; reap them (bounded).
            let reap_deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while reap_adopted() > 0 && tokio::time::Instant::now() < reap_deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            reap_adopted();
            unregister(pgid);
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            signal_all(pgid, libc::SIGKILL);
            unregister(pgid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Placeholders {
        let mut v = Placeholders::new();
        v.insert("listen", "127.0.0.1:9090".into());
        v.insert("istiod", "127.0.0.2:15012,127.0.0.3:15012".into());
        v.insert("token_file", "/tmp/a b/token".into());
        v
    }

    #[test]
    fn fills_and_quotes() {
        let got = fill(
            "proxy --port {listen} --istiod={istiod} -t {token_file} ${HOME} {}",
            &values(),
        )
        .expect("fills");
        assert_eq!(
            got,
            "proxy --port 127.0.0.1:9090 --istiod=127.0.0.2:15012,127.0.0.3:15012 -t '/tmp/a b/token' ${HOME} {}"
        );
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let err = fill("proxy {lisen}", &values())
            .expect_err("unknown")
            .to_string();
        assert!(err.contains("{lisen}") && err.contains("{listen}"), "{err}");
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    /// Found: one huge line was held whole (603 MB runner, 200 MB report).
    #[tokio::test]
    async fn output_is_kept_and_group_is_stopped() {
        let mut v = values();
        v.insert("namespace", "istio-system".into());
        // A shell that starts a grandchild: stopping must take the whole group.
        let p = ProxyProcess::spawn(
            "echo started {namespace}; echo \"env=$PROXY_CONFORMANCE_LISTEN\" >&2; sleep 30 & wait",
            &v,
        )
        .expect("spawns");
        let log = p.output.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while log.len() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no output: {:?}",
                log.tail(5)
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let tail = log.tail(10);
        assert!(tail.contains("started istio-system"), "{tail}");
        assert!(tail.contains("env=127.0.0.1:9090"), "{tail}");
        let pgid = p.pgid.expect("has a group");
        assert!(
            running_in_group(pgid) >= 2,
            "shell and sleep should be running"
        );
        p.stop(Duration::from_secs(2)).await;
        // The orphaned `sleep` is reaped by init at its own pace: wait (bounded)
        // until nothing of the group is running any more (zombies do not count).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while running_in_group(pgid) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "process group {pgid} still running"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
