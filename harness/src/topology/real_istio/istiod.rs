//! A real istiod replica as a process: `pilot-discovery discovery` configured
//! as the external control plane's istiod (clusters.md, step 4), its config
//! cluster the remote API server, every port on its own loopback address, its
//! pod name the ControlPlane `ID` it reports.

use super::RealIstioError;
use super::binaries::Binaries;
use crate::topology::process::{Placeholders, ProxyProcess};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a replica may take to be ready (its caches synced; ~3 s here).
pub const READY_BOUND: Duration = Duration::from_secs(90);

/// istiod's ports (each replica on its own address).
pub const PLAINTEXT_PORT: u16 = 15010;
pub const TLS_PORT: u16 = 15012;
pub const WEBHOOK_PORT: u16 = 15017;
pub const MONITORING_PORT: u16 = 15014;
pub const HTTP_PORT: u16 = 8080;
pub const CTRLZ_PORT: u16 = 9876;

/// One replica to start.
#[derive(Debug, Clone)]
pub struct IstiodSpec {
    /// Its pod name (`POD_NAME`: the ControlPlane `ID` it reports).
    pub name: String,
    /// istiod's namespace (also the mesh's root namespace).
    pub namespace: String,
    /// The address all its ports listen on.
    pub ip: Ipv4Addr,
    /// The config cluster's name (`CLUSTER_ID`).
    pub cluster_id: String,
    /// A kubeconfig whose current context is the config cluster.
    pub kubeconfig: PathBuf,
    /// istiod's limit on new xDS requests per second
    /// (`PILOT_MAX_REQUESTS_PER_SECOND`); `None`: its default, 15 + 5 per
    /// core, at most 100 (`pilot/pkg/features/tuning.go`, `RequestLimit`).
    pub request_limit: Option<u32>,
}

/// A running replica.
pub struct Istiod {
    pub name: String,
    pub ip: Ipv4Addr,
    process: ProxyProcess,
}

impl Istiod {
    /// Starts it with `dir` as its working directory (istiod writes its DNS
    /// certificates under `./var/run/secrets`, so each replica needs its own)
    /// and waits until `/ready` says 200.
    pub async fn start(
        bins: &Binaries,
        spec: &IstiodSpec,
        dir: &Path,
    ) -> Result<Istiod, RealIstioError> {
        let step = |what: &str| format!("istiod {}: {what}", spec.name);
        std::fs::create_dir_all(dir)
            .map_err(|e| RealIstioError::step(&step("create its folder"), e))?;
        // The mesh config of the external control plane: its root namespace
        // is istiod's (clusters.md step 4, `meshConfig.rootNamespace`).
        let mesh = format!(
            "rootNamespace: {ns}\ntrustDomain: cluster.local\ndefaultConfig:\n  discoveryAddress: {ip}:{TLS_PORT}\n",
            ns = spec.namespace,
            ip = spec.ip
        );
        let mesh_file = dir.join("mesh.yaml");
        std::fs::write(&mesh_file, mesh)
            .map_err(|e| RealIstioError::step(&step("write mesh.yaml"), e))?;
        let mut v = Placeholders::new();
        v.insert("dir", dir.display().to_string());
        v.insert("bin", bins.path("pilot-discovery").display().to_string());
        v.insert("pod", spec.name.clone());
        v.insert("ns", spec.namespace.clone());
        v.insert("cluster", spec.cluster_id.clone());
        v.insert("kubeconfig", spec.kubeconfig.display().to_string());
        v.insert("mesh", mesh_file.display().to_string());
        v.insert("ip", spec.ip.to_string());
        // 0: istiod's own default ("If set to 0 or unset, the max will be
        // automatically determined", pilot/pkg/features/tuning.go).
        v.insert("limit", spec.request_limit.unwrap_or(0).to_string());
        for (name, port) in [
            ("plaintext", PLAINTEXT_PORT),
            ("tls", TLS_PORT),
            ("webhook", WEBHOOK_PORT),
            ("monitoring", MONITORING_PORT),
            ("http", HTTP_PORT),
            ("ctrlz", CTRLZ_PORT),
        ] {
            v.insert(name, port.to_string());
        }
        // EXTERNAL_ISTIOD, CLUSTER_ID, SHARED_MESH_CONFIG as the guide sets
        // them (clusters.md step 4). Not LOCAL_CLUSTER_SECRET_WATCHER: it
        // needs an in-cluster config of the cluster istiod runs in, and
        // without one this istiod panics in initSDSServer (a nil multicluster
        // controller; seen with the pinned master). Upstream Envoy lacks
        // istio.alpn and metadata exchange (real-istio.md): both off.
        let process = ProxyProcess::spawn(
            "cd {dir} && exec env POD_NAME={pod} POD_NAMESPACE={ns} REVISION=default \
             EXTERNAL_ISTIOD=true CLUSTER_ID={cluster} SHARED_MESH_CONFIG=istio \
             PILOT_ENABLE_ALPN_FILTER=false PILOT_ENABLE_METADATA_EXCHANGE=false PILOT_MAX_REQUESTS_PER_SECOND={limit} \
             {bin} discovery --kubeconfig {kubeconfig} --clusterID {cluster} \
             --meshConfig {mesh} --grpcAddr {ip}:{plaintext} --secureGRPCAddr {ip}:{tls} \
             --httpsAddr {ip}:{webhook} --monitoringAddr {ip}:{monitoring} \
             --httpAddr {ip}:{http} --ctrlz_address {ip} --ctrlz_port {ctrlz} \
             --log_output_level default:warn",
            &v,
        )
        .map_err(|e| RealIstioError::step(&step("start pilot-discovery"), e))?;
        let mut istiod = Istiod {
            name: spec.name.clone(),
            ip: spec.ip,
            process,
        };
        match istiod.wait_ready().await {
            Ok(()) => Ok(istiod),
            Err(e) => {
                istiod.stop().await;
                Err(e)
            }
        }
    }

    /// Its TLS xDS address (15012), where istioctl and proxies ask.
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, TLS_PORT))
    }

    /// Its plaintext xDS address (15010).
    pub fn plaintext_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PLAINTEXT_PORT))
    }

    /// Freezes it (SIGSTOP): connections to it hang, nothing is refused or
    /// reset, as behind a partition or on a frozen node.
    pub fn freeze(&self) {
        self.process.signal(libc::SIGSTOP);
    }

    /// Lets it run again (SIGCONT).
    pub fn thaw(&self) {
        self.process.signal(libc::SIGCONT);
    }

    /// Its processes.
    pub fn pids(&self) -> Vec<i32> {
        self.process.pids()
    }

    /// The last lines it printed.
    pub fn output(&self, lines: usize) -> String {
        self.process.output.tail(lines)
    }

    async fn wait_ready(&mut self) -> Result<(), RealIstioError> {
        let deadline = Instant::now() + READY_BOUND;
        let addr = SocketAddr::from((self.ip, HTTP_PORT));
        let mut pause = Duration::from_millis(100);
        loop {
            let last = match http_status(addr, "/ready").await {
                Ok(200) => return Ok(()),
                Ok(code) => format!("/ready said {code}"),
                Err(e) => e,
            };
            let exited = self.process.exited();
            if Instant::now() >= deadline || exited.is_some() {
                self.process.drain_output(Duration::from_secs(2)).await;
                return Err(RealIstioError::NotServing {
                    what: format!("istiod {} on {}", self.name, self.ip),
                    bound: READY_BOUND,
                    last: exited.map(|s| format!("it exited: {s}")).unwrap_or(last),
                    output: self.process.output.tail(30),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    pub async fn stop(self) {
        self.process.stop(Duration::from_secs(5)).await;
    }
}

/// The status code of a plain HTTP/1.0 GET (istiod's readiness port).
pub(crate) async fn http_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        // "HTTP/1.1 200"
        std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("{addr}: not an HTTP answer"))
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}: no answer within 2s")))
}
