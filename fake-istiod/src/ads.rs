//! The ADS service each replica serves: debug type URLs answered one by one,
//! istiod's authentication and authorization, and the faults that act on answers.

use crate::auth::{Identity, TokenAuthority};
use crate::mesh::{FaultState, ReplicaIdentity, SharedMesh};
use crate::scenario::{Fault, LastUpdated, Proxy};
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
use proto::type_url;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
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

    fn push_version(&self) -> String {
        let n = self.pushes.load(Ordering::Relaxed);
        format!("{}/{n}", crate::timefmt::format_rfc3339(self.started))
    }

    fn nonce(&self) -> String {
        let n = self.pushes.fetch_add(1, Ordering::Relaxed) + 1;
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

    /// Answers one request (None: do not answer, e.g. the hang fault).
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
        let (me, proxies, auth, system_ns, duplicate) = {
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
            )
        };
        let mut proxies = proxies;
        if let Some(d) = duplicate
            && d.replica != self.replica
        {
            proxies.push(Arc::new(older(&d)));
            proxies.sort_by(|a, b| a.id.cmp(&b.id));
        }

        let is_debug = matches!(
            req.type_url.as_str(),
            type_url::SYNCZ | type_url::CONFIG_DUMP | type_url::DEBUG
        ) || req.type_url.starts_with("istio.io/debug/");
        if is_debug && auth.debug_endpoint_auth && caller.identity.is_none() {
            return Err(Status::unauthenticated("authentication required"));
        }
        if req.type_url == type_url::DEBUG {
            check_debug_request(req, caller, &system_ns)?;
        }
        // Namespace-scoped visibility for callers outside the system namespace.
        if auth.namespace_scoped
            && let Some(id) = &caller.identity
            && id.namespace != system_ns
            && !auth.allowed_namespaces.contains(&id.namespace)
        {
            proxies.retain(|p| p.namespace == id.namespace);
        }

        let version_info = self.push_version();
        let resources: Vec<Any> = match req.type_url.as_str() {
            type_url::SYNCZ => {
                syncz::resources(proxies.iter().map(|p| p.as_ref()), &me.version, now)
            }
            type_url::CONFIG_DUMP => match req.resource_names.as_slice() {
                [name] => proxies
                    .iter()
                    .find(|p| &p.id == name)
                    .map(|p| config_dump::sections(p, &version_info, now))
                    .unwrap_or_default(),
                _ => Vec::new(),
            },
            type_url::CONNECTIONS => {
                debug::connections(&proxies, req.node.as_ref().unwrap_or(&Default::default()))
            }
            type_url::DEBUG => match req.resource_names.first() {
                Some(path) => vec![debug::debug_resource(debug::debug_body(
                    path, &proxies, &me.name,
                ))],
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        let mut resp = DiscoveryResponse {
            version_info,
            resources,
            type_url: req.type_url.clone(),
            nonce: self.nonce(),
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
        Ok(Some(resp))
    }
}

/// istiod's DebugGen rules: a verified identity always, exactly one debug
/// path, and callers outside the system namespace only get config_dump,
/// ndsz and edsz.
fn check_debug_request(
    req: &DiscoveryRequest,
    caller: &Caller,
    system_ns: &str,
) -> Result<(), Status> {
    let Some(id) = &caller.identity else {
        return Err(Status::unauthenticated("authentication required"));
    };
    let path = match req.resource_names.as_slice() {
        [] => return Err(Status::unknown("debug type is required")),
        [one] => one,
        _ => return Err(Status::unknown("only one debug request is allowed")),
    };
    let debug_type = path.split('?').next().unwrap_or(path);
    if id.namespace != system_ns && !matches!(debug_type, "config_dump" | "ndsz" | "edsz") {
        return Err(Status::unknown(format!(
            "the debug info is not available for current identity: {:?}",
            id.spiffe()
        )));
    }
    Ok(())
}

/// The ControlPlane istiod attaches (only to syncz from 1.25).
pub fn control_plane(me: &ReplicaIdentity, request_type: &str) -> Option<ControlPlane> {
    if me.version.control_plane_only_on_syncz() && request_type != type_url::SYNCZ {
        return None;
    }
    let mut info = BuildInfo::release(&me.version.to_string());
    if me.revision != "default" && !me.revision.is_empty() {
        info.tag = format!("{}-{}", me.version, me.revision);
    }
    Some(ControlPlane {
        identifier: IstioControlPlaneInstance::istiod(&me.name, info).to_json(),
    })
}

/// A copy of another replica's proxy as a stale connection would report it:
/// every update 10 minutes older.
fn older(p: &Proxy) -> Proxy {
    let mut c = p.clone();
    let now = SystemTime::now();
    for t in &mut c.types {
        let at = t.last_updated_at(now).unwrap_or(now);
        t.last_updated = Some(LastUpdated::At(
            at.checked_sub(Duration::from_secs(600)).unwrap_or(at),
        ));
    }
    c
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
        let caller = self.authenticate(&request)?;
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
                if !authorized {
                    if let Err(st) = check_node(&req, &caller) {
                        let _ = tx.send(Err(st)).await;
                        break;
                    }
                    authorized = true;
                }
                let result = tokio::select! {
                    r = this.answer(&req, &caller) => r,
                    _ = tx.closed() => break,
                };
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

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not supported for debug types",
        ))
    }
}

/// istiod's checks on the first request: a node with a valid IP, and the
/// claimed NAMESPACE/SERVICE_ACCOUNT matching the authenticated identity.
fn check_node(req: &DiscoveryRequest, caller: &Caller) -> Result<(), Status> {
    let node = req
        .node
        .as_ref()
        .filter(|n| !n.id.is_empty())
        .ok_or_else(|| Status::invalid_argument("missing node information"))?;
    proto::node::node_ip(node).map_err(|e| Status::invalid_argument(e.to_string()))?;
    if let Some(id) = &caller.identity {
        let claimed = proto::node::claimed_identity(node);
        if claimed.namespace != id.namespace || claimed.service_account != id.service_account {
            return Err(Status::permission_denied(format!(
                "authorization failed: no identities ([{}]) matched {}/{}",
                id.spiffe(),
                claimed.namespace,
                claimed.service_account
            )));
        }
    }
    Ok(())
}
