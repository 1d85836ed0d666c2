//! The gRPC control API (`proto::control`): load a scenario, set or clear
//! faults, add/remove/move proxies, change statuses, list replicas.

use crate::scenario::{
    self, Fault, LastUpdated, Proxy, ProxyKind, Scenario, SyncStatus, TypeStatus,
};
use crate::server::{Error, Inner, ReplicaInfo};
use proto::control as pb;
use proto::control::fake_istiod_control_server::{FakeIstiodControl, FakeIstiodControlServer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

/// Serves the control API on `addr`; returns the bound address, a shutdown switch and the task.
pub(crate) async fn serve(
    inner: Arc<Inner>,
    addr: SocketAddr,
) -> Result<(SocketAddr, watch::Sender<bool>, JoinHandle<()>), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener.local_addr()?;
    let (tx, mut rx) = watch::channel(false);
    let svc = FakeIstiodControlServer::new(Control { inner });
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let signal = async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, signal)
            .await
        {
            tracing::warn!(error = %e, "control server stopped");
        }
    });
    Ok((bound, tx, task))
}

struct Control {
    inner: Arc<Inner>,
}

fn status_of(e: Error) -> Status {
    match e {
        Error::UnknownReplica(_) | Error::UnknownProxy(_) => Status::not_found(e.to_string()),
        Error::Scenario(_) | Error::Invalid(_) | Error::NotInScenario { .. } => {
            Status::invalid_argument(e.to_string())
        }
        other => Status::internal(other.to_string()),
    }
}

/// Control-API fault → scenario fault.
pub fn fault_from_pb(f: &pb::Fault) -> Result<Fault, String> {
    use pb::fault::Kind;
    Ok(match f.kind.as_ref().ok_or("fault without a kind")? {
        Kind::Down(_) => Fault::Down,
        Kind::Reset(_) => Fault::Reset,
        Kind::Hang(_) => Fault::Hang,
        Kind::DelayMs(ms) if *ms > scenario::MAX_FAULT_MS => {
            return Err(format!(
                "delay {ms} ms is longer than {} ms",
                scenario::MAX_FAULT_MS
            ));
        }
        Kind::DelayMs(ms) => Fault::Delay(Duration::from_millis(*ms)),
        Kind::GrpcError(g) => {
            if !(1..=16).contains(&g.code) {
                return Err(format!("gRPC error code {} is not 1..16", g.code));
            }
            Fault::GrpcError {
                code: g.code,
                message: g.message.clone(),
            }
        }
        Kind::Garbage(_) => Fault::Garbage,
        Kind::Truncated(_) => Fault::Truncated,
        Kind::Duplicate(d) => Fault::Duplicate {
            proxy_id: d.proxy_id.clone(),
        },
        Kind::FlapPeriodMs(0) => return Err("flap period must be greater than 0".into()),
        Kind::FlapPeriodMs(ms) if *ms > scenario::MAX_FAULT_MS => {
            return Err(format!(
                "flap period {ms} ms is longer than {} ms",
                scenario::MAX_FAULT_MS
            ));
        }
        Kind::FlapPeriodMs(ms) => Fault::Flap {
            period: Duration::from_millis(*ms),
        },
        Kind::Poison(name) => Fault::Poison(
            crate::poison::Poison::from_name(name)
                .ok_or_else(|| format!("unknown poison {name:?}"))?,
        ),
    })
}

/// Scenario fault → control-API fault.
pub fn fault_to_pb(f: &Fault) -> pb::Fault {
    use pb::fault::Kind;
    let kind = match f {
        Fault::Down => Kind::Down(pb::Empty {}),
        Fault::Reset => Kind::Reset(pb::Empty {}),
        Fault::Hang => Kind::Hang(pb::Empty {}),
        Fault::Delay(d) => Kind::DelayMs(d.as_millis() as u64),
        Fault::GrpcError { code, message } => Kind::GrpcError(pb::GrpcError {
            code: *code,
            message: message.clone(),
        }),
        Fault::Garbage => Kind::Garbage(pb::Empty {}),
        Fault::Truncated => Kind::Truncated(pb::Empty {}),
        Fault::Duplicate { proxy_id } => Kind::Duplicate(pb::Duplicate {
            proxy_id: proxy_id.clone(),
        }),
        Fault::Flap { period } => Kind::FlapPeriodMs(period.as_millis() as u64),
        Fault::Poison(p) => Kind::Poison(p.name().to_string()),
    };
    pb::Fault { kind: Some(kind) }
}

/// Control-API type status → scenario type status.
pub fn type_status_from_pb(t: &pb::TypeStatus) -> Result<TypeStatus, String> {
    let type_url = match proto::type_url::from_short_name(&t.type_url) {
        Some(u) => u.to_string(),
        None if t.type_url.starts_with("type.googleapis.com/") => t.type_url.clone(),
        None => return Err(format!("unknown type {:?}", t.type_url)),
    };
    let status = match pb::SyncStatus::try_from(t.status) {
        Ok(pb::SyncStatus::Synced) => SyncStatus::Synced,
        Ok(pb::SyncStatus::Stale) => SyncStatus::Stale,
        Ok(pb::SyncStatus::NotSent) => SyncStatus::NotSent,
        Ok(pb::SyncStatus::Error) => SyncStatus::Error,
        _ => {
            return Err(format!(
                "status {} is not SYNCED, STALE, NOT_SENT or ERROR",
                t.status
            ));
        }
    };
    // The protobuf Timestamp range ends with year 9999 (as scenario files).
    const MAX_UNIX_MS: i64 = 253_402_300_799_999;
    if t.last_updated_unix_ms > MAX_UNIX_MS {
        return Err(format!(
            "last_updated_unix_ms {} is after the year 9999",
            t.last_updated_unix_ms
        ));
    }
    Ok(TypeStatus {
        type_url,
        status,
        error: match (status, t.error_details.is_empty()) {
            (SyncStatus::Error, true) => Some("rejected by the proxy".into()),
            (SyncStatus::Error, false) => Some(t.error_details.clone()),
            _ => None,
        },
        last_updated: (t.last_updated_unix_ms > 0).then(|| {
            LastUpdated::At(UNIX_EPOCH + Duration::from_millis(t.last_updated_unix_ms as u64))
        }),
    })
}

/// Control-API proxy → scenario proxy.
pub fn proxy_from_pb(p: &pb::Proxy) -> Result<Proxy, String> {
    let version = p
        .version
        .parse()
        .map_err(|e: proto::version::VersionError| e.to_string())?;
    let kind = match pb::ProxyKind::try_from(p.kind) {
        Ok(pb::ProxyKind::Gateway) => ProxyKind::Gateway,
        Ok(pb::ProxyKind::Ztunnel) => ProxyKind::Ztunnel,
        _ => ProxyKind::Sidecar,
    };
    let mut proxy = Proxy::new(&p.id, &p.replica, version, kind);
    if !p.cluster.is_empty() {
        proxy.cluster = p.cluster.clone();
    }
    if !p.namespace.is_empty() {
        proxy.namespace = p.namespace.clone();
    }
    if !p.types.is_empty() {
        proxy.types = p
            .types
            .iter()
            .map(type_status_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        proxy.types.sort_by(|a, b| a.type_url.cmp(&b.type_url));
    }
    Ok(proxy)
}

fn replica_to_pb(r: &ReplicaInfo) -> pb::Replica {
    pb::Replica {
        name: r.name.clone(),
        version: r.version.to_string(),
        revision: r.revision.clone(),
        plaintext_address: r.plaintext_addr.to_string(),
        tls_address: r.tls_addr.to_string(),
        fault: r.fault.as_ref().map(fault_to_pb),
        proxy_count: r.proxy_count as u32,
    }
}

#[tonic::async_trait]
impl FakeIstiodControl for Control {
    async fn load_scenario(
        &self,
        request: Request<pb::LoadScenarioRequest>,
    ) -> Result<Response<pb::LoadScenarioResponse>, Status> {
        let r = request.into_inner();
        let name = if r.source_name.is_empty() {
            "(control API)"
        } else {
            &r.source_name
        };
        let scenario: Scenario = scenario::Scenario::parse(&r.yaml, name)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.inner
            .load_scenario(scenario)
            .await
            .map_err(status_of)?;
        Ok(Response::new(pb::LoadScenarioResponse {
            replicas: self
                .inner
                .replica_infos()
                .iter()
                .map(replica_to_pb)
                .collect(),
        }))
    }

    async fn set_fault(
        &self,
        request: Request<pb::SetFaultRequest>,
    ) -> Result<Response<pb::SetFaultResponse>, Status> {
        let r = request.into_inner();
        let f = r
            .fault
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("missing fault"))?;
        let fault = fault_from_pb(f).map_err(Status::invalid_argument)?;
        self.inner
            .set_fault(&r.replica, Some(fault))
            .map_err(status_of)?;
        Ok(Response::new(pb::SetFaultResponse {}))
    }

    async fn clear_fault(
        &self,
        request: Request<pb::ClearFaultRequest>,
    ) -> Result<Response<pb::ClearFaultResponse>, Status> {
        self.inner
            .set_fault(&request.into_inner().replica, None)
            .map_err(status_of)?;
        Ok(Response::new(pb::ClearFaultResponse {}))
    }

    async fn upsert_proxy(
        &self,
        request: Request<pb::UpsertProxyRequest>,
    ) -> Result<Response<pb::UpsertProxyResponse>, Status> {
        let p = request
            .into_inner()
            .proxy
            .ok_or_else(|| Status::invalid_argument("missing proxy"))?;
        let proxy = proxy_from_pb(&p).map_err(Status::invalid_argument)?;
        self.inner.upsert_proxy(proxy).map_err(status_of)?;
        Ok(Response::new(pb::UpsertProxyResponse {}))
    }

    async fn remove_proxy(
        &self,
        request: Request<pb::RemoveProxyRequest>,
    ) -> Result<Response<pb::RemoveProxyResponse>, Status> {
        self.inner
            .remove_proxy(&request.into_inner().id)
            .map_err(status_of)?;
        Ok(Response::new(pb::RemoveProxyResponse {}))
    }

    async fn move_proxy(
        &self,
        request: Request<pb::MoveProxyRequest>,
    ) -> Result<Response<pb::MoveProxyResponse>, Status> {
        let r = request.into_inner();
        self.inner
            .move_proxy(&r.id, &r.to_replica)
            .map_err(status_of)?;
        Ok(Response::new(pb::MoveProxyResponse {}))
    }

    async fn set_status(
        &self,
        request: Request<pb::SetStatusRequest>,
    ) -> Result<Response<pb::SetStatusResponse>, Status> {
        let r = request.into_inner();
        let t = r
            .status
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("missing status"))?;
        let ts = type_status_from_pb(t).map_err(Status::invalid_argument)?;
        self.inner.set_status(&r.proxy_id, ts).map_err(status_of)?;
        Ok(Response::new(pb::SetStatusResponse {}))
    }

    async fn list_replicas(
        &self,
        _request: Request<pb::ListReplicasRequest>,
    ) -> Result<Response<pb::ListReplicasResponse>, Status> {
        Ok(Response::new(pb::ListReplicasResponse {
            replicas: self
                .inner
                .replica_infos()
                .iter()
                .map(replica_to_pb)
                .collect(),
            ca_file: self.inner.ca_file().display().to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_update_after_year_9999_is_an_error_not_a_bad_time() {
        let mut t = pb::TypeStatus {
            type_url: "CDS".into(),
            status: pb::SyncStatus::Synced as i32,
            ..Default::default()
        };
        t.last_updated_unix_ms = 253_402_300_799_999;
        assert!(type_status_from_pb(&t).is_ok());
        t.last_updated_unix_ms = i64::MAX;
        let err = type_status_from_pb(&t).err().unwrap_or_default();
        assert!(err.contains("after the year 9999"), "{err}");
    }
}
