//! The scenario parser: any text never panics, and its errors never echo a
//! raw control character or an unbounded value (issue 22): every problem
//! line is at most a few KiB.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = fake_istiod::Scenario::parse(text, "fuzz.yaml") {
        let shown = e.to_string();
        for line in shown.lines() {
            assert!(
                !line.chars().any(char::is_control),
                "a raw control character in: {line:?}"
            );
            assert!(line.len() <= 4096, "a problem line of {} bytes", line.len());
        }
    }
});
