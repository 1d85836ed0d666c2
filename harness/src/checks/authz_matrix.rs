//! `authz-matrix`: for EVERY request type istioctl can send (syncz,
//! connections, config_dump of each proxy, `istio.io/debug` paths) and callers
//! from the system namespace, an application namespace and a namespace without
//! proxies, the proxy gives no more than istiod gives that caller when asked
//! directly (istiod 1.28.7+/1.29.3+/1.30: 1.30.0:pilot/pkg/xds/statusgen.go
//! `callerNamespaceFilter`, 1.30.0:pilot/pkg/xds/debuggen.go
//! `parseAndValidateDebugRequest`). Whatever the proxy's identity mode: in
//! passthrough the replicas enforce it and the outcome is checked all the same;
//! with its own identity the proxy must apply the rules itself. Config dumps
//! are asked for at most [`PROXIES_PER_NAMESPACE`] proxies of each namespace.

use crate::client::{self, ClientOptions};
use crate::suite::context::{client_configs, node_id};
use crate::suite::prelude::*;
use prost::Message;
use proto::envoy::envoy::config::core::v3::Node;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::type_url;
use std::collections::BTreeSet;

crate::check! {
    id: "authz-matrix",
    profile: Profile::Robustness,
    description: "every request type x caller namespace: the proxy gives no more than istiod gives that caller",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
}

/// What an answer lets its caller see, in comparable units: the proxies (or
/// connections) listed; for config dumps and debug bodies, which of the
/// scenario's proxies they mention, and whether they carry anything at all
/// (their bytes hold times and versions that differ between answers).
fn visible(type_url: &str, resp: &DiscoveryResponse, ids: &[String]) -> BTreeSet<String> {
    match type_url {
        type_url::SYNCZ => client_configs(resp)
            .unwrap_or_default()
            .iter()
            .map(|c| format!("proxy {}", node_id(c)))
            .collect(),
        type_url::CONNECTIONS => resp
            .resources
            .iter()
            .map(|a| match Node::decode(a.value.as_slice()) {
                Ok(n) => format!("connection {}", n.id),
                Err(_) => format!("undecodable {} bytes", a.value.len()),
            })
            .collect(),
        _ => {
            let mut out = BTreeSet::new();
            for a in &resp.resources {
                if a.value.is_empty() {
                    continue;
                }
                out.insert("a non-empty answer".to_string());
                let text = String::from_utf8_lossy(&a.value);
                for id in ids {
                    if text.contains(id.as_str()) {
                        out.insert(format!("data about proxy {id}"));
                    }
                }
            }
            out
        }
    }
}

/// The proxies whose config_dump each caller asks for, per namespace: every
/// namespace's visibility is what differs between callers, and a thousand
/// proxies (a real-istio mesh) would otherwise make 4 requests x proxies x
/// callers.
const PROXIES_PER_NAMESPACE: usize = 8;

/// At most `n` ids of each namespace (`pod.namespace`), in order.
fn sample_per_namespace(ids: &[String], n: usize) -> Vec<&String> {
    let mut taken: std::collections::BTreeMap<&str, usize> = Default::default();
    ids.iter()
        .filter(|id| {
            let ns = id.rsplit_once('.').map_or("", |(_, ns)| ns);
            let count = taken.entry(ns).or_default();
            *count += 1;
            *count <= n
        })
        .collect()
}

fn short(s: &str) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 90 {
        format!("{}…", one_line.chars().take(90).collect::<String>())
    } else {
        one_line
    }
}

async fn run(ctx: &Ctx) -> Checked {
    let system = ctx.istio_namespace().to_string();
    // The mesh's proxies as the replicas list them (`pod.namespace`).
    let ids: Vec<String> = ctx.expected_ids().await?.into_iter().collect();
    let app = ids
        .iter()
        .filter_map(|id| id.rsplit_once('.').map(|(_, ns)| ns.to_string()))
        .find(|n| *n != system)
        .unwrap_or_else(|| "default".to_string());
    let callers = [system.clone(), app, "robustness-empty-ns".to_string()];
    let mut asks: Vec<(&str, Vec<String>)> =
        vec![(type_url::SYNCZ, vec![]), (type_url::CONNECTIONS, vec![])];
    for id in sample_per_namespace(&ids, PROXIES_PER_NAMESPACE) {
        asks.push((type_url::CONFIG_DUMP, vec![id.clone()]));
        asks.push((type_url::DEBUG, vec![format!("config_dump?proxyID={id}")]));
    }
    for path in ["syncz", "adsz", "list", "connections", "configz"] {
        asks.push((type_url::DEBUG, vec![path.to_string()]));
    }

    let mut problems = Vec::new();
    // Callers the topology has no token for (a real cluster mints tokens only
    // for service accounts that exist) are left out; the check needs at least
    // one caller outside the system namespace.
    let mut untested = Vec::new();
    let mut tested_outside_system = 0;
    for ns in &callers {
        let token = match ctx.token_for(ns, "default") {
            Ok(t) => t,
            Err(e) => {
                untested.push(e);
                continue;
            }
        };
        if *ns != system {
            tested_outside_system += 1;
        }
        let mut through: ClientOptions = ctx.istioctl_with(Some(token));
        through.istio_namespace = ns.clone();
        through.timeout = std::time::Duration::from_secs(10);
        for (t, names) in &asks {
            // What istiod gives this caller: the union over the replicas.
            let mut allowed = BTreeSet::new();
            let mut any_answer = false;
            for r in ctx.replicas() {
                let o = ctx.replica_client_as(&r, ns, "default");
                match client::fetch(&o, t, names).await {
                    Ok(resp) => {
                        any_answer = true;
                        allowed.extend(visible(t, &resp, &ids));
                    }
                    Err(e) if e.is_answer() => {}
                    Err(e) => {
                        return Err(fail(format!(
                            "bench: replica {} for {t} {names:?}: {e}",
                            r.name
                        )));
                    }
                }
            }
            match client::fetch(&through, t, names).await {
                Ok(resp) => {
                    let got = visible(t, &resp, &ids);
                    let extra: Vec<String> = got.difference(&allowed).map(|s| short(s)).collect();
                    if !extra.is_empty() {
                        problems.push(format!(
                            "caller from {ns:?}, {t} {names:?}: the proxy gives {} item(s) istiod {} this caller: {}",
                            extra.len(),
                            if any_answer { "does not give" } else { "refuses to" },
                            few(extra)
                        ));
                    }
                }
                Err(e) if e.is_answer() => {} // refused: gives nothing
                Err(e) => {
                    problems.push(format!("caller from {ns:?}, {t} {names:?}: no answer: {e}"))
                }
            }
        }
    }
    if problems.is_empty() && tested_outside_system == 0 {
        return Err(skip(format!(
            "no caller outside the system namespace could be tested: {}",
            untested.join("; ")
        )));
    }
    verdict(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_n_proxies_of_each_namespace() {
        let ids: Vec<String> = ["a.x", "b.x", "c.x", "d.y", "e.z", "f.y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got: Vec<&str> = sample_per_namespace(&ids, 2)
            .into_iter()
            .map(String::as_str)
            .collect();
        assert_eq!(got, ["a.x", "b.x", "d.y", "e.z", "f.y"]);
    }
}
