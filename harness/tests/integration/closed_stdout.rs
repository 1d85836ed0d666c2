//! `proxy-conformance … | head`: a reader that goes away ends the output,
//! not the program (no panic, the exit code of the work itself).

use std::process::{Command, Stdio};

#[test]
fn a_closed_stdout_is_no_panic() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_proxy-conformance"))
        .arg("checks")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("proxy-conformance starts");
    // The reader is gone before the catalog is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("it ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
