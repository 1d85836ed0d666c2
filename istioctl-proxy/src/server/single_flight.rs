//! Single flight: identical fan-out requests share one fan-out and one
//! merged answer (see [`Flights`]).

use crate::auth::Visibility;
use crate::wire::{self, Shared};
use proto::envoy::envoy::service::discovery::v3::DiscoveryRequest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tonic::Status;

/// What a flight publishes: the merge every member shares, or the error.
pub(super) type FlightResult = Result<Arc<Shared>, Status>;

/// Single flight: identical fan-out requests share one fan-out and one
/// merged answer (the resources are held once, whatever the number of
/// clients; each client gets its own version and nonce).
///
/// Identical means: the same upstream request (type URL, resource names,
/// node, as the replicas would see it), the same token to call them with and
/// the same caller visibility. Callers whose visibility differs never share
/// (nothing is filtered after sharing, so nothing can leak between them).
///
/// Freshness: a request joins only an *open* flight, one that has not sent
/// its requests to the replicas yet, so every answer reflects what the
/// replicas knew after the request arrived, never before. At most one flight
/// per key is open; it starts when the previous flight of its key is over,
/// its answer written out to its last client (the requests that arrived
/// meanwhile go out together, and two answers of one key are never held at
/// once), or at the latest when only a replica timeout is left before its
/// creator's request deadline (so a slow fan-out or a client that does not
/// read never costs a later one its time).
#[derive(Default)]
pub(crate) struct Flights {
    lanes: Mutex<HashMap<FlightKey, Lane>>,
    /// Flights started so far (tests).
    started: std::sync::atomic::AtomicUsize,
}

/// The flights of one key.
#[derive(Default)]
struct Lane {
    /// Flights asking the replicas now.
    running: usize,
    /// The flight newcomers join, not started yet.
    open: Option<Arc<Flight>>,
    /// Told when no flight of this key runs any more.
    idle: Arc<Notify>,
}

/// One flight: its members wait for its result.
struct Flight {
    result: watch::Sender<Option<FlightResult>>,
}

/// What makes two fan-outs identical (see [`Flights`]). The node's metadata
/// is a map, so it is keyed in sorted order (its encoding is not canonical).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct FlightKey {
    type_url: String,
    resource_names: Vec<String>,
    node: Vec<u8>,
    metadata: Vec<(String, Vec<u8>)>,
    token: Option<String>,
    visibility: Visibility,
}

impl FlightKey {
    pub(super) fn new(
        req: &DiscoveryRequest,
        token: &Option<String>,
        visibility: &Visibility,
    ) -> Self {
        use prost::Message;
        let mut node = req.node.clone().unwrap_or_default();
        let mut metadata: Vec<(String, Vec<u8>)> = node
            .metadata
            .take()
            .map(|md| {
                md.fields
                    .into_iter()
                    .map(|(k, v)| (k, v.encode_to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        metadata.sort();
        FlightKey {
            type_url: req.type_url.clone(),
            resource_names: req.resource_names.clone(),
            node: node.encode_to_vec(),
            metadata,
            token: token.clone(),
            visibility: visibility.clone(),
        }
    }
}

impl Flights {
    /// Joins the open flight of `key` (one whose requests to the replicas
    /// have not gone out yet) or opens one, which runs `work()` once its turn
    /// comes (see [`Flights::fly`]); returns the flight's result.
    pub(super) async fn join<W, F>(
        self: &Arc<Self>,
        key: FlightKey,
        latest: Instant,
        work: W,
    ) -> FlightResult
    where
        W: FnOnce() -> F,
        F: Future<Output = FlightResult> + Send + 'static,
    {
        let mut result = self.subscribe(key, latest, work);
        let shared = match result.wait_for(Option::is_some).await {
            Ok(r) => r.clone(),
            Err(_) => None,
        };
        shared.unwrap_or_else(|| {
            Err(Status::internal(
                "istioctl-proxy: the fan-out ended without an answer",
            ))
        })
    }

    fn subscribe<W, F>(
        self: &Arc<Self>,
        key: FlightKey,
        latest: Instant,
        work: W,
    ) -> watch::Receiver<Option<FlightResult>>
    where
        W: FnOnce() -> F,
        F: Future<Output = FlightResult> + Send + 'static,
    {
        let mut lanes = self.lanes();
        let lane = lanes.entry(key.clone()).or_default();
        if let Some(open) = &lane.open {
            return open.result.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        let flight = Arc::new(Flight { result: tx });
        lane.open = Some(flight.clone());
        let idle = lane.idle.clone();
        drop(lanes);
        tokio::spawn(self.clone().fly(key, flight, idle, latest, work()));
        rx
    }

    /// Runs one flight: waits until no flight of its key is running (or
    /// until `latest`), closes it to newcomers, runs `work` (asks the
    /// replicas, merges), publishes.
    async fn fly(
        self: Arc<Self>,
        key: FlightKey,
        flight: Arc<Flight>,
        idle: Arc<Notify>,
        latest: Instant,
        work: impl Future<Output = FlightResult>,
    ) {
        loop {
            let notified = idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.try_start(&key, &flight, latest) {
                break;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(latest) => {}
            }
        }
        // The turn ends when the last member's answer is out (or dropped),
        // so flights of one key never hold two answers' memory at once; on
        // an error, now.
        let landing = Landing {
            flights: self.clone(),
            key,
        };
        let result = work.await.map(|shared| {
            let mut shared = Arc::try_unwrap(shared).unwrap_or_else(|a| Shared {
                pieces: a.pieces.clone(),
                rows: a.rows,
                type_url: a.type_url.clone(),
                control_plane: a.control_plane.clone(),
                ..Default::default()
            });
            shared.hold = wire::Hold(Some(Box::new(landing)));
            Arc::new(shared)
        });
        flight.result.send_replace(Some(result));
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<FlightKey, Lane>> {
        // A panic elsewhere leaves the map consistent (every change is one step).
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `flight` if no flight of its key is running or `latest` has
    /// come; a started flight is closed to newcomers.
    fn try_start(&self, key: &FlightKey, flight: &Arc<Flight>, latest: Instant) -> bool {
        let mut lanes = self.lanes();
        let lane = lanes.entry(key.clone()).or_default();
        if lane.running > 0 && Instant::now() < latest {
            return false;
        }
        lane.running += 1;
        if lane.open.as_ref().is_some_and(|o| Arc::ptr_eq(o, flight)) {
            lane.open = None;
        }
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// Flights running now, and started so far (tests).
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let running = self.lanes().values().map(|l| l.running).sum();
        (
            running,
            self.started.load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// A flight's turn's end (its answer's last client is served, the flight
/// failed, or its task panicked): the next flight of its key may start, and
/// an unused lane goes.
struct Landing {
    flights: Arc<Flights>,
    key: FlightKey,
}

impl Drop for Landing {
    fn drop(&mut self) {
        let mut lanes = self.flights.lanes();
        if let Some(lane) = lanes.get_mut(&self.key) {
            lane.running = lane.running.saturating_sub(1);
            if lane.running == 0 {
                lane.idle.notify_waiters();
                if lane.open.is_none() {
                    lanes.remove(&self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ProxyConfig;
    use fake_istiod::{FakeIstiod, Fault, Scenario, StartOptions};
    use proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
    use proto::envoy::envoy::service::status::v3::ClientConfig;
    use proto::node::IstioctlNode;
    use std::net::SocketAddr;
    use std::time::Duration;

    async fn syncz(addr: SocketAddr) -> DiscoveryResponse {
        let req = DiscoveryRequest {
            type_url: proto::type_url::SYNCZ.into(),
            node: Some(IstioctlNode::new("10.1.2.3".parse().unwrap(), "istio-system").to_node()),
            ..Default::default()
        };
        let istioctl = istioctl_client::ClientOptions::plaintext(addr.to_string());
        istioctl_client::fetch_request(&istioctl, req)
            .await
            .unwrap()
    }

    fn ids(resp: &DiscoveryResponse) -> Vec<String> {
        use prost::Message;
        resp.resources
            .iter()
            .map(|a| {
                ClientConfig::decode(a.value.as_slice())
                    .unwrap()
                    .node
                    .unwrap()
                    .id
            })
            .collect()
    }

    /// Identical requests that arrive while a fan-out is out share the next
    /// one, and that one is fresh: it sees a proxy that connected after the
    /// running fan-out had asked the replicas.
    #[tokio::test]
    async fn identical_requests_share_one_fresh_fan_out() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../scenarios/three-replicas.yaml");
        let mut scenario = Scenario::load(path).unwrap();
        scenario.auth.debug_endpoint_auth = false;
        let slow = scenario.replicas[0].name.clone();
        let fast = scenario.replicas[1].name.clone();
        let mut fresh = scenario.proxies[0].clone();
        fresh.id = "arrived-late.default".into();
        fresh.replica = fast.clone();
        let fake = FakeIstiod::start(scenario, StartOptions::ephemeral())
            .await
            .unwrap();
        fake.set_fault(&slow, Fault::Delay(Duration::from_millis(800)))
            .await
            .unwrap();
        let replicas = fake
            .replicas()
            .iter()
            .map(|r| format!("{}={}", r.name, r.plaintext_addr))
            .collect();
        let mut config = ProxyConfig::plaintext_static("127.0.0.1:0".parse().unwrap(), replicas);
        config.replica_timeout = Duration::from_secs(5);
        config.request_timeout = Duration::from_secs(10);
        let proxy = crate::start(config).await.unwrap();
        let addr = proxy.local_addr();
        let flights = &proxy.state.flights;

        let first = tokio::spawn(syncz(addr));
        // Bounded wait until the first fan-out runs (has asked the replicas).
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while flights.counts().0 == 0 {
            assert!(tokio::time::Instant::now() < until, "no fan-out started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fake.upsert_proxy(fresh).await.unwrap();
        let later: Vec<_> = (0..3).map(|_| tokio::spawn(syncz(addr))).collect();
        let first = first.await.unwrap();
        let mut answers = Vec::new();
        for l in later {
            answers.push(l.await.unwrap());
        }
        for a in &answers {
            assert!(
                ids(a).contains(&"arrived-late.default".to_string()),
                "a request that came after the fan-out went out got its stale answer"
            );
            assert_eq!(
                ids(a).len(),
                ids(&first).len()
                    + usize::from(!ids(&first).contains(&"arrived-late.default".to_string()))
            );
            assert_ne!(a.nonce, first.nonce, "every answer has its own nonce");
        }
        assert_ne!(answers[0].nonce, answers[1].nonce);
        assert_eq!(
            flights.counts().1,
            2,
            "the three later requests shared one fan-out (started after the first one's)"
        );
        proxy.shutdown().await;
        fake.shutdown().await;
    }
}
