//! A real sidecar: `pilot-agent proxy` running the upstream Envoy, as
//! Istio's VM workloads run it outside Kubernetes. It reads the pod's token
//! and the mesh root from its working directory (`./var/run/secrets/...`,
//! `1.30.0:pkg/config/constants/constants.go` `ThirdPartyJwtPath`), gets its
//! certificate from istiod's CA, writes Envoy's bootstrap from the template
//! Istio ships (`tools/packaging/common/envoy_bootstrap.json`, copied beside
//! the binaries by the build) and starts Envoy, which connects to istiod
//! through the agent. Envoy's listeners bind 0.0.0.0:15001/15006/15021/15090
//! with SO_REUSEPORT, so several share this host; the admin and status ports
//! are the bench's, one pair per sidecar.

use super::RealIstioError;
use super::binaries::Binaries;
use super::sidecar::SidecarSpec;
use crate::topology::process::{Placeholders, ProxyProcess};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a sidecar may take to be ready (its certificate, Envoy's first
/// CDS and LDS; about 1 s here).
pub const READY_BOUND: Duration = Duration::from_secs(60);

/// The Envoy bootstrap template, beside the binaries.
pub const BOOTSTRAP: &str = "../envoy_bootstrap.json";

/// What pilot-agent prints when a port it binds is taken.
pub const PORT_TAKEN: &str = "address already in use";

/// A running pilot-agent and its Envoy.
pub struct Agent {
    pub node_id: String,
    /// Envoy's admin address (its config dump: `/config_dump`).
    pub admin: SocketAddr,
    status: SocketAddr,
    process: ProxyProcess,
}

impl Agent {
    /// Starts it in `dir` for the pod `spec`, connected to `istiod` (also its
    /// CA), with `token` (the pod's, audience `istio-ca`) and the mesh root;
    /// waits until the agent says Envoy is ready.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        bins: &Binaries,
        spec: &SidecarSpec,
        istiod: SocketAddr,
        server_name: &str,
        token: &str,
        root_pem: &str,
        ports: (u16, u16),
        dir: &Path,
    ) -> Result<Agent, RealIstioError> {
        let step = |what: &str| format!("sidecar {}.{}: {what}", spec.pod, spec.namespace);
        let w = |rel: &str, text: &str| -> Result<(), RealIstioError> {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| RealIstioError::step(&step(&format!("create {rel}")), e))?;
            }
            fake_istiod::tls::write_private(&path, text)
                .map_err(|e| RealIstioError::step(&step(&format!("write {rel}")), e))
        };
        w("var/run/secrets/tokens/istio-token", token)?;
        w("var/run/secrets/istio/root-cert.pem", root_pem)?;
        let template = std::fs::read_to_string(bins.dir.join(BOOTSTRAP)).map_err(|e| {
            RealIstioError::step(
                &step(&format!(
                    "read Envoy's bootstrap template {} (written by `{}`)",
                    bins.dir.join(BOOTSTRAP).display(),
                    super::binaries::BUILD
                )),
                e,
            )
        })?;
        w("var/lib/istio/envoy/envoy_bootstrap_tmpl.json", &template)?;
        let (admin_port, status_port) = ports;
        let proxy_config = format!(
            "discoveryAddress: {istiod}\nbinaryPath: {}\nconfigPath: ./etc/istio/proxy\nproxyAdminPort: {admin_port}\nstatusPort: {status_port}\n",
            bins.path("envoy").display()
        );
        let mut v = Placeholders::new();
        v.insert("dir", dir.display().to_string());
        v.insert("bin", bins.path("pilot-agent").display().to_string());
        v.insert("pod", spec.pod.clone());
        v.insert("ns", spec.namespace.clone());
        v.insert("ip", spec.ip.to_string());
        v.insert("sa", spec.service_account.clone());
        v.insert("cluster", spec.cluster_id.clone());
        v.insert("istiod", istiod.to_string());
        v.insert("san", server_name.to_string());
        v.insert("type", spec.node_type.clone());
        v.insert("app", spec.app.clone());
        v.insert("proxy_config", proxy_config);
        // No CA_ADDR: the CA is then the discovery address, verified as
        // ISTIOD_SAN (`pilot/cmd/pilot-agent/options/security.go`); with
        // CA_ADDR the CA client checks the address itself, which istiod's
        // certificate (its own IP) does not hold for the Service address.
        let process = ProxyProcess::spawn(
            "cd {dir} && exec env POD_NAME={pod} POD_NAMESPACE={ns} INSTANCE_IP={ip} \
             SERVICE_ACCOUNT={sa} ISTIO_META_CLUSTER_ID={cluster} ISTIO_META_MESH_ID=cluster.local \
             ISTIO_META_WORKLOAD_NAME={app} TRUST_DOMAIN=cluster.local \
             JWT_POLICY=third-party-jwt PILOT_CERT_PROVIDER=istiod ISTIOD_SAN={san} \
             ISTIO_META_DNS_CAPTURE=false PROXY_CONFIG={proxy_config} \
             {bin} proxy {type} --serviceCluster {app}.{ns}",
            &v,
        )
        .map_err(|e| RealIstioError::step(&step("start pilot-agent"), e))?;
        let ip = std::net::Ipv4Addr::LOCALHOST;
        let mut agent = Agent {
            node_id: spec.node_id(),
            admin: SocketAddr::from((ip, admin_port)),
            status: SocketAddr::from((ip, status_port)),
            process,
        };
        match agent.wait_ready().await {
            Ok(()) => Ok(agent),
            Err(e) => {
                agent.stop().await;
                Err(e)
            }
        }
    }

    /// pilot-agent's `/healthz/ready` on its status port: 200 once Envoy has
    /// its first CDS and LDS.
    async fn wait_ready(&mut self) -> Result<(), RealIstioError> {
        let deadline = Instant::now() + READY_BOUND;
        let mut pause = Duration::from_millis(100);
        loop {
            let last = match super::istiod::http_status(self.status, "/healthz/ready").await {
                Ok(200) => return Ok(()),
                Ok(code) => format!("/healthz/ready said {code}"),
                Err(e) => e,
            };
            let exited = self.process.exited();
            // pilot-agent keeps running when its status port is taken: say
            // so at once (the caller tries other ports).
            let taken = self.process.output.tail(200).contains(PORT_TAKEN);
            if taken {
                return Err(RealIstioError::step(
                    &format!("start the sidecar {}", self.node_id),
                    format!("its status port {}: {PORT_TAKEN}", self.status.port()),
                ));
            }
            if Instant::now() >= deadline || exited.is_some() {
                self.process.drain_output(Duration::from_secs(2)).await;
                return Err(RealIstioError::NotServing {
                    what: format!("the sidecar {} (pilot-agent + Envoy)", self.node_id),
                    bound: READY_BOUND,
                    last: exited.map(|s| format!("it exited: {s}")).unwrap_or(last),
                    output: self.process.output.tail(30),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Its processes (pilot-agent and Envoy).
    pub fn pids(&self) -> Vec<i32> {
        self.process.pids()
    }

    pub async fn stop(self) {
        self.process.stop(Duration::from_secs(5)).await;
    }
}
