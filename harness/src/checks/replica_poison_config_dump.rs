//! `replica-poison-config-dump`: config_dump for a proxy whose owner answers
//! with a section that does not decode gives an error naming that replica,
//! or a dump istioctl can read; never the undecodable bytes. istioctl reads
//! the sections as an `admin.ConfigDump` and renders them through protojson,
//! which decodes every section and the resource of each entry
//! (`istioctl/pkg/writer/compare/comparator.go` `NewXdsComparator`).

use crate::suite::helpers::names_replica;
use crate::suite::prelude::*;
use fake_istiod::poison::Poison;
use prost::Message;
use proto::envoy::envoy::admin::v3 as admin;
use proto::envoy::envoy::config::cluster::v3::Cluster;
use proto::envoy::envoy::config::listener::v3::Listener;
use proto::envoy::envoy::config::route::v3::RouteConfiguration;
use proto::envoy::google::protobuf::Any;

crate::check! {
    id: "replica-poison-config-dump",
    profile: Profile::Resilience,
    description: "config_dump for a proxy whose owner sends a section that does not decode: an error naming that replica, or a dump istioctl can read; never the undecodable section",
    features: &[Feature::ConfigDump],
    needs: &[Capability::ScriptedMesh, Capability::ReplicaFaults],
    scenarios: &["fault-poison"],
}

/// Whether one section (and each entry's resource) decodes as istioctl reads it.
fn section_decodes(any: &Any) -> Result<(), String> {
    fn inner<M: Message + Default>(a: Option<&Any>) -> Result<(), String> {
        match a {
            Some(a) => M::decode(a.value.as_slice())
                .map(drop)
                .map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let v = any.value.as_slice();
    let e = |e: prost::DecodeError| format!("{name}: {e}");
    match name {
        "envoy.admin.v3.ClustersConfigDump" => {
            let d = admin::ClustersConfigDump::decode(v).map_err(e)?;
            for c in d
                .dynamic_active_clusters
                .iter()
                .chain(&d.dynamic_warming_clusters)
            {
                inner::<Cluster>(c.cluster.as_ref())?;
            }
            for c in &d.static_clusters {
                inner::<Cluster>(c.cluster.as_ref())?;
            }
        }
        "envoy.admin.v3.ListenersConfigDump" => {
            let d = admin::ListenersConfigDump::decode(v).map_err(e)?;
            for l in &d.dynamic_listeners {
                for s in [&l.active_state, &l.warming_state, &l.draining_state]
                    .into_iter()
                    .flatten()
                {
                    inner::<Listener>(s.listener.as_ref())?;
                }
            }
        }
        "envoy.admin.v3.RoutesConfigDump" => {
            let d = admin::RoutesConfigDump::decode(v).map_err(e)?;
            for r in &d.dynamic_route_configs {
                inner::<RouteConfiguration>(r.route_config.as_ref())?;
            }
        }
        "envoy.admin.v3.BootstrapConfigDump" => {
            admin::BootstrapConfigDump::decode(v).map_err(e)?;
        }
        "envoy.admin.v3.ScopedRoutesConfigDump" => {
            admin::ScopedRoutesConfigDump::decode(v).map_err(e)?;
        }
        "envoy.admin.v3.SecretsConfigDump" => {
            admin::SecretsConfigDump::decode(v).map_err(e)?;
        }
        "envoy.admin.v3.EcdsConfigDump" => {
            admin::EcdsConfigDump::decode(v).map_err(e)?;
        }
        _ => {}
    }
    Ok(())
}

async fn run(ctx: &Ctx) -> Checked {
    let mesh = ctx.scripted()?;
    let scenario = mesh.scenario();
    let poisoned: Vec<(String, String)> = scenario
        .replicas
        .iter()
        .filter(|r| r.fault == Some(fake_istiod::Fault::Poison(Poison::ConfigDump)))
        .filter_map(|r| {
            let proxy = scenario.proxies.iter().find(|p| p.replica == r.name)?;
            Some((r.name.clone(), proxy.id.clone()))
        })
        .collect();
    if poisoned.is_empty() {
        return Err(fail(
            "the scenario has no replica with a poisoned config_dump: the bench is misconfigured",
        ));
    }
    let mut problems = Vec::new();
    for (name, id) in poisoned {
        let Some(replica) = ctx.replicas().into_iter().find(|r| r.name == name) else {
            return Err(fail(format!(
                "bench: replica {name} is not in the topology"
            )));
        };
        match ctx
            .fetch(proto::type_url::CONFIG_DUMP, std::slice::from_ref(&id))
            .await
        {
            Err(e) if names_replica(&e.to_string(), &replica) => {}
            Err(e) => problems.push(format!(
                "config_dump for {id}: the error does not name replica {name}, whose dump does not decode: {e}"
            )),
            Ok(resp) if resp.resources.is_empty() => problems.push(format!(
                "config_dump for {id}: an empty answer (istioctl: \"unable to find config dump\"), and replica {name}, which has it, is not named"
            )),
            Ok(resp) => {
                for (i, s) in resp.resources.iter().enumerate() {
                    if let Err(e) = section_decodes(s) {
                        problems.push(format!(
                            "config_dump for {id}: section {i} of replica {name}'s dump was forwarded and does not decode as istioctl reads it: {e}"
                        ));
                    }
                }
            }
        }
    }
    verdict(problems)
}
