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
    /// `sidecar`, or `router` for a gateway.
    pub node_type: String,
}

impl SidecarSpec {
    /// `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`, as pilot-agent sets it.
    pub fn node_id(&self) -> String {
        format!(
            "{}~{}~{}.{}~{}.svc.cluster.local",
            self.node_type, self.ip, self.pod, self.namespace, self.namespace
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

/// How a sidecar verifies istiod: the mesh root, and the name in istiod's
/// certificate (it is dialled by address).
#[derive(Debug, Clone)]
pub struct Trust {
    pub ca_pem: String,
    pub server_name: String,
}

/// A light sidecar; dropping it closes its stream. Like Envoy, it connects
/// again (with a backoff) when its stream ends: to the replica in its slot of
/// the current replica addresses, so a restarted replica's sidecars land on
/// its successor.
pub struct Sidecar {
    pub node_id: String,
    /// How many answers it has ACKed (over all its connections).
    acked: watch::Receiver<usize>,
    /// Why its last connection failed or ended.
    last_error: std::sync::Arc<std::sync::Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl Sidecar {
    /// Connects to one istiod's TLS port (verified against the mesh root, as
    /// `server_name`), with the pod's token, and subscribes.
    pub async fn connect(
        istiod: SocketAddr,
        ca_pem: &str,
        server_name: &str,
        token: &str,
        spec: &SidecarSpec,
    ) -> Result<Sidecar, RealIstioError> {
        let (_keep, targets) = watch::channel(vec![istiod]);
        let trust = Trust {
            ca_pem: ca_pem.to_string(),
            server_name: server_name.to_string(),
        };
        let sidecar = Sidecar::start(targets, 0, trust, token.to_string(), spec.clone());
        // The receiver keeps the last addresses once `_keep` is gone.
        Ok(sidecar)
    }

    /// Starts a sidecar that connects to `targets[slot % len]`, again after
    /// every end of its stream.
    pub fn start(
        targets: watch::Receiver<Vec<SocketAddr>>,
        slot: usize,
        trust: Trust,
        token: String,
        spec: SidecarSpec,
    ) -> Sidecar {
        let (acked_tx, acked) = watch::channel(0usize);
        let last_error =
            std::sync::Arc::new(std::sync::Mutex::new(String::from("not connected yet")));
        let node_id = spec.node_id();
        let errors = last_error.clone();
        let task = tokio::spawn(async move {
            let mut pause = Duration::from_millis(100);
            loop {
                let target = {
                    let t = targets.borrow();
                    (!t.is_empty()).then(|| t[slot % t.len()])
                };
                let ended = match target {
                    Some(addr) => match session(addr, &trust, &token, &spec, &acked_tx).await {
                        Ok(acked) => {
                            if acked > 0 {
                                pause = Duration::from_millis(100);
                            }
                            format!("its stream to {addr} ended")
                        }
                        Err(e) => e,
                    },
                    None => "no replica to connect to".to_string(),
                };
                tracing::debug!(sidecar = %spec.node_id(), reason = %ended, "reconnecting");
                if let Ok(mut l) = errors.lock() {
                    *l = ended;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_BACKOFF);
            }
        });
        Sidecar {
            node_id,
            acked,
            last_error,
            task,
        }
    }

    /// Waits (bounded) until it has ACKed an answer of every type.
    pub async fn synced(&mut self, bound: Duration) -> Result<(), RealIstioError> {
        let want = TYPES.len();
        let id = self.node_id.clone();
        let waited = tokio::time::timeout(bound, self.acked.wait_for(|n| *n >= want)).await;
        let last = self
            .last_error
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(RealIstioError::step(
                &format!("sync sidecar {id}"),
                format!("fewer than {want} answers ACKed within {bound:?} (last: {last})"),
            )),
        }
    }
}

/// One connection: subscribes, ACKs every answer until the stream ends.
/// Returns how many answers it ACKed; `Err` when it could not connect.
async fn session(
    istiod: SocketAddr,
    trust: &Trust,
    token: &str,
    spec: &SidecarSpec,
    acked: &watch::Sender<usize>,
) -> Result<usize, String> {
    let opts = ClientOptions {
        credentials: Credentials::VerifiedTls {
            ca_pem: trust.ca_pem.as_bytes().to_vec(),
            token: Some(token.to_string()),
        },
        authority: Some(trust.server_name.clone()),
        timeout: Duration::from_secs(10),
        ..ClientOptions::plaintext(istiod.to_string())
    };
    let channel = client::connect(&opts)
        .await
        .map_err(|e| format!("cannot connect to {istiod}: {e}"))?;
    let node = spec.node(&istiod.to_string());
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(8);
    let request = |type_url: &str| DiscoveryRequest {
        node: Some(node.clone()),
        type_url: type_url.to_string(),
        ..Default::default()
    };
    tx.send(request(TYPES[0]))
        .await
        .map_err(|e| format!("cannot queue its first request: {e}"))?;
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|e| format!("its token as a header: {e}"))?;
    req.metadata_mut().insert("authorization", bearer);
    let mut ads =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX);
    let mut answers = ads
        .stream_aggregated_resources(req)
        .await
        .map_err(|e| format!("cannot open its ADS stream to {istiod}: {e}"))?
        .into_inner();
    let mut next = 1;
    let mut count = 0;
    loop {
        let answer = match answers.message().await {
            Ok(Some(a)) => a,
            Ok(None) => break,
            Err(e) => return Err(format!("its stream to {istiod} ended: {e}")),
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
        acked.send_modify(|n| *n += 1);
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
    Ok(count)
}
