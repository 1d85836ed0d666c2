//! The bundled reference proxy passes every check: the suite's positive control,
//! through the same runner `proxy-conformance run` uses.

use crate::support::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_proxy_passes_every_check() {
    let _alone = run::alone().await;
    let config = run::config(Default::default());
    let report = match harness::runner::run(&config, &Default::default(), |_| {}).await {
        Ok(r) => r,
        Err(e) => panic!("the run could not start: {e}"),
    };
    assert_eq!(report.results.len(), harness::checks::catalog().len());
    // Everything passes but the checks that need a real network (the
    // docker topology's), skipped with that reason.
    if let Err(e) = run::passes_where_it_can(&report, harness::topology::TopologyKind::Local) {
        panic!("failures against the reference proxy:\n{e}");
    }
}
