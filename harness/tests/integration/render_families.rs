//! The table each istioctl family prints, from hand-built istiod responses.

use crate::support::syncz::*;
use harness::render::{self, OutputFormat, RenderOptions, key_by_control_plane, render_responses};
use proto::IstioctlFamily;
use proto::type_url::*;

fn opts() -> RenderOptions {
    RenderOptions::at(now())
}

fn table(
    family: IstioctlFamily,
    responses: &[proto::envoy::envoy::service::discovery::v3::DiscoveryResponse],
) -> String {
    render_responses(family, responses, &opts()).unwrap()
}

#[test]
fn blog_mesh_in_the_1_12_format_is_the_blogs_table() {
    let want = include_str!("../fixtures/blog-1.12-table.txt");
    assert_eq!(table(IstioctlFamily::V1_12, &[blog_mesh()]), want);
}

#[test]
fn every_family_renders_the_modern_mesh() {
    let mesh = [modern_mesh("<external>")];
    for family in IstioctlFamily::ALL {
        insta::assert_snapshot!(
            format!("modern_mesh_{}", family.label()),
            table(family, &mesh)
        );
    }
    let mut verbose = opts();
    verbose.verbosity = 1;
    for family in [IstioctlFamily::V1_27, IstioctlFamily::V1_30] {
        let out = render::render(family, &key_by_control_plane(mesh.clone()), &verbose).unwrap();
        insta::assert_snapshot!(format!("modern_mesh_{}_verbose", family.label()), out);
    }
}

#[test]
fn every_family_renders_the_blog_mesh() {
    for family in IstioctlFamily::ALL {
        insta::assert_snapshot!(
            format!("blog_mesh_{}", family.label()),
            table(family, &[blog_mesh()])
        );
    }
}

#[test]
fn legacy_shape_is_read_by_every_family() {
    let r = response(
        "istiod-5d8f9c6d9b-x2x7k",
        "1.11.8",
        vec![
            legacy(
                "details-v1-558b8b4b76-qzqsg.default",
                SYNCED,
                SYNCED,
                SYNCED,
                SYNCED,
            ),
            legacy(
                "istio-egressgateway-7d4f5b7c4f-x2q9p.istio-system",
                SYNCED,
                NOT_SENT,
                SYNCED,
                STALE,
            ),
        ],
    );
    for family in IstioctlFamily::ALL {
        insta::assert_snapshot!(
            format!("legacy_shape_{}", family.label()),
            table(family, std::slice::from_ref(&r))
        );
    }
}

#[test]
fn empty_mesh_per_family() {
    let empty = [response("<external>", "1.30.0", vec![])];
    let header9 =
        "NAME     CLUSTER     CDS     LDS     EDS     RDS     ECDS     ISTIOD     VERSION\n";
    for (family, want) in [
        (IstioctlFamily::V1_12, ""),
        (IstioctlFamily::V1_14, ""),
        (IstioctlFamily::V1_19, ""),
        (IstioctlFamily::V1_22, header9),
        (IstioctlFamily::V1_23, header9),
        (
            IstioctlFamily::V1_27,
            "NAME     CLUSTER     ISTIOD     VERSION     SUBSCRIBED TYPES\n",
        ),
        (
            IstioctlFamily::V1_30,
            "NAME     CLUSTER     ISTIOD     VERSION     SUBSCRIBED TYPES\n",
        ),
    ] {
        assert_eq!(table(family, &empty), want, "family {family}");
    }
    let mut verbose = opts();
    verbose.verbosity = 1;
    assert_eq!(
        render::render(
            IstioctlFamily::V1_30,
            &key_by_control_plane(empty.clone()),
            &verbose
        )
        .unwrap(),
        "NAME     CLUSTER     CDS     ECDS     EDS     LDS     RDS     ISTIOD     VERSION\n"
    );
}

#[test]
fn identical_control_plane_ids_overwrite() {
    // Two responses with the same ID: istioctl keeps the last one only.
    let first = response(
        "<external>",
        "1.30.0",
        vec![generic("a.ns", &[], &[t(CLUSTER, SYNCED)])],
    );
    let second = response(
        "<external>",
        "1.30.0",
        vec![generic("b.ns", &[], &[t(CLUSTER, SYNCED)])],
    );
    let out = table(IstioctlFamily::V1_30, &[first.clone(), second.clone()]);
    assert!(out.contains("b.ns") && !out.contains("a.ns"), "{out}");
    // Distinct IDs: both shown, each with its own ISTIOD.
    let other = response(
        "istiod-2",
        "1.30.0",
        vec![generic("a.ns", &[], &[t(CLUSTER, SYNCED)])],
    );
    let out = table(IstioctlFamily::V1_30, &[other, second]);
    insta::assert_snapshot!("two_istiods_1.30", out);
}

#[test]
fn missing_and_invalid_control_planes() {
    let mut missing = response(
        "x",
        "1.12.1",
        vec![generic("a.ns", &[], &[t(CLUSTER, SYNCED)])],
    );
    missing.control_plane = None;
    let mut invalid = response(
        "x",
        "1.12.1",
        vec![generic("b.ns", &[], &[t(CLUSTER, SYNCED)])],
    );
    invalid.control_plane = Some(proto::envoy::envoy::config::core::v3::ControlPlane {
        identifier: "{not json".into(),
    });
    for family in [
        IstioctlFamily::V1_12,
        IstioctlFamily::V1_14,
        IstioctlFamily::V1_27,
    ] {
        insta::assert_snapshot!(
            format!("missing_invalid_{}", family.label()),
            table(family, &[missing.clone(), invalid.clone()])
        );
    }
}

#[test]
fn column_widths_long_names_empty_cells_non_ascii() {
    let long = "a-very-long-workload-name-that-goes-on-and-on-0123456789abcdef-xyz12.some-long-namespace-name";
    let r = response(
        "istiod-ñ",
        "1.30.0",
        vec![
            generic(
                long,
                &[
                    ("CLUSTER_ID", "Kubernetes"),
                    ("NAMESPACE", "x"),
                    ("ISTIO_VERSION", "1.30.0"),
                ],
                &[t(CLUSTER, SYNCED)],
            ),
            generic(
                "café-7f9c.espaço",
                &[("CLUSTER_ID", "クラスター"), ("ISTIO_VERSION", "1.30.0")],
                &[t(LISTENER, SYNCED)],
            ),
            generic("", &[], &[]),
        ],
    );
    for family in [
        IstioctlFamily::V1_14,
        IstioctlFamily::V1_22,
        IstioctlFamily::V1_30,
    ] {
        let out = table(family, std::slice::from_ref(&r));
        // Every row's ISTIOD column starts at the same rune column.
        let cols: Vec<usize> = out
            .lines()
            .skip(1)
            .map(|l| {
                l.chars()
                    .collect::<String>()
                    .find("istiod-ñ")
                    .map(|b| l[..b].chars().count())
                    .unwrap_or(0)
            })
            .collect();
        assert!(cols.windows(2).all(|w| w[0] == w[1]), "{family}: {out}");
        insta::assert_snapshot!(format!("widths_{}", family.label()), out);
    }
}

#[test]
fn namespace_filter_from_1_19() {
    let mesh = [modern_mesh("<external>")];
    let mut o = opts();
    o.namespace = Some("bookinfo".into());
    let out = render_responses(IstioctlFamily::V1_30, &mesh, &o).unwrap();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.lines().skip(1).all(|l| l.contains(".bookinfo")),
        "{out}"
    );
    // 1.19 filters (`1.19.0:istioctl/pkg/writer/pilot/status.go`); before, -n is
    // istioctl's global flag and proxy-status ignores it.
    let out = render_responses(IstioctlFamily::V1_19, &mesh, &o).unwrap();
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = render_responses(IstioctlFamily::V1_14, &mesh, &o).unwrap();
    assert_eq!(out.lines().count(), 6, "{out}");
}

#[test]
fn json_and_yaml_documents_1_30() {
    let mesh = [modern_mesh("<external>")];
    let mut o = opts();
    o.namespace = Some("istio-system".into());
    o.output = OutputFormat::Json;
    insta::assert_snapshot!(
        "documents_json",
        render_responses(IstioctlFamily::V1_30, &mesh, &o).unwrap()
    );
    o.output = OutputFormat::Yaml;
    insta::assert_snapshot!(
        "documents_yaml",
        render_responses(IstioctlFamily::V1_30, &mesh, &o).unwrap()
    );
    o.output = OutputFormat::Json;
    // 1.27-1.29 accept -o and print the table anyway; before 1.27 it is no flag.
    let mut table = o.clone();
    table.output = OutputFormat::Table;
    assert_eq!(
        render_responses(IstioctlFamily::V1_27, &mesh, &o).unwrap(),
        render_responses(IstioctlFamily::V1_27, &mesh, &table).unwrap()
    );
    let err = render_responses(IstioctlFamily::V1_23, &mesh, &o).unwrap_err();
    assert!(
        err.to_string().starts_with("unknown shorthand flag: 'o'"),
        "{err}"
    );
}

#[test]
fn yaml_matches_istioctls_testdata_layout() {
    // istioctl's testdata/multiXdsStatusSinglePilot.yaml, built from the same input.
    let r = {
        let mut r = response(
            "istiod1",
            "1.1",
            vec![generic(
                "proxy1",
                &[("CLUSTER_ID", "cluster1"), ("ISTIO_VERSION", "1.20")],
                &[
                    t(CLUSTER, STALE),
                    t(LISTENER, SYNCED),
                    t(ROUTE, NOT_SENT),
                    t(ENDPOINT, SYNCED),
                    t(EXTENSION_CONFIG, SYNCED),
                ],
            )],
        );
        r.version_info = "1.1".into();
        r.type_url = CLIENT_CONFIG.into();
        r.control_plane = Some(proto::envoy::envoy::config::core::v3::ControlPlane {
            identifier: r#"{"Component":"istiod","ID":"istiod1","Info":{"version":"1.1","revision":"","golang_version":"","status":"","tag":""}}"#.into(),
        });
        r
    };
    let mut o = opts();
    o.output = OutputFormat::Yaml;
    let want = r#"controlPlane:
  identifier: '{"Component":"istiod","ID":"istiod1","Info":{"version":"1.1","revision":"","golang_version":"","status":"","tag":""}}'
resources:
- '@type': type.googleapis.com/envoy.service.status.v3.ClientConfig
  genericXdsConfigs:
  - configStatus: STALE
    typeUrl: type.googleapis.com/envoy.config.cluster.v3.Cluster
  - configStatus: SYNCED
    typeUrl: type.googleapis.com/envoy.config.listener.v3.Listener
  - configStatus: NOT_SENT
    typeUrl: type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  - configStatus: SYNCED
    typeUrl: type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
  - configStatus: SYNCED
    typeUrl: type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  node:
    id: proxy1
    metadata:
      CLUSTER_ID: cluster1
      ISTIO_VERSION: "1.20"
typeUrl: type.googleapis.com/envoy.service.status.v3.ClientConfig
versionInfo: "1.1"

"#;
    assert_eq!(
        render_responses(IstioctlFamily::V1_30, std::slice::from_ref(&r), &o).unwrap(),
        want
    );
    o.output = OutputFormat::Json;
    let json = render_responses(IstioctlFamily::V1_30, &[r], &o).unwrap();
    let want_json = r#"{
    "versionInfo": "1.1",
    "resources": [
        {
            "@type": "type.googleapis.com/envoy.service.status.v3.ClientConfig",
            "node": {
                "id": "proxy1",
                "metadata": {
                        "CLUSTER_ID": "cluster1",
                        "ISTIO_VERSION": "1.20"
                    }
            },
            "genericXdsConfigs": [
                {
                    "typeUrl": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                    "configStatus": "STALE"
                },
                {
                    "typeUrl": "type.googleapis.com/envoy.config.listener.v3.Listener",
                    "configStatus": "SYNCED"
                },
                {
                    "typeUrl": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                    "configStatus": "NOT_SENT"
                },
                {
                    "typeUrl": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                    "configStatus": "SYNCED"
                },
                {
                    "typeUrl": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
                    "configStatus": "SYNCED"
                }
            ]
        }
    ],
    "typeUrl": "type.googleapis.com/envoy.service.status.v3.ClientConfig",
    "controlPlane": {
        "identifier": "{\"Component\":\"istiod\",\"ID\":\"istiod1\",\"Info\":{\"version\":\"1.1\",\"revision\":\"\",\"golang_version\":\"\",\"status\":\"\",\"tag\":\"\"}}"
    }
}
"#;
    assert_eq!(json, want_json);
}

#[test]
fn non_client_config_resources() {
    // 1.8-1.21 print other resources raw and drop the rows gathered so far;
    // 1.22+ fail like UnmarshalTo.
    let mut r = blog_mesh();
    r.resources.push(proto::envoy::google::protobuf::Any {
        type_url: "type.googleapis.com/x.Y".into(),
        value: b"raw".to_vec(),
    });
    // Go writes every resource of that response raw (the ClientConfigs too), then the header only.
    let out = table(IstioctlFamily::V1_14, std::slice::from_ref(&r));
    assert!(out.ends_with("raw\nNAME     CLUSTER     CDS     LDS     EDS     RDS     ECDS     ISTIOD     VERSION\n"), "{out:?}");
    let only_raw = response("istiod-1", "1.14.0", vec![r.resources[3].clone()]);
    assert_eq!(
        table(IstioctlFamily::V1_14, std::slice::from_ref(&only_raw)),
        "raw\n"
    );
    // 1.11+ write a newline after each raw resource (1.10 did not).
    assert_eq!(
        table(IstioctlFamily::V1_12, std::slice::from_ref(&only_raw)),
        "raw\n"
    );
    let err = render_responses(IstioctlFamily::V1_23, &[r], &opts()).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"could not unmarshal ClientConfig: proto: mismatched message type: got "envoy.service.status.v3.ClientConfig", want "x.Y""#
    );
}
