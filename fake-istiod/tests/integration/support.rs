//! What the behaviour modules share: the binary, the shipped scenarios, child
//! processes that die with the test, syncz answers as sorted ids, and bounded
//! waiting on a condition.

use fake_istiod::probe::decode_syncz;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The `fake-istiod` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_fake-istiod");

/// The scenarios shipped with the workspace.
pub fn scenarios() -> PathBuf {
    fake_istiod::testing::scenarios_dir()
}

/// Kills the process on drop, so a failing assertion leaves nothing running.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The node ids of a syncz answer, sorted.
pub fn syncz_ids(resp: &DiscoveryResponse) -> Vec<String> {
    let mut ids: Vec<String> = decode_syncz(resp)
        .expect("syncz answer decodes")
        .into_iter()
        .map(|c| c.node.map(|n| n.id).unwrap_or_default())
        .collect();
    ids.sort();
    ids
}

/// Retries `f` until it returns true, for at most `bound`.
pub async fn eventually<F, Fut>(bound: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < bound {
        if f().await {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}
