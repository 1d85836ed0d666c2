//! The bundled reference proxy passes every check: the suite's positive control,
//! through the same runner `proxy-conformance run` uses.

mod run_support;
use run_support as support;

use harness::checks::Outcome;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_proxy_passes_every_check() {
    let config = support::config(Default::default());
    let report = match harness::runner::run(&config, &Default::default(), |_| {}).await {
        Ok(r) => r,
        Err(e) => panic!("the run could not start: {e}"),
    };
    assert_eq!(report.results.len(), harness::checks::catalog().len());
    // Everything passes but the checks that need a real network (the
    // docker topology's), skipped with that reason.
    for r in &report.results {
        let check = harness::checks::find(&r.id).unwrap_or_else(|| panic!("{} not in the catalog", r.id));
        let local = harness::topology::TopologyKind::Local.capabilities();
        if check.needs.iter().all(|n| local.contains(n)) {
            assert_eq!(r.outcome, Outcome::Pass, "{}:\n{}", r.id, support::explain(&report));
        } else {
            assert!(
                matches!(&r.outcome, Outcome::Skip(why) if why.contains("which the local topology does not have")),
                "{}: {:?}",
                r.id,
                r.outcome
            );
        }
    }
}
