//! Standard output for a reader that may go away (`proxy-conformance run |
//! head`): a closed pipe ends the output, not the program, whose cleanup
//! (stopping proxies, removing containers) still has to run. Rust ignores
//! SIGPIPE, so `println!` would panic there instead.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found the reader gone: nothing more is written.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output (flushed), unless the reader is gone.
pub fn text(text: &str) {
    write_to(&mut std::io::stdout().lock(), text.as_bytes());
}

/// Writes one line, as `println!` would (see [`crate::say`]).
pub fn line(args: Arguments<'_>) {
    text(&format!("{args}\n"));
}

fn write_to(out: &mut impl Write, bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == ErrorKind::BrokenPipe {
            CLOSED.store(true, Ordering::Relaxed);
        } else {
            tracing::warn!(error = %e, "writing to standard output failed");
        }
    }
}

/// `println!` to standard output through [`line`]: a closed pipe stops the
/// output instead of panicking.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Gone;
    impl Write for Gone {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_gone_stops_the_output_without_a_panic() {
        write_to(&mut Gone, b"line\n");
        assert!(CLOSED.load(Ordering::Relaxed));
        // Nothing more is tried.
        let mut v = Vec::new();
        write_to(&mut v, b"more\n");
        assert!(v.is_empty());
    }
}
