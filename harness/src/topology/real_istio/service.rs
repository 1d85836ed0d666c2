//! The `istiod` Service's address, as kube-proxy makes it: one loopback
//! address whose port 15012 forwards each new connection to a current
//! replica (round robin over the replicas' addresses, which change on a
//! restart). Real sidecars find istiod this way (`discoveryAddress:
//! istiod.<ns>.svc:15012` in a cluster), so a restarted replica's sidecars
//! reconnect to another one, as in a cluster.

use super::RealIstioError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::watch;

/// The forwarder; dropping it stops it (connections already forwarded end
/// with their replica).
pub struct ServiceAddress {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServiceAddress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServiceAddress {
    /// Listens on `addr` and forwards to `targets` (the replicas' TLS
    /// addresses now).
    pub async fn start(
        addr: SocketAddr,
        targets: watch::Receiver<Vec<SocketAddr>>,
    ) -> Result<ServiceAddress, RealIstioError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            RealIstioError::step(&format!("listen on the istiod Service address {addr}"), e)
        })?;
        let next = std::sync::Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = {
                    let t = targets.borrow();
                    (!t.is_empty()).then(|| t[next.fetch_add(1, Ordering::Relaxed) % t.len()])
                };
                let Some(target) = target else {
                    // No replica: refused, as a Service without endpoints.
                    continue;
                };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(ServiceAddress { addr, task })
    }
}
