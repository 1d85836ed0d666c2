//! `istioctl-ack`: istioctl 1.8-1.15 ACK the debug response on the same stream
//! (`1.12.0:pkg/adsc/adsc.go` `handleRecv` calls `ack` for every response; from
//! `1.16.0:pkg/adsc/adsc.go` `ack` skips `istio.io/debug*`). istiod answers that
//! ACK again like any debug request (`1.12.0:pilot/pkg/xds/ads.go`
//! `processRequest`: debug types go straight to `pushXds`, bypassing ACK logic).
//! A proxy must give the first answer complete, without waiting for anything
//! else, and keep serving the stream when the ACK arrives: answering it (as
//! istiod does) or ignoring it are both fine; ending the stream with an error
//! or going silent is not.

use crate::client::{self, AfterAck};
use crate::suite::context::{client_configs, node_id};
use crate::suite::prelude::*;
use proto::{IstioVersion, IstioctlRules};
use std::collections::BTreeSet;
use std::time::Duration;

crate::check! {
    id: "istioctl-ack",
    profile: Profile::Core,
    description: "istioctl 1.8-1.15 ACK the syncz answer on the same stream: the first answer is complete and the proxy keeps serving after the ACK",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
}

/// How long the bench waits for each step (well under istioctl's 30 s).
const BOUND: Duration = Duration::from_secs(10);

async fn run(ctx: &Ctx) -> Checked {
    let expected = ctx.expected_ids().await?;
    let mut opts = ctx.istioctl();
    opts.istioctl = IstioctlRules::new(IstioVersion::new(1, 12, 1));
    let request = ctx.request(proto::type_url::SYNCZ, &[]);
    // After the ACK, one more request: a proxy that ignores ACKs still answers
    // it, so the bench never has to wait out a silence to pass a correct proxy.
    let follow_up = ctx.request(proto::type_url::SYNCZ, &[]);
    let (first, after) = client::ack_exchange(&opts, request, Some(follow_up), BOUND)
        .await
        .map_err(|e| format!("the first syncz answer did not come: {e}"))?;
    let mut problems = Vec::new();
    match client_configs(&first) {
        Ok(ccs) => {
            let mut p = Vec::new();
            compare_ids(&ccs, &expected, &mut p);
            problems.extend(p.into_iter().map(|p| format!("first answer: {p}")));
        }
        Err(e) => problems.push(format!("first answer: {e}")),
    }
    match after {
        AfterAck::Response(resp) => {
            if resp.type_url != proto::type_url::SYNCZ {
                problems.push(format!(
                    "after the ACK the proxy answered with type URL {:?}, expected {}",
                    resp.type_url,
                    proto::type_url::SYNCZ
                ));
            }
            match client_configs(&resp) {
                Ok(ccs) => {
                    let got: BTreeSet<&str> = ccs.iter().map(node_id).collect();
                    let missing = expected.iter().filter(|id| !got.contains(id.as_str()));
                    let missing: Vec<&String> = missing.collect();
                    if !missing.is_empty() {
                        problems.push(format!(
                            "after the ACK the answer lacks {} of {} proxies: {}",
                            missing.len(),
                            expected.len(),
                            few(missing)
                        ));
                    }
                }
                Err(e) => problems.push(format!("after the ACK: {e}")),
            }
        }
        AfterAck::Closed => {
            // istioctl has its answer and does not mind a clean end; the proxy
            // must still serve the next caller.
            if let Err(e) = ctx.merged().await {
                problems.push(format!(
                    "the proxy closed the stream after the ACK and then failed a new request: {e}"
                ));
            }
        }
        AfterAck::Failed(e) => problems.push(format!(
            "the proxy ended the stream with an error when istioctl 1.8-1.15's ACK arrived \
             (response_nonce = its own nonce; istiod answers such an ACK again): {e}"
        )),
        AfterAck::Silent => problems.push(format!(
            "after the ACK and one more syncz request on the same stream the proxy sent nothing within {BOUND:?}"
        )),
    }
    verdict(problems)
}
