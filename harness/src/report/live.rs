//! What runs now, while checks run: on a terminal one line at the bottom,
//! redrawn in place (`[12/35 done] running: replica-hang (fault-hang) 1.4s,
//! …`) and wiped before any other output; elsewhere (a log, a pipe) a plain
//! line of the same, only when nothing else was printed for a while.

use crate::runner::Running;
use std::time::{Duration, Instant};

/// Elsewhere than a terminal: a plain progress line after this long quiet.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// The widest a progress line is drawn on a terminal (it must fit one row
/// to be redrawn in place).
const WIDTH: usize = 100;

/// The progress line's state.
#[derive(Debug)]
pub struct LiveLine {
    terminal: bool,
    /// A line is drawn at the bottom of the terminal now.
    drawn: bool,
    /// When the last line of any kind was printed.
    last_output: Instant,
}

impl LiveLine {
    pub fn new(terminal: bool) -> Self {
        LiveLine {
            terminal,
            drawn: false,
            last_output: Instant::now(),
        }
    }

    /// Prints `text` (whole lines), after wiping the progress line.
    pub fn print(&mut self, text: &str) {
        let mut out = self.wipe();
        out.push_str(text);
        crate::output::text(&out);
        self.last_output = Instant::now();
    }

    /// Shows what runs now.
    pub fn running(&mut self, done: usize, total: usize, running: &[Running]) {
        if running.is_empty() {
            if self.drawn {
                crate::output::text(&self.wipe());
            }
            return;
        }
        if self.terminal {
            let mut line = describe(done, total, running);
            cut(&mut line, WIDTH);
            crate::output::text(&format!("\r\x1b[2K{line}"));
            self.drawn = true;
        } else if self.last_output.elapsed() >= PLAIN_EVERY {
            self.print(&format!("{}\n", describe(done, total, running)));
        }
    }

    /// What wipes the progress line (nothing when none is drawn).
    fn wipe(&mut self) -> String {
        if std::mem::take(&mut self.drawn) {
            "\r\x1b[2K".to_string()
        } else {
            String::new()
        }
    }
}

/// `[12/35 done] running: slow-readers (medium-mesh) 1.4s, replica-hang (fault-hang) 0.2s`
pub fn describe(done: usize, total: usize, running: &[Running]) -> String {
    let list: Vec<String> = running
        .iter()
        .map(|r| {
            format!(
                "{} ({}) {:.1}s",
                r.check,
                r.scenario,
                r.elapsed.as_secs_f64()
            )
        })
        .collect();
    format!("[{done}/{total} done] running: {}", list.join(", "))
}

/// Cuts `line` to `width` characters, marking the cut.
fn cut(line: &mut String, width: usize) {
    if line.chars().count() > width {
        let keep: String = line.chars().take(width.saturating_sub(1)).collect();
        *line = format!("{keep}…");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Vec<Running> {
        vec![
            Running {
                check: "slow-readers",
                scenario: "medium-mesh",
                elapsed: Duration::from_millis(1400),
            },
            Running {
                check: "replica-hang",
                scenario: "fault-hang",
                elapsed: Duration::from_millis(200),
            },
        ]
    }

    #[test]
    fn says_what_runs_and_for_how_long() {
        assert_eq!(
            describe(12, 35, &running()),
            "[12/35 done] running: slow-readers (medium-mesh) 1.4s, replica-hang (fault-hang) 0.2s"
        );
    }

    #[test]
    fn a_long_line_is_cut_to_fit() {
        let mut line = "x".repeat(150);
        cut(&mut line, 100);
        assert_eq!(line.chars().count(), 100);
        assert!(line.ends_with('…'));
    }
}
