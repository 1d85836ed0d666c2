//! The shared, bounded tail of a proxy's output (a process's or a
//! container's), kept for the report.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Lines of proxy output kept (the newest).
const KEPT_LINES: usize = 400;
/// Longest line kept, in bytes: the rest of a longer line is counted, not kept
/// (one 600 MB line used to be held whole, and copied into the report).
pub const MAX_LINE_BYTES: usize = 4096;
/// Most bytes of output kept in all: the oldest lines go first.
pub const KEPT_BYTES: usize = 256 * 1024;

#[derive(Debug, Default)]
struct Kept {
    lines: VecDeque<String>,
    bytes: usize,
    /// Lines pushed out to stay within the bounds.
    dropped: u64,
    /// Lines ever pushed.
    total: usize,
}

/// The shared tail of a process's output: at most [`KEPT_LINES`] lines and
/// [`KEPT_BYTES`] bytes, each line at most [`MAX_LINE_BYTES`] (longer ones end
/// in a marker saying how much was cut).
#[derive(Debug, Clone, Default)]
pub struct OutputLog(Arc<Mutex<Kept>>);

impl OutputLog {
    pub fn push(&self, line: String) {
        if let Ok(mut k) = self.0.lock() {
            k.total += 1;
            k.bytes += line.len();
            k.lines.push_back(line);
            while k.lines.len() > KEPT_LINES || (k.bytes > KEPT_BYTES && k.lines.len() > 1) {
                if let Some(old) = k.lines.pop_front() {
                    k.bytes -= old.len();
                    k.dropped += 1;
                }
            }
        }
    }
    /// The last `n` lines, joined; when they reach back past what was kept,
    /// a first line says how many earlier lines are gone.
    pub fn tail(&self, n: usize) -> String {
        match self.0.lock() {
            Ok(k) => {
                let skip = k.lines.len().saturating_sub(n);
                let mut out: Vec<String> = Vec::new();
                if skip == 0 && k.dropped > 0 {
                    out.push(format!(
                        "[… {} earlier lines of output not kept]",
                        k.dropped
                    ));
                }
                out.extend(k.lines.iter().skip(skip).cloned());
                out.join("\n")
            }
            Err(_) => String::new(),
        }
    }
    /// Lines written so far (also those no longer kept).
    pub fn len(&self) -> usize {
        self.0.lock().map(|k| k.total).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held.
    pub fn kept_bytes(&self) -> usize {
        self.0.lock().map(|k| k.bytes).unwrap_or(0)
    }
}

/// A line as kept: lossy UTF-8, without a trailing CR, with a marker when cut.
fn finish_line(line: &[u8], cut: u64) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut s = String::from_utf8_lossy(line).into_owned();
    if cut > 0 {
        s.push_str(&format!(" [… line cut: {cut} more bytes not kept]"));
    }
    s
}

/// Copies `reader` into `log` line by line until EOF, holding at most
/// [`MAX_LINE_BYTES`] of a line at any time: it always keeps reading, so a
/// proxy never blocks on a full pipe, whatever it writes (also not UTF-8).
pub async fn copy_lines(mut reader: impl AsyncRead + Unpin, log: &OutputLog) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::new();
    let mut cut: u64 = 0;
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in buf[..n].split_inclusive(|b| *b == b'\n') {
            let (body, ends) = match piece.strip_suffix(b"\n") {
                Some(b) => (b, true),
                None => (piece, false),
            };
            let take = body.len().min(MAX_LINE_BYTES.saturating_sub(line.len()));
            line.extend_from_slice(&body[..take]);
            cut += (body.len() - take) as u64;
            if ends {
                log.push(finish_line(&line, cut));
                line.clear();
                cut = 0;
            }
        }
    }
    if !line.is_empty() || cut > 0 {
        log.push(finish_line(&line, cut));
    }
}

pub fn pump(
    reader: impl AsyncRead + Unpin + Send + 'static,
    log: OutputLog,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { copy_lines(reader, &log).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_huge_line_is_cut_and_marked() {
        use tokio::io::AsyncReadExt;
        let input = tokio::io::repeat(b'x')
            .take(50_000_000)
            .chain(&b"\nsecond line\r\nno newline at the end"[..]);
        let log = OutputLog::default();
        copy_lines(input, &log).await;
        assert_eq!(log.len(), 3);
        let tail = log.tail(3);
        let lines: Vec<&str> = tail.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "{} [… line cut: {} more bytes not kept]",
                "x".repeat(MAX_LINE_BYTES),
                50_000_000 - MAX_LINE_BYTES
            )
        );
        assert_eq!(&lines[1..], ["second line", "no newline at the end"]);
    }

    #[tokio::test]
    async fn output_is_bounded_in_lines_and_bytes_and_survives_bad_utf8() {
        let log = OutputLog::default();
        let mut input = Vec::new();
        for i in 0..10_000 {
            input.extend_from_slice(format!("{i:04} {}\n", "y".repeat(1000)).as_bytes());
        }
        input.extend_from_slice(b"\xff\xfe not UTF-8\nlast\n");
        copy_lines(&input[..], &log).await;
        assert_eq!(log.len(), 10_002);
        assert!(log.kept_bytes() <= KEPT_BYTES, "{}", log.kept_bytes());
        let all = log.tail(usize::MAX);
        let first = all.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("[… ") && first.ends_with(" earlier lines of output not kept]"),
            "{first}"
        );
        assert!(
            all.ends_with("\u{fffd}\u{fffd} not UTF-8\nlast"),
            "{}",
            &all[all.len() - 40..]
        );
        // A short tail has no marker.
        assert_eq!(log.tail(1), "last");
    }
}
