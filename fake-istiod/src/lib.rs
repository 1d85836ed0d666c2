//! fake-istiod: N emulated istiod replicas answering istioctl's debug requests
//! (syncz, config_dump, connections, debug) like real istiod, replica by
//! replica and version by version, driven by scenario files.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fake_istiod::Error> {
//! use fake_istiod::{FakeIstiod, StartOptions, scenario::Scenario};
//! let scenario = Scenario::load("scenarios/blog-walkthrough.yaml")?;
//! let fake = FakeIstiod::start(scenario, StartOptions::ephemeral()).await?;
//! for r in fake.replicas() {
//!     println!("{} plaintext {} tls {}", r.name, r.plaintext_addr, r.tls_addr);
//! }
//! fake.shutdown().await;
//! # Ok(()) }
//! ```

pub mod ads;
pub mod asked;
pub mod auth;
pub mod config_dump;
mod conn;
pub mod control;
pub mod debug;
pub mod mesh;
pub mod poison;
pub mod probe;
pub mod scenario;
mod server;
pub mod syncz;
pub mod testing;
pub mod timefmt;
pub mod tls;

pub use asked::{Asked, Outcome, Transport};
pub use auth::{Identity, TokenAuthority, TokenSpec};
pub use scenario::{Fault, Proxy, ProxyKind, Scenario, ScenarioError, SyncStatus, TypeStatus};
pub use server::{
    CA_FILE, CA_KEY_FILE, ClientCert, Error, FakeIstiod, ReplicaInfo, SIGNING_KEY_FILE,
    SIGNING_KEY_FILE_PUB, StartOptions, init_state_dir,
};
