//! A real Kubernetes API server as processes on loopback: etcd and
//! kube-apiserver (built by `ci/real-istio-build.sh`), with a CA of its own,
//! a static admin token, and a service-account issuer so that TokenRequest
//! and TokenReview work (the flags controller-runtime's envtest sets). No
//! kubelet and no controllers run: whoever needs a pod's status writes it.

use super::RealIstioError;
use super::binaries::Binaries;
use crate::topology::process::{Placeholders, ProxyProcess};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long etcd and kube-apiserver may take to serve (about 3 s here).
pub const START_BOUND: Duration = Duration::from_secs(60);

/// The service-account issuer both clusters use (istiod checks a token's
/// issuer through the API server's TokenReview, not by itself).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// One running API server.
pub struct ApiServer {
    /// The cluster's name (the kubeconfig context, istiod's cluster id).
    pub name: String,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The CA that signs its serving certificate.
    pub ca_pem: String,
    /// A bearer token in `system:masters`.
    pub admin_token: String,
    etcd: ProxyProcess,
    apiserver: ProxyProcess,
    dir: PathBuf,
}

pub(super) fn free_port(ip: Ipv4Addr) -> Result<u16, RealIstioError> {
    let l = std::net::TcpListener::bind(SocketAddr::from((ip, 0)))
        .map_err(|e| RealIstioError::step("find a free port", e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| RealIstioError::step("find a free port", e))
}

fn write(path: &Path, text: &str) -> Result<(), RealIstioError> {
    fake_istiod::tls::write_private(path, text)
        .map_err(|e| RealIstioError::step(&format!("write {}", path.display()), e))
}

impl ApiServer {
    /// Starts etcd and kube-apiserver for cluster `name` in `dir` (its data,
    /// certificates and keys), listening on `ip`, and waits until it serves.
    pub async fn start(
        bins: &Binaries,
        name: &str,
        ip: Ipv4Addr,
        dir: &Path,
    ) -> Result<ApiServer, RealIstioError> {
        let step = |what: &str| format!("{name} API server: {what}");
        std::fs::create_dir_all(dir)
            .map_err(|e| RealIstioError::step(&step("create its folder"), e))?;
        // Its own CA, and a serving certificate for the loopback address.
        let ca_key = rcgen::KeyPair::generate()
            .map_err(|e| RealIstioError::step(&step("generate a CA key"), e))?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| RealIstioError::step(&step("CA parameters"), e))?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name}-ca"));
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)
            .map_err(|e| RealIstioError::step(&step("sign the CA"), e))?;
        let key = rcgen::KeyPair::generate()
            .map_err(|e| RealIstioError::step(&step("generate a serving key"), e))?;
        let params = rcgen::CertificateParams::new(vec![
            ip.to_string(),
            "localhost".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .map_err(|e| RealIstioError::step(&step("serving certificate parameters"), e))?;
        let serving = params
            .signed_by(&key, &ca)
            .map_err(|e| RealIstioError::step(&step("sign the serving certificate"), e))?;
        let sa_key = rcgen::KeyPair::generate()
            .map_err(|e| RealIstioError::step(&step("generate the service-account key"), e))?;
        // Random enough for a token that only ever crosses loopback: the
        // standard library's per-process random hash keys.
        let admin_token = {
            use std::hash::{BuildHasher, Hasher};
            let h = std::collections::hash_map::RandomState::new().build_hasher();
            format!("admin-{:016x}", h.finish())
        };
        let f = |n: &str| dir.join(n);
        write(&f("ca.crt"), &ca.pem())?;
        write(&f("serving.crt"), &serving.pem())?;
        write(&f("serving.key"), &key.serialize_pem())?;
        write(&f("sa.key"), &sa_key.serialize_pem())?;
        // The verifying side wants a public key (it reads no PKCS#8 private key).
        write(&f("sa.pub"), &sa_key.public_key_pem())?;
        write(
            &f("tokens.csv"),
            &format!("{admin_token},admin,admin,system:masters\n"),
        )?;

        let etcd_port = free_port(ip)?;
        let peer_port = free_port(ip)?;
        let mut v = Placeholders::new();
        v.insert("etcd", bins.path("etcd").display().to_string());
        v.insert("data", f("etcd").display().to_string());
        v.insert("client", format!("http://{ip}:{etcd_port}"));
        v.insert("peer", format!("http://{ip}:{peer_port}"));
        v.insert("name", name.to_string());
        let etcd = ProxyProcess::spawn(
            "exec {etcd} --name {name} --data-dir {data} --listen-client-urls {client} \
             --advertise-client-urls {client} --listen-peer-urls {peer} \
             --initial-advertise-peer-urls {peer} --initial-cluster {name}={peer} \
             --log-level warn",
            &v,
        )
        .map_err(|e| RealIstioError::step(&step("start etcd"), e))?;

        let port = free_port(ip)?;
        let mut v = Placeholders::new();
        v.insert("bin", bins.path("kube-apiserver").display().to_string());
        v.insert("etcd", format!("http://{ip}:{etcd_port}"));
        v.insert("ip", ip.to_string());
        v.insert("port", port.to_string());
        v.insert("dir", dir.display().to_string());
        v.insert("issuer", ISSUER.to_string());
        let apiserver = match ProxyProcess::spawn(
            "exec {bin} --etcd-servers={etcd} --bind-address={ip} --advertise-address={ip} \
             --secure-port={port} --tls-cert-file={dir}/serving.crt \
             --tls-private-key-file={dir}/serving.key --client-ca-file={dir}/ca.crt \
             --token-auth-file={dir}/tokens.csv --authorization-mode=RBAC \
             --service-account-issuer={issuer} --service-account-key-file={dir}/sa.pub \
             --service-account-signing-key-file={dir}/sa.key \
             --api-audiences={issuer},istio-ca --service-cluster-ip-range=10.96.0.0/16 \
             --allow-privileged=true --disable-admission-plugins=ServiceAccount \
             --cert-dir={dir}/cert-dir",
            &v,
        ) {
            Ok(p) => p,
            Err(e) => {
                etcd.stop(Duration::from_secs(3)).await;
                return Err(RealIstioError::step(&step("start kube-apiserver"), e));
            }
        };
        let server = ApiServer {
            name: name.to_string(),
            url: format!("https://{ip}:{port}"),
            ca_pem: ca.pem(),
            admin_token,
            etcd,
            apiserver,
            dir: dir.to_path_buf(),
        };
        let mut server = server;
        match server.wait_serving().await {
            Ok(()) => Ok(server),
            Err(e) => {
                server.stop().await;
                Err(e)
            }
        }
    }

    /// A client as the admin.
    pub fn client(&self) -> Result<kube::Client, RealIstioError> {
        let url = self
            .url
            .parse()
            .map_err(|e| RealIstioError::step(&format!("{} API server URL", self.name), e))?;
        let mut config = kube::Config::new(url);
        config.root_cert = Some(vec![pem_der(&self.ca_pem)]);
        config.auth_info.token = Some(self.admin_token.clone().into());
        kube::Client::try_from(config)
            .map_err(|e| RealIstioError::step(&format!("{} API server client", self.name), e))
    }

    /// Waits (bounded) until `/version` answers; says what the processes
    /// printed when it does not.
    async fn wait_serving(&mut self) -> Result<(), RealIstioError> {
        let client = self.client()?;
        let deadline = Instant::now() + START_BOUND;
        let mut pause = Duration::from_millis(50);
        loop {
            let last = match client.apiserver_version().await {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            };
            let exited = [self.etcd.exited(), self.apiserver.exited()];
            if Instant::now() >= deadline || exited.iter().any(Option::is_some) {
                let last = match exited {
                    [Some(s), _] => format!("etcd exited: {s}"),
                    [_, Some(s)] => format!("kube-apiserver exited: {s}"),
                    _ => last,
                };
                self.etcd.drain_output(Duration::from_secs(2)).await;
                self.apiserver.drain_output(Duration::from_secs(2)).await;
                return Err(RealIstioError::NotServing {
                    what: format!("the {} API server at {}", self.name, self.url),
                    bound: START_BOUND,
                    last,
                    output: format!(
                        "etcd:\n{}\nkube-apiserver:\n{}",
                        self.etcd.output.tail(15),
                        self.apiserver.output.tail(25)
                    ),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// The kubeconfig entries of this cluster (context, cluster and user all
    /// named after it).
    pub fn kubeconfig_entries(&self) -> (String, String, String) {
        let ca = self.dir.join("ca.crt");
        let n = &self.name;
        (
            format!(
                "- name: {n}\n  cluster:\n    server: {}\n    certificate-authority: {}\n",
                self.url,
                ca.display()
            ),
            format!("- name: {n}\n  user:\n    token: {}\n", self.admin_token),
            format!("- name: {n}\n  context:\n    cluster: {n}\n    user: {n}\n"),
        )
    }

    /// Its processes (etcd's and kube-apiserver's).
    pub fn pids(&self) -> Vec<i32> {
        let mut p = self.etcd.pids();
        p.extend(self.apiserver.pids());
        p
    }

    /// Where its files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops kube-apiserver, then etcd.
    pub async fn stop(self) {
        self.apiserver.stop(Duration::from_secs(5)).await;
        self.etcd.stop(Duration::from_secs(5)).await;
    }
}

/// The DER of the first certificate in a PEM text.
fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .unwrap_or_default()
}

/// One kubeconfig with a context for each cluster; the first is current.
pub fn kubeconfig(servers: &[&ApiServer]) -> String {
    let (mut clusters, mut users, mut contexts) = (String::new(), String::new(), String::new());
    for s in servers {
        let (c, u, x) = s.kubeconfig_entries();
        clusters.push_str(&c);
        users.push_str(&u);
        contexts.push_str(&x);
    }
    let current = servers.first().map(|s| s.name.as_str()).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: {current}\nclusters:\n{clusters}users:\n{users}contexts:\n{contexts}"
    )
}
