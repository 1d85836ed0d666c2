//! The check catalog in the README is generated from the code; this keeps it
//! from drifting.

#[test]
fn readme_catalog_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_default();
    let (begin, end) = ("<!-- checks:begin -->\n", "<!-- checks:end -->");
    let start = readme.find(begin).map(|i| i + begin.len());
    let stop = readme.find(end);
    let (Some(start), Some(stop)) = (start, stop) else {
        panic!("README.md has no {begin:?} ... {end:?} section");
    };
    let current = &readme[start..stop];
    let generated = harness::run_command::catalog_text(true);
    assert!(
        current == generated,
        "README.md's check catalog is out of date: replace the section with the output of \
         `cargo run -p harness -- checks --markdown`"
    );
}
