//! Every object the bench renders itself. `${NAME}` placeholders are filled by
//! the executor once the value is known (LoadBalancer IPs, container IPs,
//! generated certificates); the plan prints them as they are.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Namespace, ResourceRequirements, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as K8sMeta;
use serde_json::{Value, json};

use crate::crd::*;
use crate::istio::{IstioVersion, Switches};
use crate::provider::{Provider, Role, subnets};

/// The namespace of the external control plane on both clusters (the guide's and the blog's).
pub const CONTROL_PLANE_NS: &str = "external-istiod";
/// The mesh network name of the guide (`net=network1`).
pub const NETWORK: &str = "network1";
/// The reference proxy's manifest (one source of truth with istioctl-proxy/deploy/).
pub const REFERENCE_PROXY_YAML: &str =
    include_str!("../../istioctl-proxy/deploy/istioctl-proxy.yaml");
/// The seed's sample proxy, applied as the blog applies it.
pub const SAMPLE_PROXY_URL: &str = "https://raw.githubusercontent.com/istio-ecosystem/istioctl-proxy-sample/main/istioctl-proxy.yaml";
/// MetalLB for LoadBalancer Services in kind/k3d (clusters.md; without one the guide fails,
/// istio/istio#39691).
pub const METALLB_URL: &str = "https://raw.githubusercontent.com/metallb/metallb/v0.14.9/config/manifests/metallb-native.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: document {index}: {source}")]
    Yaml {
        file: String,
        index: usize,
        source: serde_yaml_ng::Error,
    },
    #[error("{file}: {what}")]
    Shape { file: String, what: String },
    #[error("rendering {what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
}

/// One YAML file of one or more documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub file: String,
    pub docs: Vec<Value>,
}

impl Manifest {
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for d in &self.docs {
            out.push_str("---\n");
            // A Value made from our own structs always serializes.
            out.push_str(
                &serde_yaml_ng::to_string(d).unwrap_or_else(|e| format!("# unrenderable: {e}\n")),
            );
        }
        out
    }

    /// `kind namespace/name` of each document, for progress and errors.
    pub fn object_names(&self) -> Vec<String> {
        self.docs.iter().map(object_name).collect()
    }
}

pub fn object_name(d: &Value) -> String {
    let kind = d["kind"].as_str().unwrap_or("?");
    let name = d["metadata"]["name"].as_str().unwrap_or("?");
    match d["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn to_value<T: serde::Serialize>(what: &str, t: &T) -> Result<Value, ManifestError> {
    serde_json::to_value(t).map_err(|source| ManifestError::Json {
        what: what.into(),
        source,
    })
}

fn meta(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> K8sMeta {
    K8sMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }),
        ..Default::default()
    }
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> Result<Value, ManifestError> {
    let mut v = to_value(
        "Namespace",
        &Namespace {
            metadata: meta(name, None, labels),
            ..Default::default()
        },
    )?;
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Namespace");
    Ok(v)
}

fn with_type(mut v: Value, api_version: &str, kind: &str) -> Value {
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    v
}

/// kind's cluster config: the node image for this Istio line and disjoint subnets.
pub fn kind_config(role: Role, sw: &Switches) -> Result<Manifest, ManifestError> {
    let (pod_subnet, service_subnet) = subnets(role);
    let c = KindCluster {
        api_version: "kind.x-k8s.io/v1alpha4".into(),
        kind: "Cluster".into(),
        name: role.as_str().into(),
        networking: KindNetworking {
            pod_subnet: pod_subnet.into(),
            service_subnet: service_subnet.into(),
        },
        nodes: vec![KindNode {
            role: "control-plane".into(),
            image: sw.node.kind_image.into(),
        }],
    };
    Ok(Manifest {
        file: format!("kind-{role}.yaml"),
        docs: vec![to_value("kind config", &c)?],
    })
}

/// MetalLB's address pool for one cluster: the end of the docker network's range, disjoint per cluster.
pub fn metallb_pool(role: Role) -> Result<Manifest, ManifestError> {
    let var = format!("${{METALLB_POOL_{}}}", role.as_str().to_uppercase());
    let pool = IpAddressPool {
        api_version: "metallb.io/v1beta1".into(),
        kind: "IPAddressPool".into(),
        metadata: ObjectMeta::named("proxy-conformance", "metallb-system"),
        spec: IpAddressPoolSpec {
            addresses: vec![var],
        },
    };
    let l2 = L2Advertisement {
        api_version: "metallb.io/v1beta1".into(),
        kind: "L2Advertisement".into(),
        metadata: ObjectMeta::named("proxy-conformance", "metallb-system"),
        spec: L2AdvertisementSpec {
            ip_address_pools: vec!["proxy-conformance".into()],
        },
    };
    Ok(Manifest {
        file: format!("metallb-pool-{role}.yaml"),
        docs: vec![
            to_value("IPAddressPool", &pool)?,
            to_value("L2Advertisement", &l2)?,
        ],
    })
}

/// The trust pitfall of clusters.md: one shared root planted as `cacerts` in both control-plane
/// namespaces of the external cluster BEFORE either istiod starts, so `istio-ca-root-cert` in
/// `external-istiod` (written by the istio-system istiod) holds the root that signed the external
/// istiods' serving certificates (the layout of istio/istio samples/certs: root-cert.pem,
/// cert-chain.pem, ca-cert.pem, ca-key.pem).
pub fn shared_ca() -> Result<Manifest, ManifestError> {
    let mut docs = vec![
        namespace("istio-system", &[])?,
        namespace(CONTROL_PLANE_NS, &[])?,
    ];
    for ns in ["istio-system", CONTROL_PLANE_NS] {
        let data: BTreeMap<String, String> = [
            ("root-cert.pem", "${CACERTS_ROOT_CERT}"),
            ("cert-chain.pem", "${CACERTS_CERT_CHAIN}"),
            ("ca-cert.pem", "${CACERTS_CA_CERT}"),
            ("ca-key.pem", "${CACERTS_CA_KEY}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = Secret {
            metadata: meta("cacerts", Some(ns), &[]),
            string_data: Some(data),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        docs.push(with_type(to_value("Secret cacerts", &s)?, "v1", "Secret"));
    }
    Ok(Manifest {
        file: "shared-cacerts.yaml".into(),
        docs,
    })
}

pub fn control_plane_namespace(role: Role) -> Result<Manifest, ManifestError> {
    Ok(Manifest {
        file: format!("namespace-{CONTROL_PLANE_NS}-{role}.yaml"),
        docs: vec![namespace(CONTROL_PLANE_NS, &[])?],
    })
}

/// "Create, and label for injection, the sample namespace on the remote cluster".
pub fn sample_namespace() -> Result<Manifest, ManifestError> {
    Ok(Manifest {
        file: "namespace-sample.yaml".into(),
        docs: vec![namespace("sample", &[("istio-injection", "enabled")])?],
    })
}

fn iop(namespace: Option<&str>, spec: IstioOperatorSpec) -> IstioOperator {
    IstioOperator {
        api_version: "install.istio.io/v1alpha1".into(),
        kind: "IstioOperator".into(),
        metadata: ObjectMeta {
            name: None,
            namespace: namespace.map(Into::into),
        },
        spec,
    }
}

fn requests(cpu: &str, memory: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity(memory.into())),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

fn iop_manifest(file: &str, op: &IstioOperator) -> Result<Manifest, ManifestError> {
    Ok(Manifest {
        file: file.into(),
        docs: vec![to_value(file, op)?],
    })
}

/// "Set up a gateway in the external cluster": controlplane-gateway.yaml of the guide. The default
/// profile's istiod (istio-system) comes with it; its requests are lowered for a 2-vCPU runner.
pub fn controlplane_gateway() -> Result<Manifest, ManifestError> {
    let port = |port: i32, name: &str| GatewayPort {
        port,
        target_port: port,
        name: name.into(),
    };
    let op = iop(
        Some("istio-system"),
        IstioOperatorSpec {
            components: Some(Components {
                pilot: Some(Component {
                    enabled: true,
                    k8s: Some(K8sSpec {
                        resources: Some(requests("100m", "256Mi")),
                        ..Default::default()
                    }),
                }),
                ingress_gateways: vec![GatewayComponent {
                    name: "istio-ingressgateway".into(),
                    enabled: true,
                    k8s: Some(K8sSpec {
                        service: Some(GatewayService {
                            ports: vec![
                                port(15021, "status-port"),
                                port(15012, "tls-xds"),
                                port(15017, "tls-webhook"),
                            ],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    iop_manifest("controlplane-gateway.yaml", &op)
}

/// "Set up the remote config cluster": remote-config-cluster.yaml, per version (istio.rs).
pub fn remote_config_cluster(
    v: IstioVersion,
    provider: &Provider,
) -> Result<Manifest, ManifestError> {
    let sw = v.switches();
    let cluster = provider.cluster_name(Role::Remote);
    let mut values = json!({
        "global": { "istioNamespace": CONTROL_PLANE_NS },
        "pilot": { "configMap": true },
    });
    let mut components = None;
    if sw.webhooks_by_url {
        // seeds/install-external-controlplane.md (the 1.12 guide): base component on, webhooks by URL.
        components = Some(Components {
            base: Some(Component {
                enabled: true,
                k8s: None,
            }),
            ..Default::default()
        });
        values["istiodRemote"] = json!({
            "injectionURL": format!("https://${{EXTERNAL_ISTIOD_ADDR}}:15017/inject/:ENV:cluster={cluster}:ENV:net={NETWORK}")
        });
        values["base"] =
            json!({ "validationURL": "https://${EXTERNAL_ISTIOD_ADDR}:15017/validate" });
    } else {
        // clusters.md step 2 (istio.io's tested IP variant): the istiod Service made from remotePilotAddress.
        values["global"]["configCluster"] = json!(true);
        values["global"]["remotePilotAddress"] = json!("${EXTERNAL_ISTIOD_ADDR}");
        values["istiodRemote"] =
            json!({ "injectionPath": format!("/inject/cluster/{cluster}/net/{NETWORK}") });
    }
    let op = iop(
        Some(CONTROL_PLANE_NS),
        IstioOperatorSpec {
            profile: Some(sw.remote_profile.into()),
            components,
            values: Some(values),
            ..Default::default()
        },
    );
    iop_manifest("remote-config-cluster.yaml", &op)
}

/// "Set up the control plane in the external cluster": external-istiod.yaml, with the sharding
/// switches (replicas >= 3, autoscale off, lowered requests: clusters.md step 4).
pub fn external_istiod(
    v: IstioVersion,
    provider: &Provider,
    replicas: u32,
) -> Result<Manifest, ManifestError> {
    let sw = v.switches();
    let patch = |path: &str, value: &str| Patch {
        path: path.into(),
        value: value.into(),
    };
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let mut envs = vec![
        env(
            "INJECTION_WEBHOOK_CONFIG_NAME",
            &format!("istio-sidecar-injector-{CONTROL_PLANE_NS}"),
        ),
        env(
            "VALIDATION_WEBHOOK_CONFIG_NAME",
            &format!("istio-validator-{CONTROL_PLANE_NS}"),
        ),
        env("EXTERNAL_ISTIOD", "true"),
    ];
    if sw.local_cluster_secret_watcher {
        envs.push(env("LOCAL_CLUSTER_SECRET_WATCHER", "true"));
    }
    envs.push(env("CLUSTER_ID", &provider.cluster_name(Role::Remote)));
    envs.push(env("SHARED_MESH_CONFIG", "istio"));
    let mut values = json!({
        "global": {
            "caAddress": "${EXTERNAL_ISTIOD_ADDR}:15012",
            "istioNamespace": CONTROL_PLANE_NS,
            "operatorManageWebhooks": true,
            "meshID": "mesh1",
        },
        "pilot": { "autoscaleEnabled": false, "replicaCount": replicas },
    });
    if sw.config_validation_value {
        values["global"]["configValidation"] = json!(false);
    }
    let op = iop(
        Some(CONTROL_PLANE_NS),
        IstioOperatorSpec {
            profile: Some("empty".into()),
            mesh_config: Some(json!({
                "rootNamespace": CONTROL_PLANE_NS,
                "defaultConfig": { "discoveryAddress": "${EXTERNAL_ISTIOD_ADDR}:15012" },
            })),
            components: Some(Components {
                pilot: Some(Component {
                    enabled: true,
                    k8s: Some(K8sSpec {
                        env: envs,
                        resources: Some(requests("100m", "256Mi")),
                        overlays: vec![Overlay {
                            kind: "Deployment".into(),
                            name: "istiod".into(),
                            patches: vec![
                                patch(
                                    "spec.template.spec.volumes[100]",
                                    "name: config-volume\nconfigMap:\n  name: istio",
                                ),
                                patch(
                                    "spec.template.spec.volumes[100]",
                                    "name: inject-volume\nconfigMap:\n  name: istio-sidecar-injector",
                                ),
                                patch(
                                    "spec.template.spec.containers[0].volumeMounts[100]",
                                    "name: config-volume\nmountPath: /etc/istio/config",
                                ),
                                patch(
                                    "spec.template.spec.containers[0].volumeMounts[100]",
                                    "name: inject-volume\nmountPath: /var/lib/istio/inject",
                                ),
                            ],
                        }],
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            values: Some(values),
        },
    );
    iop_manifest("external-istiod.yaml", &op)
}

/// External cluster: Gateway + VirtualService in TLS PASSTHROUGH to istiod itself (the IP variant:
/// no certificates, no DestinationRule; clusters.md step 5).
pub fn external_istiod_gw() -> Result<Manifest, ManifestError> {
    let server = |number: u32, name: &str| GatewayServer {
        port: ServerPort {
            number,
            protocol: "TLS".into(),
            name: name.into(),
        },
        tls: ServerTls {
            mode: "PASSTHROUGH".into(),
        },
        hosts: vec!["*".into()],
    };
    let gw = Gateway {
        api_version: "networking.istio.io/v1beta1".into(),
        kind: "Gateway".into(),
        metadata: ObjectMeta::named("external-istiod-gw", CONTROL_PLANE_NS),
        spec: GatewaySpec {
            selector: [("istio".to_string(), "ingressgateway".to_string())].into(),
            servers: vec![server(15012, "tls-XDS"), server(15017, "tls-WEBHOOK")],
        },
    };
    let istiod = format!("istiod.{CONTROL_PLANE_NS}.svc.cluster.local");
    let route = |port: u32, to: u32| TlsRoute {
        matches: vec![TlsMatch {
            port,
            sni_hosts: vec!["*".into()],
        }],
        route: vec![RouteDestination {
            destination: Destination {
                host: istiod.clone(),
                port: DestinationPort { number: to },
            },
        }],
    };
    let vs = VirtualService {
        api_version: "networking.istio.io/v1beta1".into(),
        kind: "VirtualService".into(),
        metadata: ObjectMeta::named("external-istiod-vs", CONTROL_PLANE_NS),
        spec: VirtualServiceSpec {
            hosts: vec!["*".into()],
            gateways: vec!["external-istiod-gw".into()],
            tls: vec![route(15012, 15012), route(15017, 443)],
        },
    };
    Ok(Manifest {
        file: "external-istiod-gw.yaml".into(),
        docs: vec![to_value("Gateway", &gw)?, to_value("VirtualService", &vs)?],
    })
}

/// "Enable gateways": istio-ingressgateway.yaml of the guide (remote cluster).
pub fn remote_ingress_gateway() -> Result<Manifest, ManifestError> {
    let op = IstioOperator {
        // The guide's file says operator.istio.io/v1alpha1 here; istioctl reads both groups.
        api_version: "install.istio.io/v1alpha1".into(),
        kind: "IstioOperator".into(),
        metadata: ObjectMeta {
            name: None,
            namespace: None,
        },
        spec: IstioOperatorSpec {
            profile: Some("empty".into()),
            components: Some(Components {
                ingress_gateways: vec![GatewayComponent {
                    name: "istio-ingressgateway".into(),
                    namespace: Some(CONTROL_PLANE_NS.into()),
                    enabled: true,
                    k8s: None,
                }],
                ..Default::default()
            }),
            values: Some(
                json!({ "gateways": { "istio-ingressgateway": { "injectionTemplate": "gateway" } } }),
            ),
            ..Default::default()
        },
    };
    iop_manifest("istio-ingressgateway.yaml", &op)
}

/// The reference proxy: istioctl-proxy/deploy/istioctl-proxy.yaml with the image under test, plus
/// its TLS secret (generated at `up`). The CA it trusts for istiod is `istio-ca-root-cert`, which
/// the shared `cacerts` makes the right root (trust pitfall, clusters.md).
pub fn reference_proxy(image: &str) -> Result<Manifest, ManifestError> {
    let file = "istioctl-proxy/deploy/istioctl-proxy.yaml";
    let mut docs = parse_yaml_docs(file, REFERENCE_PROXY_YAML)?;
    let mut found = false;
    for d in &mut docs {
        if d["kind"] == "Deployment" {
            let containers = d["spec"]["template"]["spec"]["containers"]
                .as_array_mut()
                .ok_or_else(|| ManifestError::Shape {
                    file: file.into(),
                    what: "Deployment: spec.template.spec.containers is not a list".into(),
                })?;
            for c in containers {
                if c["name"] == "istioctl-proxy" {
                    c["image"] = json!(image);
                    found = true;
                }
            }
        }
    }
    if !found {
        return Err(ManifestError::Shape {
            file: file.into(),
            what: "no Deployment with a container named istioctl-proxy".into(),
        });
    }
    let tls = Secret {
        metadata: meta("istioctl-proxy-tls", Some(CONTROL_PLANE_NS), &[]),
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(
            [
                ("tls.crt".to_string(), "${PROXY_TLS_CERT}".to_string()),
                ("tls.key".to_string(), "${PROXY_TLS_KEY}".to_string()),
            ]
            .into(),
        ),
        ..Default::default()
    };
    docs.insert(
        0,
        with_type(to_value("Secret istioctl-proxy-tls", &tls)?, "v1", "Secret"),
    );
    Ok(Manifest {
        file: "istioctl-proxy.yaml".into(),
        docs,
    })
}

/// Multi-document YAML into JSON values (empty documents dropped).
pub fn parse_yaml_docs(file: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|source| ManifestError::Yaml {
            file: file.into(),
            index,
            source,
        })?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}
