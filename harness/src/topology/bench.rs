//! A session: one scenario's (or the live mesh's) control plane and proxy
//! under test, up and taking requests, as a topology opened it; and how it
//! is stopped again. What every topology shares to get there: the files a
//! proxy is given, waiting until it takes requests, its failures.

use crate::client;
use crate::suite::CheckContext;
use crate::suite::context::ClientErrorExt;
use futures::future::BoxFuture;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Setup(String),
    #[error("{what} did not answer within {timeout:?} ({last}){}", output_note(.output))]
    NotReady {
        /// Which proxy: the command as run, or its address.
        what: String,
        timeout: Duration,
        last: String,
        output: String,
    },
    #[error("{what} exited before answering ({status}){}", output_note(.output))]
    Exited {
        what: String,
        status: String,
        output: String,
    },
}

impl ProxyError {
    /// The proxy itself did not come up (as opposed to the bench around it).
    pub fn is_not_ready(&self) -> bool {
        matches!(
            self,
            ProxyError::NotReady { .. } | ProxyError::Exited { .. }
        )
    }
}

fn output_note(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("; its output:\n{output}")
    }
}

/// A proxy under test that the bench started (a process, a container, the
/// bundled one in process).
pub trait StartedProxy: Send + Sync {
    /// Which proxy this is, for messages (`address` is where it listens).
    fn describe(&self, address: &str) -> String;
    /// `Some((status, the tail of its output))` once it has exited.
    fn exited(&mut self) -> BoxFuture<'_, Option<(String, String)>>;
    /// Stops it (and whatever it started).
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// What goes once the proxy is stopped and the checks' context dropped (the
/// replicas: the context holds the other reference to them).
pub trait Teardown: Send {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// A control plane shared with the context: torn down by `stop` once the
/// context has let go of it.
pub struct Shared<T>(pub std::sync::Arc<T>, pub fn(T) -> BoxFuture<'static, ()>);

impl<T: Send + Sync + 'static> Teardown for Shared<T> {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()> {
        let Shared(arc, stop) = *self;
        match std::sync::Arc::try_unwrap(arc) {
            Ok(inner) => stop(inner),
            Err(_) => Box::pin(async {}),
        }
    }
}

/// The running scenario (or live mesh): what the checks get, and what to stop.
pub struct Session {
    pub ctx: CheckContext,
    /// `None`: a proxy the bench did not start (`--proxy-addr`, a cluster's).
    proxy: Option<Box<dyn StartedProxy>>,
    teardown: Vec<Box<dyn Teardown>>,
    _files: Option<tempfile::TempDir>,
}

impl Session {
    pub fn new(
        ctx: CheckContext,
        proxy: Option<Box<dyn StartedProxy>>,
        teardown: Vec<Box<dyn Teardown>>,
        files: Option<tempfile::TempDir>,
    ) -> Self {
        Session {
            ctx,
            proxy,
            teardown,
            _files: files,
        }
    }

    /// The session once its proxy takes requests; stopped (properly: grace,
    /// descendants, reaping) when it does not within `timeout`.
    pub async fn ready(mut self, timeout: Duration) -> Result<Session, ProxyError> {
        match self.wait_ready(timeout).await {
            Ok(()) => Ok(self),
            Err(e) => {
                self.stop().await;
                Err(e)
            }
        }
    }

    /// Which proxy this is, for messages.
    fn what(&self) -> String {
        let address = &self.ctx.proxy.address;
        match &self.proxy {
            Some(p) => p.describe(address),
            None => format!("the proxy at {address}"),
        }
    }

    /// Waits (bounded) until the proxy takes a syncz request at all: an answer,
    /// a gRPC status, or a stream that is accepted but not yet answered (a
    /// scenario's hung replica may hold the answer) all count; refused or
    /// reset connections do not.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), ProxyError> {
        let deadline = Instant::now() + timeout;
        let mut opts = self.ctx.istioctl();
        opts.timeout = Duration::from_secs(1);
        let mut pause = Duration::from_millis(20);
        loop {
            let last = match client::fetch(&opts, proto::type_url::SYNCZ, &[]).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_answer() || e.is_timeout() => return Ok(()),
                Err(e) => e.to_string(),
            };
            let what = self.what();
            if let Some(p) = &mut self.proxy
                && let Some((status, output)) = p.exited().await
            {
                return Err(ProxyError::Exited {
                    what,
                    status,
                    output,
                });
            }
            if Instant::now() >= deadline {
                return Err(ProxyError::NotReady {
                    what,
                    timeout,
                    last,
                    output: self
                        .ctx
                        .proxy_output
                        .as_ref()
                        .map(|o| o.tail(40))
                        .unwrap_or_default(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Stops the proxy, then the control plane.
    pub async fn stop(self) {
        if let Some(p) = self.proxy {
            p.stop().await;
        }
        // The context holds the other reference to the replicas (and, on a
        // cluster, the port-forwards, which stop when it is dropped).
        drop(self.ctx);
        for t in self.teardown {
            t.teardown().await;
        }
    }
}

/// The bundled proxy, in this process.
impl StartedProxy for istioctl_proxy::RunningProxy {
    fn describe(&self, address: &str) -> String {
        format!("the bundled proxy on {address}")
    }
    fn exited(&mut self) -> BoxFuture<'_, Option<(String, String)>> {
        Box::pin(async { None })
    }
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.shutdown().await })
    }
}

/// A proxy command (`--proxy-cmd`).
impl StartedProxy for super::process::ProxyProcess {
    fn describe(&self, address: &str) -> String {
        format!(
            "the proxy command `{}` (listening on {address})",
            self.command
        )
    }
    fn exited(&mut self) -> BoxFuture<'_, Option<(String, String)>> {
        Box::pin(async move {
            let status = self.exited()?;
            self.drain_output(Duration::from_secs(2)).await;
            Some((status, self.output.tail(40)))
        })
    }
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move { (*self).stop(Duration::from_secs(3)).await })
    }
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), ProxyError> {
    std::fs::write(path, text)
        .map_err(|e| ProxyError::Setup(format!("cannot write {}: {e}", path.display())))
}

/// A private key or a token: mode 0600.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), ProxyError> {
    fake_istiod::tls::write_private(path, text)
        .map_err(|e| ProxyError::Setup(format!("cannot write {}: {e}", path.display())))
}

/// A folder only its owner reads: it will hold the proxy's key and token.
pub(crate) fn private_tempdir() -> Result<tempfile::TempDir, ProxyError> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("proxy-conformance-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(|e| ProxyError::Setup(format!("cannot create a temporary folder: {e}")))
}

/// A self-signed serving certificate and key (PEM) for these names.
pub(crate) fn serving_cert(names: &[&str]) -> Result<(String, String), ProxyError> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ProxyError::Setup(format!("cannot generate a certificate: {e}")))?;
    Ok((cert.cert.pem(), cert.signing_key.serialize_pem()))
}
