//! Finding the istiod replicas: a static list, DNS (a headless Service,
//! re-resolved) or the Kubernetes API (a pod watch). Every mode publishes the
//! current set on a `watch` channel, so changes are picked up without a restart.

#[cfg(feature = "kubernetes")]
pub mod kubernetes;

use crate::config::Discovery;
use crate::error::Error;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One istiod replica as discovery sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Replica {
    /// A stable name: the pod name (kubernetes), the given name (`name=host:port`),
    /// else the address.
    pub name: String,
    /// `host:port` to dial.
    pub address: String,
}

/// The current replicas, sorted by name (the fan-out order and the tie-break order).
pub type ReplicaSet = Arc<Vec<Replica>>;

/// A running discovery: the channel of replica sets and the task feeding it.
pub struct DiscoveryHandle {
    pub replicas: watch::Receiver<ReplicaSet>,
    task: Option<JoinHandle<()>>,
}

impl DiscoveryHandle {
    /// A fixed set (static discovery, tests).
    pub fn fixed(replicas: Vec<Replica>) -> Self {
        let (_tx, rx) = watch::channel(sorted(replicas));
        // The sender is dropped: the receiver keeps the last value forever.
        DiscoveryHandle {
            replicas: rx,
            task: None,
        }
    }

    /// A set fed by a background task through `tx`.
    pub fn from_task(replicas: watch::Receiver<ReplicaSet>, task: JoinHandle<()>) -> Self {
        DiscoveryHandle {
            replicas,
            task: Some(task),
        }
    }
}

impl Drop for DiscoveryHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub(crate) fn sorted(mut replicas: Vec<Replica>) -> ReplicaSet {
    replicas.sort();
    replicas.dedup();
    Arc::new(replicas)
}

/// Starts the configured discovery. `resolve_once` is the `dns-once` test
/// defect (DNS resolved at start only); a correct proxy passes `false`.
pub async fn start(discovery: &Discovery, resolve_once: bool) -> Result<DiscoveryHandle, Error> {
    match discovery {
        Discovery::Static(entries) => Ok(DiscoveryHandle::fixed(parse_static(entries)?)),
        Discovery::Dns {
            name,
            port,
            refresh,
        } => Ok(start_dns(name.clone(), *port, *refresh, resolve_once)),
        Discovery::Dynamic(rx) => Ok(DiscoveryHandle {
            replicas: rx.clone(),
            task: None,
        }),
        #[cfg(feature = "kubernetes")]
        Discovery::Kubernetes {
            namespace,
            revision,
            port,
        } => {
            let client = kube::Client::try_default()
                .await
                .map_err(|e| Error::Discovery(format!("cannot build a Kubernetes client: {e}")))?;
            Ok(kubernetes::start(
                client,
                kubernetes::PodSelector {
                    namespace: namespace.clone(),
                    revision: revision.clone(),
                    port: *port,
                },
            ))
        }
        #[cfg(not(feature = "kubernetes"))]
        Discovery::Kubernetes { .. } => Err(Error::Config(
            "kubernetes discovery needs the `kubernetes` cargo feature".to_string(),
        )),
    }
}

/// Parses `host:port` or `name=host:port` entries (commas inside an entry are
/// split too, so `--istiod a:1,b:2` and repeated flags both work).
pub fn parse_static(entries: &[String]) -> Result<Vec<Replica>, Error> {
    let mut out = Vec::new();
    for entry in entries.iter().flat_map(|e| e.split(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (name, address) = match entry.split_once('=') {
            Some((n, a)) => (n.trim().to_string(), a.trim().to_string()),
            None => (entry.to_string(), entry.to_string()),
        };
        check_host_port(&address)?;
        if name.is_empty() {
            return Err(Error::Config(format!("empty replica name in {entry:?}")));
        }
        out.push(Replica { name, address });
    }
    if out.is_empty() {
        return Err(Error::Config(
            "static discovery needs at least one replica (--istiod host:port)".to_string(),
        ));
    }
    Ok(out)
}

/// `host:port` with a numeric port (IPv6 hosts in brackets).
pub fn check_host_port(address: &str) -> Result<(), Error> {
    let bad = || {
        Error::Config(format!(
            "invalid replica address {address:?}: expected host:port, e.g. 10.0.0.5:15012"
        ))
    };
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// Re-resolves `name` every `refresh`; each address is one replica, named by
/// its `ip:port`. A failed lookup keeps the last known set (and logs).
/// `once` (the `dns-once` defect): the first successful lookup is kept forever.
fn start_dns(name: String, port: u16, refresh: Duration, once: bool) -> DiscoveryHandle {
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    let task = tokio::spawn(async move {
        loop {
            match tokio::net::lookup_host((name.as_str(), port)).await {
                Ok(addrs) => {
                    let set = sorted(
                        addrs
                            .map(|a| Replica {
                                name: a.to_string(),
                                address: a.to_string(),
                            })
                            .collect(),
                    );
                    if **tx.borrow() != *set {
                        tracing::info!(%name, replicas = set.len(), "DNS discovery: replica set changed");
                        if tx.send(set).is_err() {
                            return;
                        }
                    }
                    if once {
                        // The defect: never look again (the task lives on,
                        // so the channel stays open).
                        std::future::pending::<()>().await;
                    }
                }
                Err(e) => {
                    tracing::warn!(%name, error = %e, "DNS discovery: lookup failed, keeping the last known replicas")
                }
            }
            tokio::time::sleep(refresh).await;
        }
    });
    DiscoveryHandle::from_task(rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_entries() {
        let got = parse_static(&["b:2,a:1".into(), "istiod-3=10.0.0.3:15012".into()]).unwrap();
        let names: Vec<_> = got.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["b:2", "a:1", "istiod-3"]);
        assert_eq!(got[2].address, "10.0.0.3:15012");
        assert_eq!(sorted(got)[0].name, "a:1");
    }

    #[test]
    fn static_errors_say_what() {
        let e = parse_static(&["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("\"nope\""), "{e}");
        assert!(parse_static(&["h:99999".into()]).is_err());
        assert!(parse_static(&[" , ".into()]).is_err());
        assert!(parse_static(&["[::1]:15010".into()]).is_ok());
    }

    #[tokio::test]
    async fn dns_resolves_localhost() {
        let mut h = start_dns("localhost".into(), 15010, Duration::from_secs(60), false);
        let set = tokio::time::timeout(
            Duration::from_secs(5),
            h.replicas.wait_for(|s| !s.is_empty()),
        )
        .await
        .expect("resolved in time")
        .expect("channel open")
        .clone();
        assert!(
            set.iter().any(|r| r.address == "127.0.0.1:15010"),
            "{set:?}"
        );
    }
}
