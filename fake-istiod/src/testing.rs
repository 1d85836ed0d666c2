//! Test support, for this crate's tests and other crates': a fake started from
//! a YAML string in one call, on 127.0.0.2.. with free ports, its CA and
//! tokens at hand, stopped when the handle is dropped.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fake_istiod::Error> {
//! use fake_istiod::testing;
//! let mesh = testing::start(
//!     "istiod: { version: 1.30.0 }\nreplicas: [ { name: istiod-a } ]\n",
//! )
//! .await?;
//! let r = &mesh.replicas()[0];
//! let _dial = mesh.istioctl_dial(); // TLS with istioctl's token
//! // ... ask r.tls_addr, then read what it was asked:
//! for asked in mesh.asked(&r.name) {
//!     println!("{} from {:?}", asked.type_url, asked.caller);
//! }
//! mesh.shutdown().await;
//! # Ok(()) }
//! ```

use crate::auth::TokenSpec;
use crate::probe::Dial;
use crate::scenario::Scenario;
use crate::server::{Error, FakeIstiod, StartOptions};
use std::future::{Future, IntoFuture};
use std::ops::Deref;
use std::path::PathBuf;
use std::pin::Pin;

/// The scenarios shipped with the workspace (`scenarios/`).
pub fn scenarios_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"))
}

/// A fake about to start: await it (options first, if any).
#[must_use = "a Start does nothing until awaited"]
pub struct Start {
    scenario: Result<Scenario, Error>,
    opts: StartOptions,
}

/// Starts the scenario in `yaml`. Errors name the caller's file and line as
/// the scenario's source (`tests/x.rs:12 (inline scenario):3: field: ...`).
#[track_caller]
pub fn start(yaml: &str) -> Start {
    let at = std::panic::Location::caller();
    let source = format!("{}:{} (inline scenario)", at.file(), at.line());
    start_named(yaml, &source)
}

/// Starts the scenario in `yaml`, errors naming `source`.
pub fn start_named(yaml: &str, source: &str) -> Start {
    Start {
        scenario: Scenario::parse(yaml, source).map_err(Error::from),
        opts: StartOptions::ephemeral(),
    }
}

/// Starts a scenario shipped in `scenarios/` (e.g. `"three-replicas.yaml"`).
pub fn start_shipped(file_name: &str) -> Start {
    Start {
        scenario: Scenario::load(scenarios_dir().join(file_name)).map_err(Error::from),
        opts: StartOptions::ephemeral(),
    }
}

/// Starts `scenario` as it is.
pub fn start_scenario(scenario: Scenario) -> Start {
    Start {
        scenario: Ok(scenario),
        opts: StartOptions::ephemeral(),
    }
}

impl Start {
    /// Also serves the control API (127.0.0.1, any port).
    pub fn with_control(mut self) -> Self {
        self.opts = self.opts.with_control();
        self
    }

    /// Other options than [`StartOptions::ephemeral`].
    pub fn options(mut self, opts: StartOptions) -> Self {
        self.opts = opts;
        self
    }
}

impl IntoFuture for Start {
    type Output = Result<TestMesh, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let scenario = self.scenario?;
            let istio_namespace = scenario.istiod.namespace.clone();
            let fake = FakeIstiod::start(scenario, self.opts).await?;
            Ok(TestMesh {
                fake: Some(fake),
                istio_namespace,
            })
        })
    }
}

/// A running fake for a test: derefs to [`FakeIstiod`]; dropping it stops the
/// replicas (without waiting; [`TestMesh::shutdown`] waits).
pub struct TestMesh {
    /// `None` only once `shutdown` took it.
    fake: Option<FakeIstiod>,
    istio_namespace: String,
}

impl std::fmt::Debug for TestMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestMesh")
            .field("fake", &self.fake)
            .field("istio_namespace", &self.istio_namespace)
            .finish()
    }
}

impl Deref for TestMesh {
    type Target = FakeIstiod;
    fn deref(&self) -> &FakeIstiod {
        self.fake()
    }
}

impl TestMesh {
    pub fn fake(&self) -> &FakeIstiod {
        match &self.fake {
            Some(f) => f,
            // `shutdown` consumes the handle: nobody can reach it afterwards.
            None => unreachable!("a TestMesh is used after shutdown"),
        }
    }

    /// The system namespace of the scenario it started with.
    pub fn istio_namespace(&self) -> &str {
        &self.istio_namespace
    }

    /// A valid token for ServiceAccount `default` of `namespace`.
    pub fn token(&self, namespace: &str) -> String {
        self.mint_token(&TokenSpec::new(namespace, "default"))
    }

    /// istioctl's token: ServiceAccount `default` of the system namespace.
    pub fn istioctl_token(&self) -> String {
        self.mint_token(&TokenSpec::istioctl(self.istio_namespace.clone()))
    }

    /// TLS verified against the fake's CA, with `token` (or none).
    pub fn tls_dial(&self, token: Option<String>) -> Dial {
        Dial {
            ca_pem: Some(self.ca_pem()),
            token,
            ..Default::default()
        }
    }

    /// TLS with istioctl's token.
    pub fn istioctl_dial(&self) -> Dial {
        self.tls_dial(Some(self.istioctl_token()))
    }

    /// Stops every listener and the control server, and waits for them.
    pub async fn shutdown(mut self) {
        if let Some(fake) = self.fake.take() {
            fake.shutdown().await;
        }
    }
}

impl Drop for TestMesh {
    fn drop(&mut self) {
        if let Some(fake) = &self.fake {
            fake.stop_now();
        }
    }
}
