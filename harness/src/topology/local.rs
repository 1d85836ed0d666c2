//! The `local` topology: fake-istiod replicas on 127.0.0.x in this process,
//! one scenario at a time. It has every capability: the mesh is scripted, the
//! fakes fail on request, proxies move, and the bench holds the token issuer's
//! key.

use super::{ControlPlane, ReplicaTrust, ScriptedMesh, TopologyError, TopologyKind};
use super::{Replica, TokenSpec};
use fake_istiod::FakeIstiod;
use fake_istiod::scenario::{Fault, Scenario};
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::SystemTime;

/// How long a restarted fake replica is down.
pub const RESTART_OUTAGE: std::time::Duration = std::time::Duration::from_millis(300);

/// One scenario's fake replicas.
pub struct LocalControlPlane {
    fake: Arc<FakeIstiod>,
    scenario: Scenario,
}

impl LocalControlPlane {
    /// Wraps replicas started with `scenario`. The runner keeps a clone of
    /// `fake` to shut the replicas down once the checks are done.
    pub fn new(fake: Arc<FakeIstiod>, scenario: Scenario) -> Self {
        LocalControlPlane { fake, scenario }
    }

    /// The fake replicas themselves (for tests of the bench).
    pub fn fake(&self) -> &FakeIstiod {
        &self.fake
    }
}

fn failed(e: fake_istiod::Error) -> TopologyError {
    TopologyError::Failed(e.to_string())
}

impl ControlPlane for LocalControlPlane {
    fn kind(&self) -> TopologyKind {
        TopologyKind::Local
    }

    fn replicas(&self) -> Vec<Replica> {
        self.fake
            .replicas()
            .into_iter()
            .map(|r| Replica {
                name: r.name,
                version: r.version,
                tls_addr: r.tls_addr,
                plaintext_addr: Some(r.plaintext_addr),
            })
            .collect()
    }

    fn istio_namespace(&self) -> &str {
        &self.scenario.istiod.namespace
    }

    fn replica_trust(&self) -> ReplicaTrust {
        // The fakes' certificates carry their IP addresses.
        ReplicaTrust {
            ca_pem: self.fake.ca_pem(),
            server_name: None,
        }
    }

    fn token(&self, spec: &TokenSpec) -> Result<String, TopologyError> {
        Ok(self.fake.mint_token(spec))
    }

    fn scripted(&self) -> Option<&dyn ScriptedMesh> {
        Some(self)
    }

    /// The fake stops serving (connections refused, open ones cut), stays
    /// down for [`RESTART_OUTAGE`], and serves again on the same address: a
    /// restarted process.
    fn restart<'a>(&'a self, replica: &'a str) -> Option<BoxFuture<'a, Result<(), TopologyError>>> {
        Some(Box::pin(async move {
            self.fake
                .set_fault(replica, Fault::Down)
                .await
                .map_err(failed)?;
            // The outage itself (not a wait for anything): clients asking
            // meanwhile find the replica down, as they would a restarting pod.
            tokio::time::sleep(RESTART_OUTAGE).await;
            self.fake.clear_fault(replica).await.map_err(failed)
        }))
    }
}

impl ScriptedMesh for LocalControlPlane {
    fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    fn scenario_time(&self) -> SystemTime {
        self.fake.scenario_time()
    }

    fn set_fault<'a>(
        &'a self,
        replica: &'a str,
        fault: Option<Fault>,
    ) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(async move {
            match fault {
                Some(f) => self.fake.set_fault(replica, f).await,
                None => self.fake.clear_fault(replica).await,
            }
            .map_err(failed)
        })
    }

    fn move_proxy<'a>(
        &'a self,
        proxy_id: &'a str,
        to_replica: &'a str,
    ) -> BoxFuture<'a, Result<(), TopologyError>> {
        Box::pin(async move {
            self.fake
                .move_proxy(proxy_id, to_replica)
                .await
                .map_err(failed)
        })
    }
}
