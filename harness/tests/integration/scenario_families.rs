//! Tables from the scenarios' data (fake-istiod's syncz shapes, no sockets):
//! what istioctl prints when it reaches the replicas directly, and what it must
//! print through a correct aggregating proxy (`<external>`), in every family.
//! Also: decoding of each ClientConfig shape fake-istiod produces per istiod family.

use crate::support::scenarios::scenario;
use crate::support::syncz::now;
use fake_istiod::scenario::LastUpdated;
use fake_istiod::{Proxy, ProxyKind, Scenario, SyncStatus, TypeStatus, syncz};
use harness::decode::{self, ControlPlaneKind};
use harness::render::{self, KeyedResponses, RenderOptions};
use proto::envoy::envoy::config::core::v3::ControlPlane;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::type_url::*;
use proto::{BuildInfo, IstioControlPlaneInstance, IstioVersion, IstioctlFamily};
use std::time::Duration;

fn syncz_response(id: &str, version: &IstioVersion, proxies: &[&Proxy]) -> DiscoveryResponse {
    DiscoveryResponse {
        type_url: SYNCZ.into(),
        resources: syncz::resources(proxies.iter().copied(), version, now()),
        control_plane: Some(ControlPlane {
            identifier: IstioControlPlaneInstance::istiod(
                id,
                BuildInfo::release(&version.to_string()),
            )
            .to_json(),
        }),
        ..Default::default()
    }
}

/// Each replica answering for itself, keyed like istioctl keys them.
fn direct(s: &Scenario) -> KeyedResponses {
    let by_replica = s.proxies_by_replica();
    render::key_by_control_plane(s.replicas.iter().map(|r| {
        let v = r
            .version
            .clone()
            .unwrap_or_else(|| s.istiod.version.clone());
        syncz_response(
            &r.name,
            &v,
            by_replica
                .get(r.name.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        )
    }))
}

/// What a correct aggregating proxy returns: every replica's ClientConfigs, ID `<external>`.
fn aggregated(s: &Scenario) -> KeyedResponses {
    let mut merged = syncz_response(proto::control_plane::EXTERNAL_ID, &s.istiod.version, &[]);
    for r in direct(s).into_values() {
        merged.resources.extend(r.resources);
    }
    render::key_by_control_plane([merged])
}

fn all_families(responses: &KeyedResponses) -> String {
    let mut out = String::new();
    for family in IstioctlFamily::ALL {
        out.push_str(&format!(
            "── istioctl {} ({}) ──\n",
            family.label(),
            family.covers()
        ));
        out.push_str(&render::render(family, responses, &RenderOptions::at(now())).unwrap());
        if matches!(family, IstioctlFamily::V1_27 | IstioctlFamily::V1_30) {
            let mut o = RenderOptions::at(now());
            o.verbosity = 1;
            out.push_str(&format!("── istioctl {} -v 1 ──\n", family.label()));
            out.push_str(&render::render(family, responses, &o).unwrap());
        }
    }
    out
}

#[test]
fn scenario_tables_in_every_family() {
    for name in [
        "blog-walkthrough",
        "three-replicas",
        "mixed-versions",
        "empty-mesh",
    ] {
        let s = scenario(&format!("{name}.yaml"));
        insta::assert_snapshot!(format!("{name}_direct"), all_families(&direct(&s)));
        insta::assert_snapshot!(format!("{name}_external"), all_families(&aggregated(&s)));
    }
}

#[test]
fn blog_scenario_through_a_proxy_is_the_blogs_table() {
    let s = scenario("blog-walkthrough.yaml");
    let out = render::render(
        IstioctlFamily::V1_12,
        &aggregated(&s),
        &RenderOptions::at(now()),
    )
    .unwrap();
    assert_eq!(out, include_str!("../fixtures/blog-1.12-table.txt"));
}

#[test]
fn large_mesh_renders_every_proxy_once() {
    let s = scenario("large-mesh.yaml");
    let out = render::render(
        IstioctlFamily::V1_30,
        &aggregated(&s),
        &RenderOptions::at(now()),
    )
    .unwrap();
    assert_eq!(out.lines().count(), s.proxies.len() + 1);
}

/// A proxy with one type in each state.
fn every_status_proxy(version: &IstioVersion) -> Proxy {
    let mut p = Proxy::new(
        "reviews-v2-7bf8c9648f-7mbk5.bookinfo",
        "istiod-a",
        version.clone(),
        ProxyKind::Sidecar,
    );
    p.cluster = "Kubernetes".into();
    let ts = |t: &str, status, error: Option<&str>| TypeStatus {
        type_url: t.to_string(),
        status,
        error: error.map(str::to_string),
        last_updated: Some(LastUpdated::Ago(Duration::from_secs(120))),
    };
    p.types = vec![
        ts(CLUSTER, SyncStatus::Synced, None),
        ts(ENDPOINT, SyncStatus::Stale, None),
        ts(LISTENER, SyncStatus::Error, Some("duplicate listener")),
        TypeStatus {
            last_updated: None,
            ..ts(ROUTE, SyncStatus::NotSent, None)
        },
    ];
    p
}

#[test]
fn decodes_every_shape_fake_istiod_produces() {
    // (istiod version, legacy?, ECDS reported?, metadata keys istioctl reads, ERROR reported?)
    let cases = [
        ("1.11.8", true, false, false, false),
        ("1.12.1", false, false, false, false),
        ("1.14.0", false, true, true, false),
        ("1.16.0", false, true, false, false),
        ("1.19.0", false, true, true, false),
        ("1.23.0", false, false, true, true),
        ("1.30.0", false, false, true, true),
    ];
    for (v, legacy, ecds, three_keys, error) in cases {
        let version: IstioVersion = v.parse().unwrap();
        let p = every_status_proxy(&version);
        let resp = syncz_response("istiod-a", &version, &[&p]);
        let got = decode::decode_syncz(&resp).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(got.control_plane.kind, ControlPlaneKind::Valid);
        assert_eq!(
            (
                got.control_plane.id.as_str(),
                got.control_plane.version.as_str()
            ),
            ("istiod-a", v)
        );
        let proxy = &got.proxies[0];
        assert_eq!(
            proxy.proxy_id, "reviews-v2-7bf8c9648f-7mbk5.bookinfo",
            "{v}"
        );
        let status = |t: &str| proxy.status_of(t).map(|x| x.status_name());
        assert_eq!(status(CLUSTER).as_deref(), Some("SYNCED"), "{v}");
        assert_eq!(status(ENDPOINT).as_deref(), Some("STALE"), "{v}");
        assert_eq!(
            status(LISTENER).as_deref(),
            Some(if error { "ERROR" } else { "STALE" }),
            "{v}"
        );
        assert_eq!(status(ROUTE).as_deref(), Some("NOT_SENT"), "{v}");
        assert_eq!(
            proxy.status_of(EXTENSION_CONFIG).is_some(),
            ecds,
            "{v} ECDS"
        );
        assert_eq!(
            proxy.xds.iter().any(|x| x.last_updated.is_some()),
            error,
            "{v} last_updated"
        );
        if error {
            let lds = proxy.status_of(LISTENER).unwrap();
            assert_eq!(
                lds.error_details.as_deref(),
                Some("duplicate listener"),
                "{v}"
            );
            assert_eq!(
                lds.last_updated,
                Some(now() - Duration::from_secs(120)),
                "{v}"
            );
        }
        let cluster_id = if v == "1.11.8" || v == "1.12.1" {
            ""
        } else {
            "Kubernetes"
        };
        assert_eq!(proxy.metadata.cluster_id, cluster_id, "{v}");
        let (ns, pv) = if three_keys {
            ("bookinfo", v)
        } else {
            ("", "")
        };
        assert_eq!(
            (
                proxy.metadata.namespace.as_str(),
                proxy.metadata.istio_version.as_str()
            ),
            (ns, pv),
            "{v}"
        );
        // The legacy shape is read through handleAndGetXdsConfigs' fallback.
        let raw = decode::client_config(&resp.resources[0]).unwrap();
        assert_eq!(raw.generic_xds_configs.is_empty(), legacy, "{v}");
    }
}

#[test]
fn scenario_documents_1_30() {
    let s = scenario("three-replicas.yaml");
    let mut o = RenderOptions::at(now());
    o.namespace = Some("bookinfo".into());
    o.output = render::OutputFormat::Yaml;
    insta::assert_snapshot!(
        "three-replicas_external_yaml",
        render::render(IstioctlFamily::V1_30, &aggregated(&s), &o).unwrap()
    );
    o.output = render::OutputFormat::Json;
    insta::assert_snapshot!(
        "three-replicas_direct_json",
        render::render(IstioctlFamily::V1_30, &direct(&s), &o).unwrap()
    );
}
