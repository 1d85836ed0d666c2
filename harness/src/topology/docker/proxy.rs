//! The proxy under test as a container on a scenario's network, started with
//! testcontainers from a locally built image; its output kept for reports,
//! its memory read from its main process (the host sees it in /proc).

use super::engine::RUN_LABEL;
use super::{DockerControlPlane, DockerError, FILES_DIR, REPLICA_ALIAS, TLS_PORT, data, file};
use crate::suite::output_log::OutputLog;
use crate::topology::bench::StartedProxy;
use crate::topology::process::{Placeholders, fill};
use std::net::SocketAddr;
use testcontainers::core::WaitFor;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::io::AsyncBufReadExt;

/// The port the proxy listens on inside its container ({listen}).
pub const PROXY_PORT: u16 = 9090;

/// What to run.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    pub image: String,
    /// Argument template (placeholders filled, then split at whitespace).
    pub args: String,
    pub env: Vec<(String, String)>,
    /// The refresh interval the proxy declares ({discovery_refresh}).
    pub discovery_refresh: std::time::Duration,
}

/// Files the proxy gets under /conformance.
#[derive(Debug, Clone)]
pub struct ProxyFiles {
    pub cert_pem: String,
    pub key_pem: String,
    pub token: String,
    pub token_issuer_key: String,
}

/// The running proxy container.
pub struct ProxyContainer {
    container: ContainerAsync<GenericImage>,
    pub container_name: String,
    /// Where the harness reaches it.
    pub address: SocketAddr,
    pub output: OutputLog,
    /// The arguments it was started with, for messages.
    pub args: Vec<String>,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// Every placeholder of a proxy container's arguments for this mesh.
pub fn placeholders(cp: &DockerControlPlane, scenario: &str, refresh: &str) -> Placeholders {
    let names = |port: u16| {
        cp.scenario_names()
            .iter()
            .map(|n| format!("{n}:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let path = |f: &str| format!("{FILES_DIR}/{f}");
    let mut v = Placeholders::new();
    v.insert("listen", format!("0.0.0.0:{PROXY_PORT}"));
    v.insert("istiod", names(TLS_PORT));
    v.insert("istiod_plaintext", names(super::PLAINTEXT_PORT));
    v.insert("istiod_dns", format!("{REPLICA_ALIAS}:{TLS_PORT}"));
    v.insert("discovery_refresh", refresh.to_string());
    v.insert("namespace", cp.namespace().to_string());
    v.insert("ca", path(fake_istiod::CA_FILE));
    v.insert("cert", path("proxy.crt"));
    v.insert("key", path("proxy.key"));
    v.insert("token_file", path("token"));
    v.insert("token_issuer_key", path("token-issuer.pem"));
    v.insert("scenario", scenario.to_string());
    v
}

impl ProxyContainer {
    /// Starts the proxy on the mesh's network (it does not wait for it to answer).
    pub async fn start(
        cp: &DockerControlPlane,
        scenario: &str,
        spec: &ProxySpec,
        files: &ProxyFiles,
    ) -> Result<ProxyContainer, DockerError> {
        cp.engine()
            .require_image(&spec.image, super::BUILD_PROXY_IMAGE)
            .await?;
        let refresh = humantime::format_duration(spec.discovery_refresh).to_string();
        let values = placeholders(cp, scenario, &refresh);
        let filled = fill(&spec.args, &values).map_err(|e| DockerError::Setup(e.to_string()))?;
        let args: Vec<String> = filled.split_whitespace().map(str::to_string).collect();
        let (repo, tag) = super::split_image(&spec.image);
        let container_name = format!("{}-proxy", cp.network());
        let mut req = GenericImage::new(repo, tag)
            .with_wait_for(WaitFor::Nothing)
            .with_cmd(args.clone())
            .with_container_name(container_name.clone())
            .with_network(cp.network().to_string())
            .with_label(RUN_LABEL, cp.run_id().to_string())
            .with_copy_to(file(fake_istiod::CA_FILE), data(cp.ca_pem_text()))
            .with_copy_to(file("proxy.crt"), data(&files.cert_pem))
            .with_copy_to(file("proxy.key"), data(&files.key_pem))
            .with_copy_to(file("token"), data(&files.token))
            .with_copy_to(file("token-issuer.pem"), data(&files.token_issuer_key));
        // Plain log lines in reports (tracing and most loggers honour it);
        // --proxy-env may say otherwise.
        req = req.with_env_var("NO_COLOR", "1");
        for (k, v) in &spec.env {
            req = req.with_env_var(k.clone(), v.clone());
        }
        let container = req.start().await.map_err(|e| DockerError::Api {
            what: format!("start the proxy ({})", spec.image),
            error: e.to_string(),
        })?;
        let output = OutputLog::default();
        let mut readers = Vec::new();
        for stream in [container.stdout(true), container.stderr(true)] {
            let out = output.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = stream.lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    out.push(line);
                }
            }));
        }
        let ip = cp.engine().address(&container_name, cp.network()).await?;
        Ok(ProxyContainer {
            container,
            container_name,
            address: SocketAddr::from((ip, PROXY_PORT)),
            output,
            args,
            readers,
        })
    }

    /// Its main process's PID on this host, while it runs.
    pub async fn pid(&self, cp: &DockerControlPlane) -> Option<u32> {
        cp.engine().pid(&self.container_name).await
    }

    /// Whether it exited (or vanished).
    pub async fn exited(&self) -> Option<String> {
        match self.container.is_running().await {
            Ok(true) => None,
            Ok(false) => Some(match self.container.exit_code().await {
                Ok(Some(code)) => format!("exit code {code}"),
                _ => "stopped".to_string(),
            }),
            Err(e) => Some(format!("gone: {e}")),
        }
    }

    /// Removes the container.
    pub async fn stop(self) {
        for r in &self.readers {
            r.abort();
        }
        if let Err(e) = self.container.rm().await {
            tracing::warn!(container = %self.container_name, error = %e, "cannot remove the proxy container");
        }
    }
}

impl StartedProxy for ProxyContainer {
    fn describe(&self, address: &str) -> String {
        format!(
            "the proxy container {} (`{}`, on {address})",
            self.container_name,
            self.args.join(" ")
        )
    }
    fn exited(&mut self) -> futures::future::BoxFuture<'_, Option<(String, String)>> {
        Box::pin(async move {
            let status = ProxyContainer::exited(self).await?;
            // Let the log readers catch the last lines.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Some((status, self.output.tail(40)))
        })
    }
    fn stop(self: Box<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { ProxyContainer::stop(*self).await })
    }
}
