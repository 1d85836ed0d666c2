//! The ADS service each replica serves: debug type URLs answered one by one,
//! istiod's authentication and authorization, and the faults that act on answers.

use crate::asked::{self, Asked, Method, Outcome, ReplicaLog, Transport};
use crate::auth::{Identity, TokenAuthority};
use crate::mesh::{FaultState, ReplicaIdentity, SharedMesh, SplitMix};
use crate::scenario::{Fault, Proxy};
use crate::{config_dump, debug, syncz};
use futures::Stream;
use proto::IstioControlPlaneInstance;
use proto::control_plane::BuildInfo;
use proto::envoy::envoy::config::core::v3::ControlPlane;
use proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_server::AggregatedDiscoveryService,
};
use proto::envoy::google::protobuf::Any;
use proto::{IstioVersion, type_url};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;

/// One replica's ADS on one port.
#[derive(Clone)]
pub struct Ads {
    pub replica: String,
    pub tls: bool,
    pub mesh: SharedMesh,
    pub fault: watch::Receiver<FaultState>,
    pub authority: Arc<TokenAuthority>,
    pub pushes: Arc<AtomicU64>,
    pub started: SystemTime,
    /// Where this replica's requests are recorded (both ports share it).
    pub asked: Arc<ReplicaLog>,
}

/// Who is asking, after authentication and authorization.
#[derive(Debug, Clone)]
struct Caller {
    identity: Option<Identity>,
}

impl Ads {
    fn current_fault(&self) -> Option<Fault> {
        self.fault.borrow().fault.clone()
    }

    fn transport(&self) -> Transport {
        if self.tls {
            Transport::Tls
        } else {
            Transport::Plaintext
        }
    }

    /// Records a request on arrival; its outcome follows with `ReplicaLog::finish`.
    fn record(
        &self,
        method: Method,
        type_url: &str,
        node_id: &str,
        resource_names: &[String],
        caller: &Caller,
    ) -> asked::Ticket {
        self.asked.record(Asked {
            type_url: asked::clip(type_url),
            node_id: asked::clip(node_id),
            resource_names: asked::clip_names(resource_names),
            caller: caller.identity.clone(),
            transport: self.transport(),
            method,
            outcome: Outcome::Pending,
            at: Instant::now(),
        })
    }

    /// Authentication at stream start, a refusal recorded (no request was read yet).
    fn authenticate_recorded<T>(&self, req: &Request<T>, method: Method) -> Result<Caller, Status> {
        self.authenticate(req).inspect_err(|st| {
            let ticket = self.record(method, "", "", &[], &Caller { identity: None });
            self.asked.finish(ticket, Outcome::Refused(st.code()));
        })
    }

    /// A random UUID-shaped string, as Go's `uuid.New().String()`.
    fn uuid(&self, n: u64) -> String {
        let t = crate::timefmt::unix(SystemTime::now());
        let mut h: u64 = 0xcbf29ce484222325 ^ (t.0 as u64) ^ ((t.1 as u64) << 32);
        for b in self.replica.bytes().chain(n.to_le_bytes()) {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        let lo = h;
        let hi = h.rotate_left(29).wrapping_mul(0x9E3779B97F4A7C15);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (hi >> 32) as u32,
            (hi >> 16) as u16,
            (hi & 0xfff) as u16,
            ((lo >> 48) as u16 & 0x3fff) | 0x8000,
            lo & 0xffff_ffff_ffff
        )
    }

    /// Authentication at stream start (istiod's `authenticate`).
    fn authenticate<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let plaintext_auth = self
            .mesh
            .read()
            .map(|m| m.auth.plaintext_requires_auth)
            .unwrap_or(false);
        if !self.tls && !plaintext_auth {
            // Not a TLS connection: istiod performs no authentication.
            return Ok(Caller { identity: None });
        }
        // A client certificate signed by the mesh CA (istio-agent's way).
        if self.tls
            && let Some(certs) = req.peer_certs()
            && let Some((namespace, service_account)) = certs
                .first()
                .and_then(|c| crate::tls::spiffe_identity(c.as_ref()))
        {
            return Ok(Caller {
                identity: Some(Identity {
                    namespace,
                    service_account,
                }),
            });
        }
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        match self.authority.verify_header(header) {
            Ok(id) => Ok(Caller { identity: Some(id) }),
            Err(e) => {
                tracing::info!(replica = %self.replica, error = %e, "authentication failure");
                Err(Status::unauthenticated("authentication failure"))
            }
        }
    }

    /// Answers one request (None: do not answer, e.g. the hang fault, or
    /// istiod ≤1.19's silence on a config_dump for a proxy it does not have).
    async fn answer(
        &self,
        req: &DiscoveryRequest,
        caller: &Caller,
    ) -> Result<Option<DiscoveryResponse>, Status> {
        let fault = self.current_fault();
        match &fault {
            Some(Fault::Hang) => return Ok(None),
            Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
            Some(Fault::GrpcError { code, message }) => {
                return Err(Status::new(tonic::Code::from_i32(*code), message.clone()));
            }
            _ => {}
        }
        let now = SystemTime::now();
        let answer_no = self.pushes.fetch_add(1, Ordering::Relaxed) + 1;
        let (me, proxies, auth, system_ns, duplicate, version_info, seed) = {
            let mesh = self
                .mesh
                .read()
                .map_err(|_| Status::internal("mesh state poisoned"))?;
            let me = mesh
                .replicas
                .get(&self.replica)
                .cloned()
                .ok_or_else(|| Status::unavailable("replica removed"))?;
            let duplicate = match &fault {
                Some(Fault::Duplicate { proxy_id }) => mesh.proxies.get(proxy_id).cloned(),
                _ => None,
            };
            (
                me,
                mesh.proxies_of(&self.replica),
                mesh.auth.clone(),
                mesh.istiod.namespace.clone(),
                duplicate,
                mesh.push_version(),
                mesh.seed,
            )
        };
        let mut proxies = proxies;
        if let Some(d) = duplicate
            && d.replica != self.replica
        {
            proxies.push(Arc::new(older(&d)));
        }

        if req.type_url == type_url::DEBUG {
            // DebugGen: its own rules, whatever ENABLE_DEBUG_ENDPOINT_AUTH says.
            check_debug_request(req, caller, &system_ns, &me.version)?;
        } else if me.auth.debug_endpoint_auth && caller.identity.is_none() {
            // StatusGen (istioctl's GENERATOR "event": syncz, config_dump,
            // connections and any other type) from 1.27.8/1.28.5/1.29.1:
            // `1.30.0:pilot/pkg/xds/statusgen.go` `handleInternalRequest`.
            return Err(Status::unauthenticated("authentication required"));
        }
        // Namespace-scoped visibility for verified callers outside the system
        // namespace (`callerNamespaceFilter`, `1.28.7:pilot/pkg/xds/statusgen.go`):
        // only while debug-endpoint auth is on.
        if me.auth.namespace_scoped
            && me.auth.debug_endpoint_auth
            && req.type_url != type_url::DEBUG
            && let Some(id) = &caller.identity
            && id.namespace != system_ns
            && !auth.allowed_namespaces.contains(&id.namespace)
        {
            proxies.retain(|p| p.namespace == id.namespace);
        }

        let resources: Vec<Any> = match req.type_url.as_str() {
            type_url::SYNCZ => {
                let mut rng = SplitMix::new(seed ^ name_hash(&self.replica) ^ answer_no);
                syncz::answer(&proxies, &me.version, now, &mut rng)
            }
            type_url::CONFIG_DUMP => match req.resource_names.as_slice() {
                [name] => match proxies.iter().find(|p| &p.id == name) {
                    Some(p) => config_dump::sections(p, &me.version, &version_info, now),
                    // `debugConfigDump` fails: ≤1.19 sends nothing at all.
                    None if me.version.config_dump_silent_for_unknown_proxy() => {
                        return Ok(None);
                    }
                    None => Vec::new(),
                },
                // Malformed (no name or several): an empty answer in every version.
                _ => Vec::new(),
            },
            type_url::DEBUG => match req.resource_names.first() {
                Some(path) => vec![debug::debug_resource(debug::debug_body(
                    path,
                    &proxies,
                    &me.name,
                    &me.version,
                ))],
                None => Vec::new(),
            },
            // `istio.io/connections` and any other type: StatusGen has no case
            // for it (`TypeURLConnect` is `istio.io/connect`, handled only up
            // to 1.20): zero resources (`1.12.0:pilot/pkg/xds/statusgen.go`).
            _ => Vec::new(),
        };
        // `nonce(push.LedgerVersion)` before 1.23 (the ledger's root hash is
        // not modelled: a UUID), `nonce(req.Push.PushVersion)` from 1.23.
        let nonce = if me.version.nonce_has_push_version() {
            format!("{version_info}{}", self.uuid(answer_no))
        } else {
            self.uuid(answer_no)
        };
        let mut resp = DiscoveryResponse {
            version_info,
            resources,
            type_url: req.type_url.clone(),
            nonce,
            control_plane: control_plane(&me, &req.type_url),
            ..Default::default()
        };
        if let Some(Fault::Garbage) = fault {
            resp.resources = resp
                .resources
                .iter()
                .map(|r| Any {
                    type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
                    value: r.value.iter().rev().copied().collect(),
                })
                .chain(std::iter::once(Any {
                    type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
                    value: b"\x0a\x07garbage".to_vec(),
                }))
                .collect();
            resp.control_plane = Some(ControlPlane {
                identifier: format!("istiod {} (not JSON)", me.name),
            });
        }
        if let Some(Fault::Poison(kind)) = fault {
            if req.type_url == type_url::SYNCZ && kind.poisons_syncz() {
                resp.resources.push(kind.syncz_row(&system_ns));
            }
            if req.type_url == type_url::CONFIG_DUMP {
                kind.spoil_config_dump(&mut resp.resources);
            }
        }
        Ok(Some(resp))
    }
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0x84222325cbf29ce4, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// istiod's DebugGen rules by version (`pilot/pkg/xds/debuggen.go`): a
/// verified identity (from 1.14), exactly one debug path, and callers outside
/// the system namespace only get config_dump, ndsz and edsz. Plain Go errors
/// (code Unknown) before 1.18.1, gRPC codes after.
fn check_debug_request(
    req: &DiscoveryRequest,
    caller: &Caller,
    system_ns: &str,
    version: &IstioVersion,
) -> Result<(), Status> {
    use proto::version::DebugGenErrors as E;
    let style = version.debug_gen_errors();
    let coded = |code: tonic::Code, msg: String| match style {
        E::Plain | E::PlainWithAuth => Status::unknown(msg),
        E::GrpcCodes | E::GrpcCodesExactlyOne => Status::new(code, msg),
    };
    // ≤1.13 has no check; its nil identity is not modelled (a caller without
    // one is refused as in 1.14).
    let Some(id) = &caller.identity else {
        return Err(coded(
            tonic::Code::Unauthenticated,
            "authentication required".into(),
        ));
    };
    let path = match (req.resource_names.as_slice(), style) {
        ([one], _) => one,
        (_, E::GrpcCodesExactlyOne) => {
            return Err(Status::invalid_argument(
                "exactly one debug request is required",
            ));
        }
        ([], _) => {
            return Err(coded(
                tonic::Code::InvalidArgument,
                "debug type is required".into(),
            ));
        }
        (_, _) => {
            return Err(coded(
                tonic::Code::InvalidArgument,
                "only one debug request is allowed".into(),
            ));
        }
    };
    let debug_type = path.split('?').next().unwrap_or(path);
    if id.namespace != system_ns && !matches!(debug_type, "config_dump" | "ndsz" | "edsz") {
        return Err(coded(
            tonic::Code::PermissionDenied,
            format!(
                "the debug info is not available for current identity: {:?}",
                id.spiffe()
            ),
        ));
    }
    Ok(())
}

/// The ControlPlane istiod attaches (only to syncz from 1.25).
pub fn control_plane(me: &ReplicaIdentity, request_type: &str) -> Option<ControlPlane> {
    if me.version.control_plane_only_on_syncz() && request_type != type_url::SYNCZ {
        return None;
    }
    // `Info` is the binary's build info (`istioversion.Info`,
    // `1.30.0:pkg/version/version.go`): `tag` is the build's git tag, whatever
    // istio.io/rev revision the pod serves.
    let info = BuildInfo::release(&me.version.to_string());
    Some(ControlPlane {
        identifier: IstioControlPlaneInstance::istiod(&me.name, info).to_json(),
    })
}

/// A copy of another replica's proxy as a stale connection would report it:
/// every update 10 minutes older.
fn older(p: &Proxy) -> Proxy {
    p.older_by(Duration::from_secs(600), SystemTime::now())
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = ResponseStream;
    type DeltaAggregatedResourcesStream =
        Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let caller = self.authenticate_recorded(&request, Method::StateOfTheWorld)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<DiscoveryResponse, Status>>(4);
        let this = self.clone();
        tokio::spawn(async move {
            let mut authorized = false;
            loop {
                let req = match inbound.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(_) => break,
                };
                let ticket = this.record(
                    Method::StateOfTheWorld,
                    &req.type_url,
                    req.node.as_ref().map(|n| n.id.as_str()).unwrap_or_default(),
                    &req.resource_names,
                    &caller,
                );
                if !authorized {
                    if let Err(st) = check_node(&req, &caller, &this.version()) {
                        this.asked.finish(ticket, Outcome::Refused(st.code()));
                        let _ = tx.send(Err(st)).await;
                        break;
                    }
                    authorized = true;
                }
                let result = tokio::select! {
                    r = this.answer(&req, &caller) => r,
                    _ = tx.closed() => break,
                };
                this.asked.finish(ticket, outcome(&result));
                match result {
                    Ok(Some(resp)) => {
                        if tx.send(Ok(resp)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(st) => {
                        let _ = tx.send(Err(st)).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    /// istiod serves the Delta method for debug types too (`StreamDeltas`,
    /// `1.30.0:pilot/pkg/xds/delta.go` `pushDeltaXds`; StatusGen answers in
    /// full through `GenerateDeltas`): the same answers as state of the world,
    /// as named `Resource`s (a ClientConfig is named by its node id, config
    /// dump sections have no name), `system_version_info` = the push version.
    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let caller = self.authenticate_recorded(&request, Method::Delta)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<DeltaDiscoveryResponse, Status>>(4);
        let this = self.clone();
        tokio::spawn(async move {
            let mut node = None;
            loop {
                let delta = match inbound.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(_) => break,
                };
                let first = node.is_none();
                // The node comes with the first request only.
                if first {
                    node = delta.node.clone();
                }
                let ticket = this.record(
                    Method::Delta,
                    &delta.type_url,
                    node.as_ref().map(|n| n.id.as_str()).unwrap_or_default(),
                    &delta.resource_names_subscribe,
                    &caller,
                );
                if first {
                    let req = DiscoveryRequest {
                        node: node.clone(),
                        ..Default::default()
                    };
                    if let Err(st) = check_node(&req, &caller, &this.version()) {
                        this.asked.finish(ticket, Outcome::Refused(st.code()));
                        let _ = tx.send(Err(st)).await;
                        break;
                    }
                }
                let req = DiscoveryRequest {
                    node: node.clone(),
                    type_url: delta.type_url.clone(),
                    resource_names: delta.resource_names_subscribe.clone(),
                    ..Default::default()
                };
                let result = tokio::select! {
                    r = this.answer(&req, &caller) => r,
                    _ = tx.closed() => break,
                };
                this.asked.finish(ticket, outcome(&result));
                match result {
                    Ok(Some(resp)) => {
                        if tx.send(Ok(to_delta(resp))).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => {}
                    Err(st) => {
                        let _ = tx.send(Err(st)).await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

impl Ads {
    /// This replica's version (1.30.0 if it was removed meanwhile).
    fn version(&self) -> IstioVersion {
        self.mesh
            .read()
            .ok()
            .and_then(|m| m.replicas.get(&self.replica).map(|r| r.version.clone()))
            .unwrap_or(IstioVersion::new(1, 30, 0))
    }
}

/// What an answer's result means for the record.
fn outcome(result: &Result<Option<DiscoveryResponse>, Status>) -> Outcome {
    match result {
        Ok(Some(_)) => Outcome::Answered,
        Ok(None) => Outcome::Silent,
        Err(st) => Outcome::Refused(st.code()),
    }
}

/// A state-of-the-world answer as the Delta method carries it.
fn to_delta(resp: DiscoveryResponse) -> DeltaDiscoveryResponse {
    use prost::Message;
    use proto::envoy::envoy::service::discovery::v3::Resource;
    use proto::envoy::envoy::service::status::v3::ClientConfig;
    let resources = resp
        .resources
        .into_iter()
        .map(|any| {
            let name = if any.type_url == type_url::CLIENT_CONFIG {
                ClientConfig::decode(any.value.as_slice())
                    .ok()
                    .and_then(|c| c.node)
                    .map(|n| n.id)
                    .unwrap_or_default()
            } else {
                String::new()
            };
            Resource {
                name,
                resource: Some(any),
                ..Default::default()
            }
        })
        .collect();
    DeltaDiscoveryResponse {
        system_version_info: resp.version_info,
        resources,
        type_url: resp.type_url,
        nonce: resp.nonce,
        control_plane: resp.control_plane,
        ..Default::default()
    }
}

/// istiod's checks on the first request: a node with a valid IP, and the
/// claimed identity matching the authenticated one (`checkConnectionIdentity`,
/// `1.30.0:pilot/pkg/xds/auth.go`, `1.12.0:pilot/pkg/xds/ads.go`): the
/// namespace is the node's `NAMESPACE`, else the first label of the node id's
/// DNS domain (`GetProxyConfigNamespace`); an empty namespace or
/// `SERVICE_ACCOUNT` is not compared.
fn check_node(
    req: &DiscoveryRequest,
    caller: &Caller,
    version: &IstioVersion,
) -> Result<(), Status> {
    let node = req
        .node
        .as_ref()
        .filter(|n| !n.id.is_empty())
        .ok_or_else(|| Status::invalid_argument("missing node information"))?;
    proto::node::node_ip(node).map_err(|e| {
        // `1.16.0:pilot/pkg/xds/ads.go` `initProxyMetadata` wraps it in
        // InvalidArgument; before, the plain error (code Unknown).
        if version.node_errors_invalid_argument() {
            Status::invalid_argument(e.to_string())
        } else {
            Status::unknown(e.to_string())
        }
    })?;
    if let Some(id) = &caller.identity {
        let claimed = proto::node::claimed_identity(node);
        let namespace = if claimed.namespace.is_empty() {
            config_namespace_from_id(&node.id)
        } else {
            claimed.namespace.clone()
        };
        let ns_ok = namespace.is_empty() || namespace == id.namespace;
        let sa_ok =
            claimed.service_account.is_empty() || claimed.service_account == id.service_account;
        if !ns_ok || !sa_ok {
            return Err(Status::permission_denied(format!(
                "authorization failed: no identities ([{}]) matched {}/{}",
                id.spiffe(),
                namespace,
                claimed.service_account
            )));
        }
    }
    Ok(())
}

/// `sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local` → `ns` (the DNS domain's
/// first label when it has more than one; `GetProxyConfigNamespace`).
fn config_namespace_from_id(id: &str) -> String {
    let domain = id.split('~').nth(3).unwrap_or_default();
    match domain.split_once('.') {
        Some((ns, _)) => ns.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_from_node_id() {
        assert_eq!(
            config_namespace_from_id("sidecar~10.0.0.1~test-1.default~default.svc.cluster.local"),
            "default"
        );
        assert_eq!(config_namespace_from_id("sidecar~10.0.0.1~x~local"), "");
        assert_eq!(config_namespace_from_id("bad"), "");
    }
}
