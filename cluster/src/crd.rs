//! Small serde types for the non-core objects the bench renders (kind's cluster
//! config, MetalLB, IstioOperator, Istio networking). `deny_unknown_fields` on
//! every struct we own: a typo in our code fails the unit tests. The two
//! free-form parts of an IstioOperator (`values`, `meshConfig`) stay
//! `serde_json::Value` on purpose: their schema is the istioctl of each Istio
//! version (1.12 to 1.30 differ), and that istioctl rejects unknown values when
//! the plan runs; the plan only sets keys cited in `istio.rs`.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ObjectMeta {
    pub fn named(name: &str, namespace: &str) -> Self {
        Self {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
        }
    }
}

// ---------------------------------------------------------------- kind
/// `kind.x-k8s.io/v1alpha4` Cluster (kind's config file, never sent to an API server).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KindCluster {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub networking: KindNetworking,
    pub nodes: Vec<KindNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KindNetworking {
    pub pod_subnet: String,
    pub service_subnet: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KindNode {
    pub role: String,
    pub image: String,
}

// ---------------------------------------------------------------- MetalLB
/// `metallb.io/v1beta1` IPAddressPool (metallb v0.14 `config/crd`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpAddressPool {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: IpAddressPoolSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IpAddressPoolSpec {
    pub addresses: Vec<String>,
}

/// `metallb.io/v1beta1` L2Advertisement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct L2Advertisement {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: L2AdvertisementSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    pub ip_address_pools: Vec<String>,
}

// ---------------------------------------------------------------- IstioOperator
/// `install.istio.io/v1alpha1` IstioOperator, the fields the guide uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IstioOperator {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: IstioOperatorSpec,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IstioOperatorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_config: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<Components>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Components {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Component>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pilot: Option<Component>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress_gateways: Vec<GatewayComponent>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Component {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sSpec>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayComponent {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sSpec>,
}

/// The KubernetesResourcesSpec subset we use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct K8sSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<k8s_openapi::api::core::v1::EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<GatewayService>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overlays: Vec<Overlay>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayService {
    pub ports: Vec<GatewayPort>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayPort {
    pub port: i32,
    pub target_port: i32,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Overlay {
    pub kind: String,
    pub name: String,
    pub patches: Vec<Patch>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Patch {
    pub path: String,
    pub value: String,
}

// ---------------------------------------------------------------- Istio networking
/// `networking.istio.io/v1beta1` Gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gateway {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: GatewaySpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewaySpec {
    pub selector: BTreeMap<String, String>,
    pub servers: Vec<GatewayServer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayServer {
    pub port: ServerPort,
    pub tls: ServerTls,
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerPort {
    pub number: u32,
    pub protocol: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerTls {
    pub mode: String,
}

/// `networking.istio.io/v1beta1` VirtualService (TLS routes only).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualService {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: VirtualServiceSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    pub hosts: Vec<String>,
    pub gateways: Vec<String>,
    pub tls: Vec<TlsRoute>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsRoute {
    #[serde(rename = "match")]
    pub matches: Vec<TlsMatch>,
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsMatch {
    pub port: u32,
    pub sni_hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteDestination {
    pub destination: Destination,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destination {
    pub host: String,
    pub port: DestinationPort,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DestinationPort {
    pub number: u32,
}
