//! `config-dump-owner`: config_dump for `pod.ns` returns the OWNING replica's answer,
//! also when the owner is not the first replica, and promptly: istiod ≤1.19
//! sends NO answer from the replicas that do not have the proxy
//! (`1.19.0:pilot/pkg/xds/statusgen.go`, `xdsgen.go` `pushXds`), so a proxy
//! that waits for every replica's answer hangs there (three-replicas-1-19).

use crate::suite::context::node_id;
use crate::suite::prelude::*;
use std::time::Duration;

/// What "promptly" means for a proxy someone owns: the owner answers in
/// milliseconds, so waiting this long means waiting for replicas that do not
/// have it (the bundled proxy gives up on a replica after 2 s, a request after 4 s).
const PROMPT: Duration = Duration::from_secs(2);

crate::check! {
    id: "config-dump-owner",
    profile: Profile::Core,
    description: "config_dump for pod.ns returns the owning replica's dump within 2s, whichever replica owns it (istiod <=1.19 replicas without it never answer)",
    features: &[Feature::ConfigDump],
    needs: &[],
    scenarios: &["three-replicas", "three-replicas-1-19"],
}

/// The type URLs of a config_dump answer's resources, in order.
fn sections(r: &proto::envoy::envoy::service::discovery::v3::DiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|a| a.type_url.as_str()).collect()
}

async fn run(ctx: &Ctx) -> Checked {
    let truth = ctx.ground_truth().await?;
    let mut problems = Vec::new();
    let mut asked = 0;
    for (index, (replica, ccs)) in truth.iter().enumerate() {
        // One proxy per replica: the owner's position is what matters.
        let Some(cc) = ccs.first() else { continue };
        let id = node_id(cc).to_string();
        asked += 1;
        let names = vec![id.clone()];
        let want = match ctx
            .replica_fetch(replica, proto::type_url::CONFIG_DUMP, &names)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                return Err(fail(format!(
                    "bench: owner {} refused config_dump: {e}",
                    replica.name
                )));
            }
        };
        let (answer, took) = timed(ctx.fetch(proto::type_url::CONFIG_DUMP, &names)).await;
        if took > PROMPT {
            // One slow answer says it all; asking the others would only repeat the wait.
            problems.push(format!(
                "{id} (owned by replica {} of {}, {}): answered after {took:.1?} (more than {PROMPT:?}); \
                 replicas that do not have the proxy may never answer (istiod 1.19 and older)",
                index + 1,
                truth.len(),
                replica.name
            ));
            return verdict(problems);
        }
        match answer {
            Err(e) => problems.push(format!(
                "{id} (owned by replica {} of {}, {}): config_dump failed: {e}",
                index + 1,
                truth.len(),
                replica.name
            )),
            Ok(got) if got.resources.is_empty() => problems.push(format!(
                "{id} (owned by replica {} of {}, {}): empty answer, istioctl prints \"unable to find config dump in Istiod responses\"",
                index + 1,
                truth.len(),
                replica.name
            )),
            // Dumps carry generation times: compare their sections, not bytes.
            Ok(got) if sections(&got) != sections(&want) => problems.push(format!(
                "{id} (owned by {}): the dump's sections {:?} are not the owner's {:?}",
                replica.name,
                sections(&got),
                sections(&want)
            )),
            Ok(_) => {}
        }
    }
    if asked < 2 {
        return Err(fail(
            "bench: the scenario needs proxies on at least two replicas",
        ));
    }
    verdict(problems)
}
