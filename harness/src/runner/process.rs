//! The proxy under test as a child process (`--proxy-cmd`): placeholders filled
//! in, started in its own process group, its output kept for the report, and
//! the whole group stopped afterwards — also on Ctrl-C, so nothing is orphaned.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// Lines of proxy output kept (the newest).
const KEPT_LINES: usize = 400;

/// Process groups still running, killed by [`kill_all`] on Ctrl-C.
static LIVE_GROUPS: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn register(pgid: i32) {
    if let Ok(mut g) = LIVE_GROUPS.lock() {
        g.get_or_insert_with(HashSet::new).insert(pgid);
    }
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

/// Kills every proxy process group still running (used on Ctrl-C).
pub fn kill_all() {
    if let Ok(mut g) = LIVE_GROUPS.lock() {
        for pgid in g.take().unwrap_or_default() {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

/// Processes of group `pgid` that are still running (zombies do not count),
/// from /proc/*/stat.
pub fn running_in_group(pgid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let want = pgid.to_string();
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid pgrp ...: comm may hold spaces, split after ')'.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.len() > 2 && f[0] != "Z" && f[2] == want
        })
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

/// The shared tail of a process's output.
#[derive(Debug, Clone, Default)]
pub struct OutputLog(Arc<Mutex<VecDeque<String>>>);

impl OutputLog {
    pub fn push(&self, line: String) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() == KEPT_LINES {
                q.pop_front();
            }
            q.push_back(line);
        }
    }
    /// The last `n` lines, joined.
    pub fn tail(&self, n: usize) -> String {
        match self.0.lock() {
            Ok(q) => {
                let skip = q.len().saturating_sub(n);
                q.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
            }
            Err(_) => String::new(),
        }
    }
    pub fn len(&self) -> usize {
        self.0.lock().map(|q| q.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn pump(
    reader: impl AsyncRead + Unpin + Send + 'static,
    log: OutputLog,
    tag: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(format!("{tag}{line}"));
        }
    })
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
            pumps.push(pump(o, output.clone(), ""));
        }
        if let Some(e) = child.stderr.take() {
            pumps.push(pump(e, output.clone(), ""));
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

    /// The pid of the started `sh` (the root of the proxy's process tree).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(description)` when the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown state: {e}")),
        }
    }

    /// SIGTERM to the group, up to `grace` for EVERY process of it to exit
    /// (not only the shell: a `docker run` client must get to forward the
    /// signal to its container), then SIGKILL to whatever is left.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pgid) = self.pgid.take() {
            signal_group(pgid, libc::SIGTERM);
            let deadline = tokio::time::Instant::now() + grace;
            let _ = tokio::time::timeout_at(deadline, self.child.wait()).await;
            while running_in_group(pgid) > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            signal_group(pgid, libc::SIGKILL);
            let _ = self.child.wait().await;
            unregister(pgid);
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            signal_group(pgid, libc::SIGKILL);
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
