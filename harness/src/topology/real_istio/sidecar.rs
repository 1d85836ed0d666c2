//! A light sidecar: an ADS client that connects to a real istiod as a
//! pilot-agent's Envoy does (a sidecar node id, pilot-agent's node metadata,
//! the pod's service-account token), asks for clusters and listeners and ACKs
//! every answer, so istiod lists it in syncz, SYNCED. Many of them stand in for
//! a large mesh, as Istio's pilot-load simulates pods (real-istio.md).

use super::RealIstioError;
use crate::client::{self, ClientOptions, Credentials};
use proto::envoy::envoy::config::core::v3::Node;
use proto::envoy::envoy::service::discovery::v3::{
    DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use proto::envoy::google::protobuf::{Struct, Value, value::Kind};
use proto::node::string_value;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The types it subscribes to, in Envoy's order.
pub const TYPES: [&str; 2] = [
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
];

/// Who the sidecar is.
#[derive(Debug, Clone)]
pub struct SidecarSpec {
    /// Its pod's name.
    pub pod: String,
    pub namespace: String,
    pub service_account: String,
    /// Its pod IP (in the node id).
    pub ip: Ipv4Addr,
    /// The cluster it runs in (`CLUSTER_ID`).
    pub cluster_id: String,
    /// The Istio version its pilot-agent reports.
    pub istio_version: String,
    /// Its pod's `app` label.
    pub app: String,
}

impl SidecarSpec {
    /// `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`, as pilot-agent sets it.
    pub fn node_id(&self) -> String {
        format!(
            "sidecar~{}~{}.{}~{}.svc.cluster.local",
            self.ip, self.pod, self.namespace, self.namespace
        )
    }

    /// The node pilot-agent sends (the metadata istiod reads; `PROXY_CONFIG`
    /// is what makes syncz list it).
    pub fn node(&self, discovery_address: &str) -> Node {
        let s = |v: &str| string_value(v);
        let object = |pairs: &[(&str, Value)]| Value {
            kind: Some(Kind::StructValue(Struct {
                fields: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            })),
        };
        let mut fields: HashMap<String, Value> = HashMap::new();
        for (k, v) in [
            ("NAME", self.pod.as_str()),
            ("NAMESPACE", self.namespace.as_str()),
            ("SERVICE_ACCOUNT", self.service_account.as_str()),
            ("CLUSTER_ID", self.cluster_id.as_str()),
            ("ISTIO_VERSION", self.istio_version.as_str()),
            ("MESH_ID", "cluster.local"),
            ("WORKLOAD_NAME", self.app.as_str()),
        ] {
            fields.insert(k.to_string(), s(v));
        }
        let ip = self.ip.to_string();
        fields.insert("INSTANCE_IPS".into(), s(&ip));
        fields.insert("LABELS".into(), object(&[("app", s(&self.app))]));
        fields.insert(
            "PROXY_CONFIG".into(),
            object(&[
                ("discoveryAddress", s(discovery_address)),
                (
                    "serviceCluster",
                    s(&format!("{}.{}", self.app, self.namespace)),
                ),
            ]),
        );
        Node {
            id: self.node_id(),
            cluster: format!("{}.{}", self.app, self.namespace),
            metadata: Some(Struct { fields }),
            user_agent_name: "envoy".into(),
            ..Default::default()
        }
    }
}

/// A connected light sidecar; dropping it closes its stream.
pub struct Sidecar {
    pub node_id: String,
    /// How many answers it has ACKed.
    acked: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sidecar {
    /// Connects to istiod's TLS port (verified against the mesh root, as
    /// `server_name`), with the pod's token, and subscribes.
    pub async fn connect(
        istiod: SocketAddr,
        ca_pem: &str,
        server_name: &str,
        token: &str,
        spec: &SidecarSpec,
    ) -> Result<Sidecar, RealIstioError> {
        let step = |what: &str| format!("sidecar {}.{}: {what}", spec.pod, spec.namespace);
        let opts = ClientOptions {
            credentials: Credentials::VerifiedTls {
                ca_pem: ca_pem.as_bytes().to_vec(),
                token: Some(token.to_string()),
            },
            authority: Some(server_name.to_string()),
            timeout: Duration::from_secs(10),
            ..ClientOptions::plaintext(istiod.to_string())
        };
        let channel = client::connect(&opts)
            .await
            .map_err(|e| RealIstioError::step(&step(&format!("connect to {istiod}")), e))?;
        let node = spec.node(&istiod.to_string());
        let (tx, rx) = mpsc::channel::<DiscoveryRequest>(8);
        let request = |type_url: &str| DiscoveryRequest {
            node: Some(node.clone()),
            type_url: type_url.to_string(),
            ..Default::default()
        };
        tx.send(request(TYPES[0]))
            .await
            .map_err(|e| RealIstioError::step(&step("queue its first request"), e))?;
        let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|e| RealIstioError::step(&step("its token as a header"), e))?;
        req.metadata_mut().insert("authorization", bearer);
        let mut ads =
            AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX);
        let mut answers = ads
            .stream_aggregated_resources(req)
            .await
            .map_err(|e| RealIstioError::step(&step("open its ADS stream"), e))?
            .into_inner();
        let (acked_tx, acked) = watch::channel(0usize);
        let node_id = spec.node_id();
        let id = node_id.clone();
        let task = tokio::spawn(async move {
            let mut next = 1;
            let mut count = 0;
            loop {
                let answer = match answers.message().await {
                    Ok(Some(a)) => a,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(sidecar = %id, error = %e, "its stream ended");
                        break;
                    }
                };
                // The ACK: the version and nonce it applied, as Envoy sends them.
                let ack = DiscoveryRequest {
                    node: None,
                    type_url: answer.type_url.clone(),
                    version_info: answer.version_info.clone(),
                    response_nonce: answer.nonce.clone(),
                    ..Default::default()
                };
                if tx.send(ack).await.is_err() {
                    break;
                }
                count += 1;
                acked_tx.send_replace(count);
                if next < TYPES.len() && answer.type_url == TYPES[next - 1] {
                    let r = DiscoveryRequest {
                        type_url: TYPES[next].to_string(),
                        ..Default::default()
                    };
                    if tx.send(r).await.is_err() {
                        break;
                    }
                    next += 1;
                }
            }
        });
        Ok(Sidecar {
            node_id,
            acked,
            task,
        })
    }

    /// Waits (bounded) until it has ACKed an answer of every type.
    pub async fn synced(&mut self, bound: Duration) -> Result<(), RealIstioError> {
        let want = TYPES.len();
        let id = self.node_id.clone();
        tokio::time::timeout(bound, self.acked.wait_for(|n| *n >= want))
            .await
            .map_err(|_| {
                RealIstioError::step(
                    &format!("sync sidecar {id}"),
                    format!("fewer than {want} answers ACKed within {bound:?}"),
                )
            })?
            .map(|_| ())
            .map_err(|_| RealIstioError::step(&format!("sync sidecar {id}"), "its stream ended"))
    }
}
