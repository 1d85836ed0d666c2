//! The running external control plane, as processes on loopback (clusters.md,
//! steps 1–5): two Kubernetes API servers (the external cluster, the remote
//! cluster), Istio's CRDs and the remote's objects, N istiod replicas sharing
//! one CA whose config cluster is the remote one, held by the external
//! cluster as Pods of an `istiod` Deployment with a Service, and the blog's
//! mesh (sleep and helloworld-v1 in `sample`, the ingress gateway) as Pods
//! whose sidecars are light ADS clients spread over the replicas.

use super::RealIstioError;
use super::agent::Agent;
use super::apiserver::{ApiServer, kubeconfig};
use super::binaries::Binaries;
use super::istiod::{Istiod, IstiodSpec};
use super::objects::{self, ISTIO_NAMESPACE, SAMPLE_NAMESPACE};
use super::service::ServiceAddress;
use super::sidecar::{Sidecar, SidecarSpec, Trust};
use cluster::kubeops;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The version `ci/real-istio-build.sh` stamps into istiod and istioctl
/// (`ISTIO_VERSION` there): what the light sidecars report and the pods'
/// image tags say.
pub const STAMPED_VERSION: &str = "1.32.0-dev";
/// The external cluster's name (kubeconfig context).
pub const EXTERNAL: &str = "external";
/// The remote cluster's name: the kubeconfig context, istiod's `CLUSTER_ID`.
pub const REMOTE: &str = "remote";
/// The name istiod's serving certificate always holds (it is dialled by IP).
pub fn istiod_server_name() -> String {
    cluster::live::istiod_server_name(ISTIO_NAMESPACE)
}

/// Bound of each API call batch and of the sidecars' first sync.
const STEP_BOUND: Duration = Duration::from_secs(60);
/// Attempts to start a real sidecar whose port was taken.
const AGENT_ATTEMPTS: u32 = 3;
/// Lifetime of the sidecars' tokens: longer than any run.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// What to start.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// istiod replicas (the guide's Deployment has 1; three show the fan-out).
    pub replicas: usize,
    /// Light sidecars beyond the blog's three (scale), spread over the replicas.
    pub extra_sidecars: usize,
    /// Where its files go; `None`: a temporary folder removed at stop.
    pub dir: Option<PathBuf>,
    /// The blog's three pods get real sidecars (pilot-agent + Envoy) when
    /// those are built; else (or `false`) light ones like the rest.
    pub real_sidecars: bool,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            replicas: 3,
            extra_sidecars: 0,
            dir: None,
            real_sidecars: true,
        }
    }
}

/// Says what is happening, with the time since the start.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// A random number for names and addresses (the standard library's
/// per-process random hash keys: enough for names on loopback).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// `n` random characters of the alphabet Kubernetes names pods with.
fn random_chars(n: usize) -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = random();
    (0..n)
        .map(|_| {
            let c = CHARS[(r % CHARS.len() as u64) as usize] as char;
            r /= CHARS.len() as u64;
            c
        })
        .collect()
}

/// A pod name as a Deployment's ReplicaSet makes them: `<prefix>-<5 chars>`.
fn pod_name(prefix: &str) -> String {
    format!("{prefix}-{}", random_chars(5))
}

/// The loopback addresses of one topology: `127.A.B.x` with A.B random, so
/// two topologies (tests side by side) do not meet. .1 external, .2 remote,
/// .11 and up the istiod replicas (a restart takes the next one).
#[derive(Debug)]
struct Addresses {
    a: u8,
    b: u8,
    next: Mutex<u8>,
}

impl Addresses {
    fn pick() -> Addresses {
        let r = random();
        Addresses {
            a: 100 + (r % 150) as u8,
            b: (r >> 8) as u8,
            next: Mutex::new(11),
        }
    }
    fn ip(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.a, self.b, last)
    }
    fn next_istiod(&self) -> Result<Ipv4Addr, RealIstioError> {
        let mut n = self
            .next
            .lock()
            .map_err(|_| RealIstioError::step("pick an address", "poisoned"))?;
        if *n == 254 {
            return Err(RealIstioError::step(
                "pick an address for a new replica",
                "no addresses left",
            ));
        }
        let ip = self.ip(*n);
        *n += 1;
        Ok(ip)
    }
}

/// The running topology. [`RealIstio::stop`] stops everything; dropping it
/// kills the processes (their process groups) and removes a temporary folder.
pub struct RealIstio {
    pub external: ApiServer,
    pub remote: ApiServer,
    /// One kubeconfig, contexts `external` and `remote` (current).
    pub kubeconfig: PathBuf,
    /// The mesh root (istiod's self-signed CA, from `istio-ca-secret`).
    pub mesh_root: String,
    /// The same, as a file.
    pub mesh_root_file: PathBuf,
    pub dir: PathBuf,
    bins: Binaries,
    istiods: tokio::sync::Mutex<Vec<Istiod>>,
    /// istiod's xDS request limit, raised for a large mesh of light sidecars.
    request_limit: Option<u32>,
    /// Where the sidecars connect (each to its slot in this list).
    targets: watch::Sender<Vec<SocketAddr>>,
    sidecars: Mutex<Vec<Sidecar>>,
    /// The real sidecars (pilot-agent + Envoy).
    agents: tokio::sync::Mutex<Vec<Agent>>,
    /// The `istiod` Service's address (the real sidecars' discovery address).
    service: Mutex<Option<ServiceAddress>>,
    addresses: Addresses,
    /// The pod-template hash in the istiod pods' names (one ReplicaSet).
    template_hash: String,
    started: Instant,
    _temp: Option<tempfile::TempDir>,
}

fn kube_step(step: &str) -> impl Fn(kubeops::KubeError) -> RealIstioError + '_ {
    move |e| RealIstioError::step(step, format!("{e} ({})", e.hint()))
}

impl RealIstio {
    /// Starts it all and waits until every sidecar is SYNCED.
    pub async fn start(
        options: &WorldOptions,
        progress: Progress<'_>,
    ) -> Result<RealIstio, RealIstioError> {
        let started = Instant::now();
        let say = |what: &str| {
            progress(&format!(
                "[{:>5.1}s] {what}",
                started.elapsed().as_secs_f64()
            ))
        };
        let bins = Binaries::find(&["etcd", "kube-apiserver", "pilot-discovery"])?;
        let (temp, dir) = match &options.dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .map_err(|e| RealIstioError::step(&format!("create {}", d.display()), e))?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("real-istio-")
                    .tempdir()
                    .map_err(|e| RealIstioError::step("create a temporary folder", e))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        crate::topology::process::remove_on_interrupt(&dir);
        let addresses = Addresses::pick();
        say(&format!(
            "starting the external and remote API servers (etcd + kube-apiserver) on {} and {}",
            addresses.ip(1),
            addresses.ip(2)
        ));
        let (external_dir, remote_dir) = (dir.join(EXTERNAL), dir.join(REMOTE));
        let (external, remote) = tokio::join!(
            ApiServer::start(&bins, EXTERNAL, addresses.ip(1), &external_dir),
            ApiServer::start(&bins, REMOTE, addresses.ip(2), &remote_dir),
        );
        let (external, remote) = match (external, remote) {
            (Ok(e), Ok(r)) => (e, r),
            (Ok(s), Err(e)) | (Err(e), Ok(s)) => {
                s.stop().await;
                return Err(e);
            }
            (Err(e), Err(_)) => return Err(e),
        };
        let kubeconfig_file = dir.join("kubeconfig");
        // istiod reads the current context: the remote, its config cluster.
        let text = kubeconfig(&[&remote, &external]);
        let (targets, _) = watch::channel(Vec::new());
        let world = RealIstio {
            external,
            remote,
            kubeconfig: kubeconfig_file.clone(),
            mesh_root: String::new(),
            mesh_root_file: dir.join("mesh-root.pem"),
            dir: dir.clone(),
            bins,
            istiods: tokio::sync::Mutex::new(Vec::new()),
            targets,
            sidecars: Mutex::new(Vec::new()),
            agents: tokio::sync::Mutex::new(Vec::new()),
            service: Mutex::new(None),
            addresses,
            template_hash: random_chars(10),
            request_limit: request_limit(options.extra_sidecars),
            started,
            _temp: temp,
        };
        // From here on, a failure stops what runs.
        match world.populate(options, &text, &say).await {
            Ok(root) => Ok(RealIstio {
                mesh_root: root,
                ..world
            }),
            Err(e) => {
                world.stop().await;
                Err(e)
            }
        }
    }

    /// Everything after the API servers; returns the mesh root.
    async fn populate(
        &self,
        options: &WorldOptions,
        kubeconfig_text: &str,
        say: &(dyn Fn(&str) + Sync),
    ) -> Result<String, RealIstioError> {
        std::fs::write(&self.kubeconfig, kubeconfig_text)
            .map_err(|e| RealIstioError::step("write the kubeconfig", e))?;
        let remote = self.remote.client()?;
        let external = self.external.client()?;

        say("remote cluster: Istio's CRDs, namespaces, service accounts, mesh config");
        let crds_file = self.bins.dir.join("../istio-crds.yaml");
        let crds = std::fs::read_to_string(&crds_file).map_err(|e| {
            RealIstioError::step(
                &format!(
                    "read Istio's CRDs at {} (written by `{}`)",
                    crds_file.display(),
                    super::binaries::BUILD
                ),
                e,
            )
        })?;
        let mut docs = cluster::manifests::parse_yaml_docs("istio-crds.yaml", &crds)
            .map_err(|e| RealIstioError::step("parse Istio's CRDs", e))?;
        let mesh = mesh_config();
        docs.extend([
            objects::namespace(ISTIO_NAMESPACE),
            objects::namespace(SAMPLE_NAMESPACE),
            objects::mesh_config_map(ISTIO_NAMESPACE, &mesh),
        ]);
        for (ns, sa) in [
            (ISTIO_NAMESPACE, "default"),
            (ISTIO_NAMESPACE, "istiod"),
            (ISTIO_NAMESPACE, "istio-ingressgateway-service-account"),
            (SAMPLE_NAMESPACE, "default"),
            (SAMPLE_NAMESPACE, "sleep"),
            (SAMPLE_NAMESPACE, "helloworld"),
        ] {
            docs.push(objects::service_account(ns, sa));
        }
        kubeops::apply_documents(&remote, &docs, None, STEP_BOUND)
            .await
            .map_err(kube_step("apply Istio's CRDs and the remote's objects"))?;

        say("external cluster: namespace, istiod's Deployment and Service");
        let docs = vec![
            objects::namespace(ISTIO_NAMESPACE),
            objects::service_account(ISTIO_NAMESPACE, "istiod"),
            objects::istiod_deployment(ISTIO_NAMESPACE, options.replicas, STAMPED_VERSION),
            objects::istiod_service(ISTIO_NAMESPACE),
        ];
        kubeops::apply_documents(&external, &docs, None, STEP_BOUND)
            .await
            .map_err(kube_step("apply the external cluster's objects"))?;

        // The first replica writes the CA (istio-ca-secret); the rest read it.
        let n = options.replicas.max(1);
        say(&format!("istiod 1/{n} (it creates the mesh CA)"));
        self.start_istiod(&external).await?;
        if n > 1 {
            say(&format!("istiod 2..{n}/{n}"));
            let rest: Vec<_> = (1..n).map(|_| self.start_istiod(&external)).collect();
            for r in futures::future::join_all(rest).await {
                r?;
            }
        }
        let root = mesh_root(&remote).await?;
        std::fs::write(&self.mesh_root_file, &root)
            .map_err(|e| RealIstioError::step("write the mesh root", e))?;

        let service = ServiceAddress::start(
            SocketAddr::from((self.addresses.ip(10), super::istiod::TLS_PORT)),
            self.targets.subscribe(),
        )
        .await?;
        let service_addr = service.addr;
        if let Ok(mut s) = self.service.lock() {
            *s = Some(service);
        }

        let agents_bins = options
            .real_sidecars
            .then(|| Binaries::find(&["pilot-agent", "envoy"]).ok())
            .flatten()
            .filter(|b| b.dir.join(super::agent::BOOTSTRAP).is_file());
        // With real sidecars (their replica is the Service's choice), one
        // light sidecar per replica too: every replica owns a proxy.
        let light = options.extra_sidecars + if agents_bins.is_some() { n } else { 0 };
        let mut specs = mesh_sidecars(light);
        let real: Vec<SidecarSpec> = match &agents_bins {
            Some(_) => specs.drain(..BLOG_PODS.min(specs.len())).collect(),
            None => Vec::new(),
        };
        say(&format!(
            "the mesh: {} pods in the remote cluster; {} real sidecars (pilot-agent + Envoy) through the istiod Service {service_addr}, {} light ones on {} replicas{}",
            real.len() + specs.len(),
            real.len(),
            specs.len(),
            n.min(specs.len()),
            if agents_bins.is_none() && options.real_sidecars {
                " (no real ones: pilot-agent, envoy or the bootstrap template not built)"
            } else {
                ""
            }
        ));
        let all: Vec<SidecarSpec> = real.iter().chain(specs.iter()).cloned().collect();
        self.apply_mesh(&remote, &all).await?;
        let mut tokens = Tokens::new(&remote);
        self.start_light_sidecars(specs, &root, &mut tokens).await?;
        if let Some(bins) = &agents_bins {
            self.start_agents(bins, real, service_addr, &root, &mut tokens)
                .await?;
        }
        say("every sidecar SYNCED");
        Ok(root)
    }

    /// The light sidecars, each on its slot among the replicas; returns once
    /// every one has ACKed CDS and LDS.
    async fn start_light_sidecars(
        &self,
        specs: Vec<SidecarSpec>,
        root: &str,
        tokens: &mut Tokens<'_>,
    ) -> Result<(), RealIstioError> {
        let trust = Trust {
            ca_pem: root.to_string(),
            server_name: istiod_server_name(),
        };
        let mut sidecars = Vec::new();
        for (slot, spec) in specs.into_iter().enumerate() {
            let token = tokens.get(&spec).await?;
            sidecars.push(Sidecar::start(
                self.targets.subscribe(),
                slot,
                trust.clone(),
                token,
                spec,
            ));
        }
        let waits = sidecars.iter_mut().map(|s| s.synced(STEP_BOUND));
        for r in futures::future::join_all(waits).await {
            r?;
        }
        if let Ok(mut s) = self.sidecars.lock() {
            *s = sidecars;
        }
        Ok(())
    }

    /// The real sidecars (pilot-agent + Envoy), through the istiod Service's
    /// address; returns once each agent says Envoy is ready.
    async fn start_agents(
        &self,
        bins: &Binaries,
        specs: Vec<SidecarSpec>,
        service_addr: SocketAddr,
        root: &str,
        tokens: &mut Tokens<'_>,
    ) -> Result<(), RealIstioError> {
        for spec in specs {
            let token = tokens.get(&spec).await?;
            let dir = self
                .dir
                .join(format!("sidecar-{}.{}", spec.pod, spec.namespace));
            // Its ports are picked free, then bound by pilot-agent and Envoy
            // a moment later: another process may take one in between. Then
            // a new pair, a few times.
            let mut attempt = 1;
            let agent = loop {
                let ports = (free_local_port()?, free_local_port()?);
                match Agent::start(
                    bins,
                    &spec,
                    service_addr,
                    &istiod_server_name(),
                    &token,
                    root,
                    ports,
                    &dir,
                )
                .await
                {
                    Ok(a) => break a,
                    Err(e)
                        if attempt < AGENT_ATTEMPTS
                            && e.to_string().contains(super::agent::PORT_TAKEN) =>
                    {
                        tracing::warn!(sidecar = %spec.node_id(), error = %e, "a port was taken; again with new ports");
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            };
            self.agents.lock().await.push(agent);
        }
        Ok(())
    }

    /// Starts one replica under a new pod name on the next address, creates
    /// its Pod in the external cluster and writes its status once istiod is
    /// ready; the sidecars' targets then include it.
    async fn start_istiod(
        &self,
        external: &kube::Client,
    ) -> Result<(String, SocketAddr), RealIstioError> {
        let name = pod_name(&format!("istiod-{}", self.template_hash));
        let ip = self.addresses.next_istiod()?;
        let spec = IstiodSpec {
            name: name.clone(),
            namespace: ISTIO_NAMESPACE.to_string(),
            ip,
            cluster_id: REMOTE.to_string(),
            kubeconfig: self.kubeconfig.clone(),
            request_limit: self.request_limit,
        };
        let pod = objects::istiod_pod(ISTIO_NAMESPACE, &name, STAMPED_VERSION);
        kubeops::apply_documents(external, &[pod], None, STEP_BOUND)
            .await
            .map_err(kube_step("create an istiod pod"))?;
        let istiod = Istiod::start(&self.bins, &spec, &self.dir.join(&name)).await?;
        let addr = istiod.tls_addr();
        kubeops::write_pod_running(external, ISTIO_NAMESPACE, &name, &ip.to_string())
            .await
            .map_err(kube_step("write an istiod pod's status"))?;
        let mut istiods = self.istiods.lock().await;
        istiods.push(istiod);
        self.publish(&istiods);
        Ok((name, addr))
    }

    fn publish(&self, istiods: &[Istiod]) {
        let addrs: Vec<SocketAddr> = istiods.iter().map(Istiod::tls_addr).collect();
        self.targets.send_replace(addrs);
    }

    /// The blog's pods (and the extra ones) with their status, Services and
    /// EndpointSlices.
    async fn apply_mesh(
        &self,
        remote: &kube::Client,
        specs: &[SidecarSpec],
    ) -> Result<(), RealIstioError> {
        let mut docs = Vec::new();
        let mut by_app: std::collections::BTreeMap<(String, String), Vec<(String, String)>> =
            Default::default();
        for s in specs {
            docs.push(objects::workload_pod(
                &s.namespace,
                &s.pod,
                &s.app,
                &s.service_account,
            ));
            by_app
                .entry((s.namespace.clone(), s.app.clone()))
                .or_default()
                .push((s.pod.clone(), s.ip.to_string()));
        }
        for ((ns, app), pods) in &by_app {
            docs.push(objects::workload_service(ns, app, 5000));
            docs.extend(objects::endpoint_slices(ns, app, 5000, pods));
        }
        kubeops::apply_documents(remote, &docs, None, STEP_BOUND)
            .await
            .map_err(kube_step("apply the mesh's pods and services"))?;
        let ips: Vec<String> = specs.iter().map(|s| s.ip.to_string()).collect();
        let writes = specs
            .iter()
            .zip(&ips)
            .map(|(s, ip)| kubeops::write_pod_running(remote, &s.namespace, &s.pod, ip));
        for r in futures::future::join_all(writes).await {
            r.map_err(kube_step("write a pod's status"))?;
        }
        Ok(())
    }

    /// The replicas now: (pod name, TLS xDS address), in start order.
    pub async fn replicas(&self) -> Vec<(String, SocketAddr)> {
        self.istiods
            .lock()
            .await
            .iter()
            .map(|i| (i.name.clone(), i.tls_addr()))
            .collect()
    }

    /// Restarts a replica as a Deployment would: its process stops and its
    /// Pod goes; a successor under a new name, on a new address, starts and
    /// becomes Ready. Its sidecars reconnect (to the successor). Returns the
    /// successor's name and address.
    pub async fn restart(&self, name: &str) -> Result<(String, SocketAddr), RealIstioError> {
        self.remove(name).await?;
        self.add().await
    }

    /// Removes a replica as a Deployment scaled down does: its process stops
    /// and its Pod goes; its sidecars reconnect to the others.
    pub async fn remove(&self, name: &str) -> Result<(), RealIstioError> {
        let external = self.external.client()?;
        let old = {
            let mut istiods = self.istiods.lock().await;
            let at = istiods.iter().position(|i| i.name == name).ok_or_else(|| {
                RealIstioError::step(&format!("remove {name}"), "no such replica")
            })?;
            let old = istiods.remove(at);
            self.publish(&istiods);
            old
        };
        old.stop().await;
        kubeops::delete_pod(&external, ISTIO_NAMESPACE, name)
            .await
            .map_err(kube_step("delete the removed pod"))
    }

    /// Adds a replica as a Deployment scaled up does: a new pod name and
    /// address; returns them once it is Ready.
    pub async fn add(&self) -> Result<(String, SocketAddr), RealIstioError> {
        let external = self.external.client()?;
        self.start_istiod(&external).await
    }

    /// Freezes a replica (or lets it run again): its connections hang, as
    /// behind a network partition; its pod stays listed, as it does until
    /// Kubernetes' node controller notices (40 s and more).
    pub async fn freeze(&self, name: &str, frozen: bool) -> Result<(), RealIstioError> {
        let istiods = self.istiods.lock().await;
        let i = istiods
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| RealIstioError::step(&format!("freeze {name}"), "no such replica"))?;
        if frozen {
            i.freeze()
        } else {
            i.thaw()
        }
        Ok(())
    }

    /// The resident memory of every process of the topology (API servers,
    /// etcd, istiod, pilot-agents and Envoys), in bytes; the light sidecars
    /// live in this process.
    pub async fn rss_bytes(&self) -> u64 {
        let mut pids = self.external.pids();
        pids.extend(self.remote.pids());
        for i in self.istiods.lock().await.iter() {
            pids.extend(i.pids());
        }
        for a in self.agents.lock().await.iter() {
            pids.extend(a.pids());
        }
        pids.iter().map(|p| rss_of(*p)).sum()
    }

    /// How many sidecars the mesh has (real and light).
    pub async fn sidecars(&self) -> usize {
        self.sidecars.lock().map(|s| s.len()).unwrap_or(0) + self.agents.lock().await.len()
    }

    /// The real sidecars' node ids and Envoy admin addresses.
    pub async fn real_sidecars(&self) -> Vec<(String, SocketAddr)> {
        self.agents
            .lock()
            .await
            .iter()
            .map(|a| (a.node_id.clone(), a.admin))
            .collect()
    }

    /// How long it has been running.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The last lines every istiod printed (for a failure's message).
    pub async fn istiod_output(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in self.istiods.lock().await.iter() {
            out.push_str(&format!("istiod {}:\n{}\n", i.name, i.output(lines)));
        }
        out
    }

    /// Stops the sidecars, the replicas, then the API servers.
    pub async fn stop(self) {
        for i in self.istiods.lock().await.iter() {
            i.thaw();
        }
        let agents = std::mem::take(&mut *self.agents.lock().await);
        futures::future::join_all(agents.into_iter().map(Agent::stop)).await;
        if let Ok(mut s) = self.sidecars.lock() {
            s.clear();
        }
        if let Ok(mut s) = self.service.lock() {
            s.take();
        }
        let istiods = std::mem::take(&mut *self.istiods.lock().await);
        futures::future::join_all(istiods.into_iter().map(Istiod::stop)).await;
        tokio::join!(self.external.stop(), self.remote.stop());
        crate::topology::process::forget_on_interrupt(&self.dir);
        // A temporary folder goes when `_temp` drops, here.
    }
}

/// istiod's limit on new xDS requests per second for a mesh with `extra`
/// light sidecars: its default (25 on 2 cores) up to 100; above, one per
/// two sidecars. With the default, a thousand sidecars reconnecting after a
/// restart keep a replica refusing every new stream, the proxy's debug
/// requests included, with ResourceExhausted ("request rate limit exceeded")
/// for seconds: real istiod behaviour, but not what the checks measure.
fn request_limit(extra: usize) -> Option<u32> {
    (extra > 100).then(|| u32::try_from(extra / 2).unwrap_or(u32::MAX))
}

/// Pods' tokens (audience `istio-ca`) from the remote TokenRequest API, one
/// per service account.
struct Tokens<'a> {
    remote: &'a kube::Client,
    minted: std::collections::BTreeMap<(String, String), String>,
}

impl<'a> Tokens<'a> {
    fn new(remote: &'a kube::Client) -> Self {
        Tokens {
            remote,
            minted: Default::default(),
        }
    }

    async fn get(&mut self, spec: &SidecarSpec) -> Result<String, RealIstioError> {
        let key = (spec.namespace.clone(), spec.service_account.clone());
        if let Some(t) = self.minted.get(&key) {
            return Ok(t.clone());
        }
        let t = kubeops::token_request(
            self.remote,
            &key.0,
            &key.1,
            crate::topology::cluster::AUDIENCE,
            TOKEN_TTL,
        )
        .await
        .map_err(kube_step("mint a sidecar's token"))?;
        self.minted.insert(key, t.clone());
        Ok(t)
    }
}

/// VmRSS of one process, in bytes (0 when it is gone).
fn rss_of(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The mesh config: the external control plane's root namespace is istiod's
/// (clusters.md step 4, `meshConfig.rootNamespace`).
fn mesh_config() -> String {
    format!("rootNamespace: {ISTIO_NAMESPACE}\ntrustDomain: cluster.local\n")
}

/// The blog's pods (the first of [`mesh_sidecars`]).
const BLOG_PODS: usize = 3;

/// A port free on every address (pilot-agent binds its status port on all
/// of them: a port free on 127.0.0.1 alone may be another address's).
fn free_local_port() -> Result<u16, RealIstioError> {
    super::apiserver::free_port(Ipv4Addr::UNSPECIFIED)
}

/// The blog's mesh: sleep and helloworld-v1 in `sample`, the ingress gateway
/// in istiod's namespace; then `extra` more helloworld pods.
pub fn mesh_sidecars(extra: usize) -> Vec<SidecarSpec> {
    let spec =
        |pod: String, ns: &str, sa: &str, app: &str, i: usize, node_type: &str| SidecarSpec {
            pod,
            namespace: ns.to_string(),
            service_account: sa.to_string(),
            ip: Ipv4Addr::new(10, 244, (i / 250) as u8, (i % 250) as u8 + 2),
            cluster_id: REMOTE.to_string(),
            istio_version: STAMPED_VERSION.to_string(),
            app: app.to_string(),
            node_type: node_type.to_string(),
        };
    let mut out = vec![
        spec(
            pod_name("sleep-7b9f8c5d4"),
            SAMPLE_NAMESPACE,
            "sleep",
            "sleep",
            0,
            "sidecar",
        ),
        spec(
            pod_name("helloworld-v1-6d6d8f7b9"),
            SAMPLE_NAMESPACE,
            "helloworld",
            "helloworld",
            1,
            "sidecar",
        ),
        spec(
            pod_name("istio-ingressgateway-5c8d9f7b6"),
            ISTIO_NAMESPACE,
            "istio-ingressgateway-service-account",
            "istio-ingressgateway",
            2,
            "router",
        ),
    ];
    for i in 0..extra {
        out.push(spec(
            format!("helloworld-load-{i:05}"),
            SAMPLE_NAMESPACE,
            "helloworld",
            "helloworld",
            3 + i,
            "sidecar",
        ));
    }
    out
}

/// The mesh's root certificate: istiod's self-signed CA, which the first
/// replica writes to `istio-ca-secret` in its namespace of the config cluster.
async fn mesh_root(client: &kube::Client) -> Result<String, RealIstioError> {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), ISTIO_NAMESPACE);
    let step = "read the mesh root (istio-ca-secret, key ca-cert.pem)";
    let secret = secrets
        .get("istio-ca-secret")
        .await
        .map_err(|e| RealIstioError::step(step, e))?;
    let pem = secret
        .data
        .and_then(|d| d.get("ca-cert.pem").cloned())
        .ok_or_else(|| RealIstioError::step(step, "no ca-cert.pem"))?;
    String::from_utf8(pem.0).map_err(|e| RealIstioError::step(step, e))
}
