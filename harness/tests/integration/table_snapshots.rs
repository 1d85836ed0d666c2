//! The expected tables in `snapshots/`: what istioctl prints through the
//! reference proxy, per scenario, istioctl family and view. The runner compares
//! any proxy's output with these same files (after the same redactions).

use crate::support::run;

use harness::suite::snapshots::{View, redact, snapshot_name};
use harness::topology::Hooks;
use proto::IstioctlFamily;
use std::sync::Arc;

const SCENARIOS: [&str; 5] = [
    "blog-walkthrough",
    "three-replicas",
    "mixed-versions",
    "empty-mesh",
    "three-replicas-1-19",
];

/// A syncz resource's node id (empty if it does not decode).
fn node_id(any: &proto::envoy::google::protobuf::Any) -> String {
    use prost::Message;
    proto::envoy::envoy::service::status::v3::ClientConfig::decode(any.value.as_slice())
        .ok()
        .and_then(|cc| cc.node)
        .map(|n| n.id)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_through_the_reference_proxy() {
    let config = run::config(Default::default());
    let topology = config.topology(&Hooks::default(), Arc::default());
    for scenario in SCENARIOS {
        let bench = match topology.open(scenario).await {
            Ok(b) => b,
            Err(e) => panic!("{scenario}: {e}"),
        };
        let Ok(mesh) = bench.ctx.scripted() else {
            panic!("{scenario}: the local topology has a scripted mesh");
        };
        let scenario_time = mesh.scenario_time();
        let mut resp = match bench.ctx.syncz().await {
            Ok(r) => r,
            Err(e) => panic!("{scenario}: syncz: {e}"),
        };
        // Neither istiod nor a proxy fixes the order of the ClientConfigs
        // (the conformance check compares `-o json` keyed by node id, see
        // `compare_view`); the files show them sorted, whatever order the
        // reference proxy answered in.
        resp.resources.sort_by_key(node_id);
        for family in IstioctlFamily::ALL {
            for view in View::of(family) {
                let table = match harness::suite::tables::render_view(
                    family,
                    *view,
                    &resp,
                    scenario_time,
                ) {
                    Ok(t) => t,
                    Err(e) => panic!("{scenario} {family}: {e}"),
                };
                insta::with_settings!({
                    snapshot_path => "../../../snapshots",
                    prepend_module_to_snapshot => false,
                    omit_expression => true,
                    description => format!("istioctl {family} ({}) proxy-status{}, scenario {scenario}, through the reference proxy", family.covers(), match view { View::Table => "", View::Verbose => " -v 1", View::Json => " -o json" }),
                }, {
                    insta::assert_snapshot!(snapshot_name(scenario, family, *view), redact(&table));
                });
            }
        }
        bench.stop().await;
    }
}
