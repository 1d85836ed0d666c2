//! What testcontainers does not do, done with bollard (the Docker API client
//! testcontainers itself uses): user networks with labels, network aliases
//! (a shared one resolves to every replica, as a headless Service does),
//! disconnecting a container (a partition), container addresses and PIDs,
//! and sweeping everything a run labelled (Ctrl-C, a panic, a crash).

use super::DockerError;
use bollard::Docker;
use bollard::models::NetworkDisconnectRequest;
use bollard::models::{EndpointSettings, NetworkConnectRequest, NetworkCreateRequest};
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListNetworksOptions, RemoveContainerOptions,
};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// Label on every container and network a run creates; its value is the run's id.
pub const RUN_LABEL: &str = "io.proxy-conformance.run";

/// The local Docker engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> DockerError {
    let what = what.into();
    move |e| DockerError::Api {
        what,
        error: e.to_string(),
    }
}

impl Engine {
    /// Connects to the local engine (DOCKER_HOST or /var/run/docker.sock) and
    /// checks that it answers.
    pub async fn connect() -> Result<Engine, DockerError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| DockerError::NoEngine {
            error: e.to_string(),
        })?;
        docker.ping().await.map_err(|e| DockerError::NoEngine {
            error: e.to_string(),
        })?;
        Ok(Engine { docker })
    }

    /// Fails with the command that builds `image` when it is not on the engine
    /// (images are built locally from the repository, never pulled).
    pub async fn require_image(&self, image: &str, build: &str) -> Result<(), DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(e) => Err(DockerError::MissingImage {
                image: image.to_string(),
                build: build.to_string(),
                error: e.to_string(),
            }),
        }
    }

    /// Creates a bridge network carrying the run's label.
    pub async fn create_network(&self, name: &str, run: &str) -> Result<(), DockerError> {
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            labels: Some(HashMap::from([(RUN_LABEL.to_string(), run.to_string())])),
            ..Default::default()
        };
        self.docker
            .create_network(req)
            .await
            .map_err(api(format!("create network {name}")))?;
        Ok(())
    }

    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        self.docker
            .remove_network(name)
            .await
            .map_err(api(format!("remove network {name}")))
    }

    /// Joins `container` to `network` under `aliases` (DNS names on that
    /// network; several containers may share one).
    pub async fn join(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<(), DockerError> {
        let req = NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(aliases.to_vec()),
                ..Default::default()
            }),
        };
        self.docker
            .connect_network(network, req)
            .await
            .map_err(api(format!("connect {container} to {network}")))
    }

    /// Joins `container` to `network` under `aliases` and returns its
    /// address there.
    pub async fn join_with_address(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<Ipv4Addr, DockerError> {
        self.join(network, container, aliases).await?;
        self.address(container, network).await
    }

    /// Takes `container` off `network`: its address stops answering (packets
    /// to it go nowhere, no RST) and its DNS names there disappear.
    pub async fn disconnect(&self, network: &str, container: &str) -> Result<(), DockerError> {
        let req = NetworkDisconnectRequest {
            container: container.to_string(),
            force: Some(true),
        };
        self.docker
            .disconnect_network(network, req)
            .await
            .map_err(api(format!("disconnect {container} from {network}")))
    }

    /// The container's IPv4 address on `network` (just after a join the
    /// engine may not show it yet: asked again, bounded).
    pub async fn address(&self, container: &str, network: &str) -> Result<Ipv4Addr, DockerError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut pause = std::time::Duration::from_millis(10);
        loop {
            match self.address_now(container, network).await {
                Err(DockerError::Api { error, .. })
                    if error.starts_with("no IPv4 address")
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    async fn address_now(&self, container: &str, network: &str) -> Result<Ipv4Addr, DockerError> {
        let info = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .map_err(api(format!("inspect {container}")))?;
        let state = info
            .state
            .as_ref()
            .map(|s| format!("running {:?}, exit code {:?}", s.running, s.exit_code))
            .unwrap_or_default();
        let ip = info
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|mut n| n.remove(network))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty());
        match ip.as_deref().map(str::parse::<IpAddr>) {
            Some(Ok(IpAddr::V4(v4))) => Ok(v4),
            _ => Err(DockerError::Api {
                what: format!("inspect {container}"),
                error: format!("no IPv4 address on network {network} (got {ip:?}; {state})"),
            }),
        }
    }

    /// The PID (in this host's namespace) of the container's main process,
    /// while it runs.
    pub async fn pid(&self, container: &str) -> Option<u32> {
        let info = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let state = info.state?;
        if state.running != Some(true) {
            return None;
        }
        state
            .pid
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
    }

    /// The names of the containers and networks carrying the run's label.
    pub async fn labelled(&self, run: &str) -> Result<(Vec<String>, Vec<String>), DockerError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{RUN_LABEL}={run}")])]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters.clone()),
                ..Default::default()
            }))
            .await
            .map_err(api("list containers"))?
            .into_iter()
            .filter_map(|c| c.id)
            .collect();
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(api("list networks"))?
            .into_iter()
            .filter_map(|n| n.name)
            .collect();
        Ok((containers, networks))
    }

    /// Removes every container (forcibly) and then every network carrying
    /// the run's label; returns how many of each it removed. A container
    /// already being removed (a drop racing this) is waited for, bounded.
    pub async fn sweep(&self, run: &str) -> Result<(usize, usize), DockerError> {
        let (containers, networks) = self.labelled(run).await?;
        for c in &containers {
            let removed = self
                .docker
                .remove_container(
                    c,
                    Some(RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await;
            match removed {
                Ok(()) => {}
                // Gone already, or its removal is in progress.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => {}
                Err(e) => return Err(api(format!("remove container {c}"))(e)),
            }
        }
        // A network cannot go while a container is still on it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (left, _) = self.labelled(run).await?;
            if left.is_empty() {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(DockerError::Api {
                    what: format!("remove the run's containers {}", left.join(", ")),
                    error: "still there after 20s".to_string(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for n in &networks {
            match self.remove_network(n).await {
                Ok(()) => {}
                Err(DockerError::Api { error, .. }) if error.contains("404") => {}
                Err(e) => return Err(e),
            }
        }
        Ok((containers.len(), networks.len()))
    }
}
