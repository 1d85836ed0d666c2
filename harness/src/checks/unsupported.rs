//! `unsupported`: other type URLs and the Delta API give a gRPC error, and the proxy
//! keeps serving.

use crate::suite::prelude::*;

crate::check! {
    id: "unsupported",
    profile: Profile::Core,
    description: "unknown type URLs and Delta xDS get a gRPC error naming the problem; the proxy keeps serving",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
}

const ODD_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

async fn run(ctx: &Ctx) -> Checked {
    let mut problems = Vec::new();
    match ctx.fetch(ODD_TYPE, &[]).await {
        Ok(r) => problems.push(format!(
            "{ODD_TYPE}: answered with {} resources instead of an error",
            r.resources.len()
        )),
        Err(e) if e.is_answer() => {
            if e.code() == Some(tonic::Code::Unknown) && !e.to_string().contains("Cluster") {
                problems.push(format!(
                    "{ODD_TYPE}: the error does not say what was unsupported: {e}"
                ));
            }
        }
        Err(e) => problems.push(format!("{ODD_TYPE}: no gRPC answer ({e})")),
    }
    match ctx.delta_probe().await {
        Ok(()) => problems.push("Delta xDS: the stream was accepted and answered".to_string()),
        Err(e) if e.is_answer() => {}
        Err(e) => problems.push(format!("Delta xDS: no gRPC answer ({e})")),
    }
    if let Err(e) = ctx.syncz().await {
        problems.push(format!("after the unsupported requests, syncz fails: {e}"));
    }
    verdict(problems)
}
