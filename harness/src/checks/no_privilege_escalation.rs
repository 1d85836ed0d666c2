//! `no-privilege-escalation`: a caller from a non-system namespace sees through the proxy
//! no more than istiod itself would show it (istiod 1.28.7+/1.29.3+/1.30 scope debug
//! answers to the caller's namespace).

use crate::suite::context::{client_configs, node_id};
use crate::suite::prelude::*;
use std::collections::BTreeSet;

crate::check! {
    id: "no-privilege-escalation",
    profile: Profile::Security,
    description: "a caller from an application namespace sees no proxy istiod would hide from it",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
}

async fn run(ctx: &Ctx) -> Checked {
    let system = ctx.istio_namespace().to_string();
    // A namespace of the mesh's own proxies (`pod.namespace` as the replicas list them).
    let ids = ctx.expected_ids().await?;
    let Some(ns) = ids
        .iter()
        .filter_map(|id| id.rsplit_once('.').map(|(_, ns)| ns.to_string()))
        .find(|n| *n != system)
    else {
        return Err(fail(
            "bench: the mesh has no proxy outside the system namespace",
        ));
    };
    let token = match ctx.token_for(&ns, "default") {
        Ok(t) => t,
        Err(e) => return Err(skip(e)),
    };
    // What istiod shows this caller: ask each replica directly with its identity.
    let mut allowed = BTreeSet::new();
    for r in ctx.replicas() {
        let o = ctx.replica_client_as(&r, &ns, "default");
        match crate::client::fetch(&o, proto::type_url::SYNCZ, &[]).await {
            Ok(resp) => allowed.extend(
                client_configs(&resp)
                    .unwrap_or_default()
                    .iter()
                    .map(|c| node_id(c).to_string()),
            ),
            Err(e) if e.is_answer() => {} // istiod refuses: nothing visible
            Err(e) => return Err(fail(format!("bench: replica {}: {e}", r.name))),
        }
    }
    let mut opts = ctx.istioctl_with(Some(token));
    opts.istio_namespace = ns.clone();
    match crate::client::fetch(&opts, proto::type_url::SYNCZ, &[]).await {
        Err(e) if e.is_answer() => Ok(()), // refused: sees nothing
        Err(e) => Err(fail(format!("no answer for a caller from {ns}: {e}"))),
        Ok(resp) => {
            let seen: BTreeSet<String> = client_configs(&resp)
                .unwrap_or_default()
                .iter()
                .map(|c| node_id(c).to_string())
                .collect();
            let extra: Vec<&String> = seen.difference(&allowed).collect();
            if extra.is_empty() {
                Ok(())
            } else {
                Err(fail(format!(
                    "a caller from namespace {ns} sees {} proxies istiod would not show it: {}",
                    extra.len(),
                    few(extra)
                )))
            }
        }
    }
}
