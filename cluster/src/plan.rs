//! The ordered steps of `cluster up` / `walkthrough` / `down`, as data: every
//! command with its argv and env, every file and manifest, every wait with its
//! bound. `cluster plan` prints it; the executor runs it.
use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::istio::{IstioVersion, Switches};
use crate::manifests::{self, CONTROL_PLANE_NS, Manifest, ManifestError};
use crate::provider::{DOCKER_NETWORK, Provider, Role, argv};

/// Which aggregating proxy is deployed next to the external istiod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChoice {
    /// The image built from `istioctl-proxy/` (`istioctl-proxy/build-image.sh`), loaded into the cluster.
    Reference { image: String },
    /// The seed's istioctl-proxy-sample manifest, applied as the blog applies it.
    Sample,
    /// The user's manifest and image.
    Manifest { file: String, image: String },
}

/// The reference image tag: never `:latest` (that implies imagePullPolicy Always; clusters.md).
pub const REFERENCE_IMAGE: &str = "istioctl-proxy:conformance";

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub provider: Provider,
    pub istio: IstioVersion,
    pub proxy: ProxyChoice,
    pub replicas: u32,
    /// Where files, the istioctl download and logs go (default `target/cluster`).
    pub work_dir: String,
    /// How many times workloads are re-rolled until at least two istiod replicas own proxies.
    pub max_rerolls: u32,
}

impl PlanOptions {
    pub fn new(provider: Provider, istio: IstioVersion) -> Self {
        Self {
            provider,
            istio,
            proxy: ProxyChoice::Reference {
                image: REFERENCE_IMAGE.into(),
            },
            replicas: 3,
            work_dir: "target/cluster".into(),
            max_rerolls: 5,
        }
    }
}

/// How a manifest reaches the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplySource {
    /// Rendered by this crate (printed in full by the plan).
    Rendered(Manifest),
    /// A file written by an earlier step (e.g. `istioctl manifest generate` output).
    File {
        path: String,
        label_selector: Option<String>,
    },
    /// Downloaded (the blog applies the sample proxy by URL).
    Url(String),
}

/// What a wait waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Until {
    /// Every CustomResourceDefinition in the file has condition Established.
    CrdsEstablished { from: String },
    /// `availableReplicas >= replicas` and the rollout is observed (not `is_deployment_completed`).
    DeploymentAvailable {
        namespace: String,
        name: String,
        replicas: u32,
    },
    /// Every pod matching the selector is Ready with `containers` containers (2 = sidecar injected).
    PodsReady {
        namespace: String,
        selector: String,
        containers: u32,
    },
    /// The webhook configuration's caBundle is set (the external istiod patched it).
    WebhookCaBundle { name: String },
}

/// A value found at run time, stored in a `${VAR}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The docker network's IPv4 subnet, split into one MetalLB pool per cluster at its end.
    MetallbPools { network: String },
    /// `status.loadBalancer.ingress[0].ip` of a Service.
    LoadBalancerIp { namespace: String, service: String },
    /// The control-plane container's IP on the docker network (`docker inspect`).
    ContainerIp { container: String, network: String },
    /// A root CA + intermediate (the `cacerts` layout) and the proxy's TLS pair, generated locally.
    GeneratedCerts,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A CLI through tokio::process, killed at the bound. `stdout_to`: file that keeps its output.
    Run {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        stdout_to: Option<String>,
        timeout: Duration,
    },
    /// Download and unpack (cached: skipped when `creates` exists).
    Download {
        url: String,
        into: String,
        creates: String,
        timeout: Duration,
    },
    /// A file the next commands read (IstioOperator, kind config).
    WriteFile { manifest: Manifest, path: String },
    /// Server-side apply with strict field validation; CRDs first and Established before the rest.
    Apply {
        cluster: Role,
        namespace: Option<String>,
        source: ApplySource,
        timeout: Duration,
    },
    Wait {
        cluster: Role,
        until: Until,
        timeout: Duration,
    },
    Resolve {
        vars: Vec<String>,
        lookup: Lookup,
        cluster: Option<Role>,
        timeout: Duration,
    },
    /// Pod port-forward (kube `ws`) to a pod behind a Service, kept until the run ends.
    PortForward {
        cluster: Role,
        namespace: String,
        service: String,
        local: u16,
        remote: u16,
    },
    /// Ask each istiod pod directly how many proxies it owns (`/debug/syncz`); re-roll the sample workloads (bounded)
    /// until at least `min_owners` replicas own proxies (sharding is not guaranteed: clusters.md).
    MeasureSharding {
        min_owners: u32,
        max_rerolls: u32,
        per_roll_timeout: Duration,
    },
    /// Compare istioctl's table with a live snapshot of the remote cluster: every ISTIOD `<external>`,
    /// rows exactly the remote pods that carry a sidecar.
    CompareTable { table_from: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The phase, named as the guide / blog names it.
    pub phase: &'static str,
    pub name: String,
    /// Where this step comes from.
    pub source: &'static str,
    /// On which cluster (None: the host).
    pub cluster: Option<Role>,
    /// Steps of one group run concurrently (cluster creation).
    pub parallel: Option<&'static str>,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub options: PlanOptions,
    pub switches: Switches,
    pub up: Vec<Step>,
    pub walkthrough: Vec<Step>,
    pub down: Vec<Step>,
    /// What to do with the logs when a step fails.
    pub on_failure: Vec<Step>,
}

/// The blog's section that prints the table.
pub const PROXY_STATUS_PHASE: &str = "Run the istioctl proxy-status command";

const GUIDE: &str = "seeds/install-external-controlplane.md";
const BLOG: &str = "seeds/blog-istioctl-remote-cluster.md";
const CLUSTERS: &str = "shared/docs/clusters.md";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct Builder<'a> {
    o: &'a PlanOptions,
    steps: Vec<Step>,
    phase: &'static str,
    source: &'static str,
}

impl Builder<'_> {
    fn phase(&mut self, phase: &'static str, source: &'static str) {
        self.phase = phase;
        self.source = source;
    }
    fn push(&mut self, name: impl Into<String>, cluster: Option<Role>, action: Action) {
        self.steps.push(Step {
            phase: self.phase,
            name: name.into(),
            source: self.source,
            cluster,
            parallel: None,
            action,
        });
    }
    fn run(
        &mut self,
        name: impl Into<String>,
        cluster: Option<Role>,
        argv: Vec<String>,
        timeout: u64,
    ) {
        self.push(
            name,
            cluster,
            Action::Run {
                argv,
                env: vec![],
                stdout_to: None,
                timeout: secs(timeout),
            },
        );
    }
    fn apply(&mut self, name: impl Into<String>, cluster: Role, m: Manifest) {
        self.push(
            name,
            Some(cluster),
            Action::Apply {
                cluster,
                namespace: None,
                source: ApplySource::Rendered(m),
                timeout: secs(60),
            },
        );
    }
    fn wait(&mut self, name: impl Into<String>, cluster: Role, until: Until, timeout: u64) {
        self.push(
            name,
            Some(cluster),
            Action::Wait {
                cluster,
                until,
                timeout: secs(timeout),
            },
        );
    }
    fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.o.work_dir)
    }
    fn istioctl(&self) -> String {
        format!("{}/istio-{}/bin/istioctl", self.o.work_dir, self.o.istio)
    }
    fn write(&mut self, m: Manifest) {
        let path = self.file(&m.file);
        self.push(
            format!("write {}", m.file),
            None,
            Action::WriteFile { manifest: m, path },
        );
    }
}

impl Plan {
    pub fn build(o: &PlanOptions) -> Result<Plan, ManifestError> {
        let v = o.istio;
        let sw = v.switches();
        let p = &o.provider;
        let ctx = |r: Role| format!("--context={}", p.context(r));
        let mut b = Builder {
            o,
            steps: vec![],
            phase: "",
            source: "",
        };

        // ------------------------------------------------------------ clusters
        if p.creates_clusters() {
            b.phase("Create the clusters", CLUSTERS);
            for role in Role::BOTH {
                if *p == Provider::Kind {
                    b.write(manifests::kind_config(role, &sw)?);
                }
            }
            if *p == Provider::K3d {
                // kind makes its network itself; k3d joins an existing one.
                b.run(
                    format!("docker network {DOCKER_NETWORK} (shared by both clusters)"),
                    None,
                    argv(&["sh", "-c", &format!("docker network inspect {DOCKER_NETWORK} >/dev/null 2>&1 || docker network create {DOCKER_NETWORK}")]),
                    30,
                );
            }
            for role in Role::BOTH {
                let cfg = b.file(&format!("kind-{role}.yaml"));
                if let Some(a) = p.create_argv(role, &sw.node, &cfg) {
                    b.run(
                        format!("create the {role} cluster ({})", p.name()),
                        Some(role),
                        a,
                        300,
                    );
                    if let Some(last) = b.steps.last_mut() {
                        last.parallel = Some("create-clusters");
                    }
                }
            }
            b.phase("LoadBalancer support (MetalLB)", CLUSTERS);
            b.push(
                "find the docker network's range and split one MetalLB pool per cluster at its end",
                None,
                Action::Resolve {
                    vars: vec!["METALLB_POOL_EXTERNAL".into(), "METALLB_POOL_REMOTE".into()],
                    lookup: Lookup::MetallbPools {
                        network: DOCKER_NETWORK.into(),
                    },
                    cluster: None,
                    timeout: secs(10),
                },
            );
            for role in Role::BOTH {
                b.push(
                    "install MetalLB (metallb-native.yaml)",
                    Some(role),
                    Action::Apply {
                        cluster: role,
                        namespace: None,
                        source: ApplySource::Url(manifests::METALLB_URL.into()),
                        timeout: secs(120),
                    },
                );
                b.wait(
                    "MetalLB controller available (its webhook validates the pool)",
                    role,
                    Until::DeploymentAvailable {
                        namespace: "metallb-system".into(),
                        name: "controller".into(),
                        replicas: 1,
                    },
                    180,
                );
                b.apply("MetalLB address pool", role, manifests::metallb_pool(role)?);
            }
        }

        // ------------------------------------------------------------ istioctl
        b.phase("Download istioctl and samples", CLUSTERS);
        b.push(
            format!("istio-{v} release (cached)"),
            None,
            Action::Download {
                url: v.release_url(),
                into: o.work_dir.clone(),
                creates: b.istioctl(),
                timeout: secs(300),
            },
        );

        // ------------------------------------------------------------ trust
        b.phase("Plant the shared CA (trust pitfall)", CLUSTERS);
        b.push(
            "generate a root CA, an intermediate (cacerts layout) and the proxy's TLS pair",
            None,
            Action::Resolve {
                vars: [
                    "CACERTS_ROOT_CERT",
                    "CACERTS_CERT_CHAIN",
                    "CACERTS_CA_CERT",
                    "CACERTS_CA_KEY",
                    "PROXY_TLS_CERT",
                    "PROXY_TLS_KEY",
                ]
                .map(String::from)
                .to_vec(),
                lookup: Lookup::GeneratedCerts,
                cluster: None,
                timeout: secs(10),
            },
        );
        b.apply(
            "cacerts in istio-system and external-istiod, before either istiod starts",
            Role::External,
            manifests::shared_ca()?,
        );

        // ------------------------------------------------------------ gateway
        b.phase("Set up a gateway in the external cluster", GUIDE);
        let gw = manifests::controlplane_gateway()?;
        let gw_file = b.file(&gw.file);
        b.write(gw);
        b.run(
            "istioctl install (ingress gateway in istio-system)",
            Some(Role::External),
            argv(&[
                &b.istioctl(),
                "install",
                "-y",
                "-f",
                &gw_file,
                &ctx(Role::External),
            ]),
            600,
        );
        b.wait(
            "istio-ingressgateway available",
            Role::External,
            Until::DeploymentAvailable {
                namespace: "istio-system".into(),
                name: "istio-ingressgateway".into(),
                replicas: 1,
            },
            300,
        );
        b.push(
            "EXTERNAL_ISTIOD_ADDR = the gateway's LoadBalancer IP",
            Some(Role::External),
            Action::Resolve {
                vars: vec!["EXTERNAL_ISTIOD_ADDR".into()],
                lookup: Lookup::LoadBalancerIp {
                    namespace: "istio-system".into(),
                    service: "istio-ingressgateway".into(),
                },
                cluster: Some(Role::External),
                timeout: secs(120),
            },
        );

        // ------------------------------------------------------------ remote config cluster
        b.phase("Set up the remote config cluster", GUIDE);
        b.apply(
            "namespace external-istiod",
            Role::Remote,
            manifests::control_plane_namespace(Role::Remote)?,
        );
        let rc = manifests::remote_config_cluster(v, p)?;
        let rc_file = b.file(&rc.file);
        let rendered = b.file("remote-config-cluster.rendered.yaml");
        b.write(rc);
        b.push(
            "istioctl manifest generate",
            None,
            Action::Run {
                argv: argv(&[
                    &b.istioctl(),
                    "manifest",
                    "generate",
                    "-f",
                    &rc_file,
                    "--set",
                    "values.defaultRevision=default",
                ]),
                env: vec![],
                stdout_to: Some(rendered.clone()),
                timeout: secs(120),
            },
        );
        b.push(
            "apply the generated manifest (CRDs first)",
            Some(Role::Remote),
            Action::Apply {
                cluster: Role::Remote,
                namespace: None,
                source: ApplySource::File {
                    path: rendered.clone(),
                    label_selector: None,
                },
                timeout: secs(180),
            },
        );
        b.wait(
            "Istio CRDs established",
            Role::Remote,
            Until::CrdsEstablished { from: rendered },
            120,
        );

        // ------------------------------------------------------------ external control plane
        b.phase("Set up the control plane in the external cluster", GUIDE);
        let remote_secret = b.file("remote-secret.yaml");
        let mut secret_argv = argv(&[
            &b.istioctl(),
            "create-remote-secret",
            &ctx(Role::Remote),
            "--type=config",
            &format!("--namespace={CONTROL_PLANE_NS}"),
            "--service-account=istiod",
            "--create-service-account=false",
        ]);
        if let Some(container) = p.control_plane_container(Role::Remote) {
            b.push("the remote API server as the external cluster sees it (control-plane container IP)", Some(Role::Remote), Action::Resolve {
                vars: vec!["REMOTE_API_SERVER_IP".into()],
                lookup: Lookup::ContainerIp { container, network: DOCKER_NETWORK.into() },
                cluster: None,
                timeout: secs(10),
            });
            secret_argv.push("--server=https://${REMOTE_API_SERVER_IP}:6443".into());
        }
        // 1.12.9:istioctl/cmd/root.go:278 has create-remote-secret at the top level too (the
        // guide's `x` form is kept there for backwards compatibility).
        b.push(
            "istioctl create-remote-secret (the remote cluster's credentials)",
            Some(Role::Remote),
            Action::Run {
                argv: secret_argv,
                env: vec![],
                stdout_to: Some(remote_secret.clone()),
                timeout: secs(60),
            },
        );
        b.push(
            "apply the remote secret",
            Some(Role::External),
            Action::Apply {
                cluster: Role::External,
                namespace: Some(CONTROL_PLANE_NS.into()),
                source: ApplySource::File {
                    path: remote_secret,
                    label_selector: None,
                },
                timeout: secs(60),
            },
        );
        let ext = manifests::external_istiod(v, p, o.replicas)?;
        let ext_file = b.file(&ext.file);
        b.write(ext);
        b.run(
            "istioctl install (the external istiod)",
            Some(Role::External),
            argv(&[
                &b.istioctl(),
                "install",
                "-y",
                "-f",
                &ext_file,
                &ctx(Role::External),
            ]),
            600,
        );
        b.wait(
            format!("istiod available with {} replicas", o.replicas),
            Role::External,
            Until::DeploymentAvailable {
                namespace: CONTROL_PLANE_NS.into(),
                name: "istiod".into(),
                replicas: o.replicas,
            },
            300,
        );
        b.wait(
            "the injection webhook's caBundle patched by the external istiod (webhooks fail closed before: istio/istio#39905)",
            Role::Remote,
            Until::WebhookCaBundle { name: format!("istio-sidecar-injector-{CONTROL_PLANE_NS}") },
            180,
        );
        b.apply(
            "Gateway + VirtualService to istiod (TLS passthrough)",
            Role::External,
            manifests::external_istiod_gw()?,
        );

        // ------------------------------------------------------------ samples
        b.phase("Deploy a sample application", GUIDE);
        b.apply(
            "namespace sample, labelled istio-injection=enabled",
            Role::Remote,
            manifests::sample_namespace()?,
        );
        let samples = format!("{}/istio-{v}/samples", o.work_dir);
        for (file, selector) in [
            ("helloworld/helloworld.yaml", Some("service=helloworld")),
            ("helloworld/helloworld.yaml", Some("version=v1")),
            // 1.30.3:samples/sleep/sleep.yaml still ships beside samples/curl/.
            ("sleep/sleep.yaml", None),
        ] {
            let label = selector.map(|s| format!(" -l {s}")).unwrap_or_default();
            b.push(
                format!("apply samples/{file}{label}"),
                Some(Role::Remote),
                Action::Apply {
                    cluster: Role::Remote,
                    namespace: Some("sample".into()),
                    source: ApplySource::File {
                        path: format!("{samples}/{file}"),
                        label_selector: selector.map(String::from),
                    },
                    timeout: secs(60),
                },
            );
        }
        b.wait(
            "helloworld and sleep running with sidecars (2/2)",
            Role::Remote,
            Until::PodsReady {
                namespace: "sample".into(),
                selector: "app in (helloworld,sleep)".into(),
                containers: 2,
            },
            300,
        );

        b.phase("Enable gateways", GUIDE);
        let ig = manifests::remote_ingress_gateway()?;
        let ig_file = b.file(&ig.file);
        b.write(ig);
        b.run(
            "istioctl install (ingress gateway in external-istiod)",
            Some(Role::Remote),
            argv(&[
                &b.istioctl(),
                "install",
                "-y",
                "-f",
                &ig_file,
                &ctx(Role::Remote),
            ]),
            600,
        );
        b.wait(
            "istio-ingressgateway available",
            Role::Remote,
            Until::DeploymentAvailable {
                namespace: CONTROL_PLANE_NS.into(),
                name: "istio-ingressgateway".into(),
                replicas: 1,
            },
            300,
        );

        b.phase("Measure the split across istiod replicas", CLUSTERS);
        b.push(
            "ask each istiod pod directly: pod port-forward to 15014, GET /debug/syncz (from localhost: no token needed)",
            Some(Role::External),
            Action::MeasureSharding { min_owners: 2, max_rerolls: o.max_rerolls, per_roll_timeout: secs(120) },
        );

        // ------------------------------------------------------------ proxy
        b.phase("Configure istioctl to use the proxy", BLOG);
        match &o.proxy {
            ProxyChoice::Reference { image } => {
                b.run(
                    "build the reference proxy image",
                    None,
                    argv(&["bash", "istioctl-proxy/build-image.sh", image]),
                    900,
                );
                if let Some(a) = p.load_image_argv(Role::External, image) {
                    b.run(
                        "load the image into the external cluster",
                        Some(Role::External),
                        a,
                        300,
                    );
                }
                b.apply(
                    "deploy istioctl-proxy next to istiod",
                    Role::External,
                    manifests::reference_proxy(image)?,
                );
            }
            ProxyChoice::Sample => {
                b.push("kubectl apply -n external-istiod -f istioctl-proxy.yaml (istioctl-proxy-sample)", Some(Role::External), Action::Apply {
                    cluster: Role::External,
                    namespace: Some(CONTROL_PLANE_NS.into()),
                    source: ApplySource::Url(manifests::SAMPLE_PROXY_URL.into()),
                    timeout: secs(60),
                });
            }
            ProxyChoice::Manifest { file, image } => {
                if let Some(a) = p.load_image_argv(Role::External, image) {
                    b.run(
                        "load the image into the external cluster",
                        Some(Role::External),
                        a,
                        300,
                    );
                }
                b.push(
                    format!("apply {file}"),
                    Some(Role::External),
                    Action::Apply {
                        cluster: Role::External,
                        namespace: Some(CONTROL_PLANE_NS.into()),
                        source: ApplySource::File {
                            path: file.clone(),
                            label_selector: None,
                        },
                        timeout: secs(60),
                    },
                );
            }
        }
        b.wait(
            "istioctl-proxy running next to istiod",
            Role::External,
            Until::DeploymentAvailable {
                namespace: CONTROL_PLANE_NS.into(),
                name: "istioctl-proxy".into(),
                replicas: 1,
            },
            180,
        );
        let up = std::mem::take(&mut b.steps);

        // ------------------------------------------------------------ walkthrough
        b.phase("Configure istioctl to use the proxy", BLOG);
        b.push(
            "port-forward service/istioctl-proxy 9090:9090",
            Some(Role::External),
            Action::PortForward {
                cluster: Role::External,
                namespace: CONTROL_PLANE_NS.into(),
                service: "istioctl-proxy".into(),
                local: 9090,
                remote: 9090,
            },
        );
        b.phase(PROXY_STATUS_PHASE, BLOG);
        let mut env = vec![
            (
                "ISTIOCTL_XDS_ADDRESS".to_string(),
                "localhost:9090".to_string(),
            ),
            (
                "ISTIOCTL_ISTIONAMESPACE".to_string(),
                CONTROL_PLANE_NS.to_string(),
            ),
            (
                "ISTIOCTL_PREFER_EXPERIMENTAL".to_string(),
                "true".to_string(),
            ),
        ];
        if sw.istioctl_insecure {
            // The proxy's certificate is self-made; istioctl may verify it (open PR istio/istio#61510).
            env.push(("ISTIOCTL_INSECURE".to_string(), "true".to_string()));
        }
        let table = b.file("proxy-status.txt");
        b.push(
            "istioctl proxy-status",
            Some(Role::Remote),
            Action::Run {
                argv: argv(&[&b.istioctl(), "proxy-status", &ctx(Role::Remote)]),
                env,
                stdout_to: Some(table.clone()),
                timeout: secs(60),
            },
        );
        b.push(
            "every ISTIOD cell <external>; rows = the remote pods with a sidecar",
            Some(Role::Remote),
            Action::CompareTable { table_from: table },
        );
        let walkthrough = std::mem::take(&mut b.steps);

        // ------------------------------------------------------------ down / failure
        b.phase("Delete the clusters", CLUSTERS);
        for role in Role::BOTH {
            if let Some(a) = p.delete_argv(role) {
                b.run(format!("delete the {role} cluster"), Some(role), a, 180);
            }
        }
        let down = std::mem::take(&mut b.steps);
        b.phase("On failure: export the clusters' logs", CLUSTERS);
        for role in Role::BOTH {
            let dir = b.file("logs");
            if let Some(a) = p.export_logs_argv(role, &dir) {
                let to = matches!(p, Provider::K3d).then(|| format!("{dir}/{role}.log"));
                b.push(
                    format!("export the {role} cluster's logs"),
                    Some(role),
                    Action::Run {
                        argv: a,
                        env: vec![],
                        stdout_to: to,
                        timeout: secs(120),
                    },
                );
            }
        }
        let on_failure = std::mem::take(&mut b.steps);
        Ok(Plan {
            options: o.clone(),
            switches: sw,
            up,
            walkthrough,
            down,
            on_failure,
        })
    }

    /// Every manifest this plan renders itself (for validation and `--write-manifests`).
    pub fn rendered_manifests(&self) -> Vec<&Manifest> {
        self.all_steps()
            .filter_map(|s| match &s.action {
                Action::WriteFile { manifest, .. } => Some(manifest),
                Action::Apply {
                    source: ApplySource::Rendered(m),
                    ..
                } => Some(m),
                _ => None,
            })
            .collect()
    }

    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.up
            .iter()
            .chain(&self.walkthrough)
            .chain(&self.down)
            .chain(&self.on_failure)
    }
}

fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@${}".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn fmt_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let sw = &self.switches;
        writeln!(f, "# proxy-conformance cluster plan (no side effects)")?;
        writeln!(
            f,
            "# provider {}, Istio {}, {} istiod replicas",
            o.provider.name(),
            o.istio,
            o.replicas
        )?;
        for role in Role::BOTH {
            writeln!(
                f,
                "#   {role} cluster: context {}",
                o.provider.context(role)
            )?;
        }
        writeln!(
            f,
            "# version switches (cluster/src/istio.rs cites the source of each):"
        )?;
        writeln!(f, "#   remote cluster profile: {}", sw.remote_profile)?;
        writeln!(
            f,
            "#   remote webhooks: {}",
            if sw.webhooks_by_url {
                "injectionURL / validationURL by address"
            } else {
                "istiod Service from remotePilotAddress + injectionPath"
            }
        )?;
        writeln!(
            f,
            "#   LOCAL_CLUSTER_SECRET_WATCHER: {}",
            sw.local_cluster_secret_watcher
        )?;
        writeln!(
            f,
            "#   values.global.configValidation: {}",
            if sw.config_validation_value {
                "false"
            } else {
                "(not known to this istioctl)"
            }
        )?;
        writeln!(f, "#   ISTIOCTL_INSECURE: {}", sw.istioctl_insecure)?;
        match o.provider {
            Provider::Kind => writeln!(
                f,
                "#   Kubernetes {}: kind {} with {}",
                sw.node.kubernetes, sw.node.kind_version, sw.node.kind_image
            )?,
            Provider::K3d => writeln!(
                f,
                "#   Kubernetes {}: k3d with {}",
                sw.node.kubernetes, sw.node.k3s_image
            )?,
            Provider::Contexts { .. } => writeln!(
                f,
                "#   Kubernetes: the contexts' own (Istio {} wants {}); they need LoadBalancer Services and must pull the proxy image",
                o.istio, sw.node.kubernetes
            )?,
        }
        writeln!(
            f,
            "#   why Kubernetes {}: {}",
            sw.node.kubernetes,
            sw.node
                .reason
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        if o.provider.creates_clusters() {
            writeln!(
                f,
                "# host: fs.inotify.max_user_watches=524288, fs.inotify.max_user_instances=512 (kind's known-issues)"
            )?;
        }
        let mut n = 0;
        for (title, steps) in [
            ("up", &self.up),
            ("walkthrough", &self.walkthrough),
            ("down", &self.down),
            ("on failure", &self.on_failure),
        ] {
            writeln!(f, "\n######## {title}")?;
            let mut phase = "";
            for s in steps {
                if s.phase != phase {
                    phase = s.phase;
                    writeln!(f, "\n=== {phase}  [{}]", s.source)?;
                }
                n += 1;
                let mut out = String::new();
                write_step(&mut out, n, s, &o.provider)?;
                f.write_str(&out)?;
            }
        }
        Ok(())
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("      | {l}\n")).collect()
}

fn write_step(f: &mut String, n: usize, s: &Step, p: &Provider) -> fmt::Result {
    let on = s.cluster.map(|c| format!(" [{c}]")).unwrap_or_default();
    let par = s
        .parallel
        .map(|g| format!(" (parallel: {g})"))
        .unwrap_or_default();
    writeln!(f, "{n:>3}.{on} {}{par}", s.name)?;
    match &s.action {
        Action::Run {
            argv,
            env,
            stdout_to,
            timeout,
        } => {
            let envs: String = env
                .iter()
                .map(|(k, v)| format!("{k}={} ", shell_word(v)))
                .collect();
            let cmd: Vec<String> = argv.iter().map(|a| shell_word(a)).collect();
            let redirect = stdout_to
                .as_ref()
                .map(|t| format!(" > {t}"))
                .unwrap_or_default();
            writeln!(f, "      $ {envs}{}{redirect}", cmd.join(" "))?;
            writeln!(f, "      bound: {}", fmt_secs(*timeout))?;
        }
        Action::Download {
            url,
            into,
            creates,
            timeout,
        } => {
            writeln!(
                f,
                "      download {url}\n      unpack into {into} (skipped when {creates} exists)\n      bound: {}",
                fmt_secs(*timeout)
            )?;
        }
        Action::WriteFile { manifest, path } => {
            writeln!(f, "      file {path}:")?;
            f.push_str(&indent(&manifest.to_yaml()));
        }
        Action::Apply {
            cluster,
            namespace,
            source,
            timeout,
        } => {
            let ns = namespace
                .as_ref()
                .map(|n| format!(", default namespace {n}"))
                .unwrap_or_default();
            writeln!(
                f,
                "      server-side apply to context {} (field manager proxy-conformance, strict field validation{ns}), bound {}",
                p.context(*cluster),
                fmt_secs(*timeout)
            )?;
            match source {
                ApplySource::Rendered(m) => {
                    writeln!(f, "      objects: {}", m.object_names().join(", "))?;
                    f.push_str(&indent(&m.to_yaml()));
                }
                ApplySource::File {
                    path,
                    label_selector,
                } => {
                    let sel = label_selector
                        .as_ref()
                        .map(|s| format!(" (only documents labelled {s})"))
                        .unwrap_or_default();
                    writeln!(
                        f,
                        "      from {path}{sel}; CRDs first, Established before the rest"
                    )?;
                }
                ApplySource::Url(u) => {
                    writeln!(f, "      from {u}; CRDs first, Established before the rest")?
                }
            }
        }
        Action::Wait {
            cluster,
            until,
            timeout,
        } => {
            let what = match until {
                Until::CrdsEstablished { from } => {
                    format!("every CRD of {from} has condition Established")
                }
                Until::DeploymentAvailable {
                    namespace,
                    name,
                    replicas,
                } => {
                    format!(
                        "Deployment {namespace}/{name}: updated and available replicas >= {replicas}"
                    )
                }
                Until::PodsReady {
                    namespace,
                    selector,
                    containers,
                } => {
                    format!(
                        "pods in {namespace} matching `{selector}`: Ready with {containers} containers each"
                    )
                }
                Until::WebhookCaBundle { name } => {
                    format!("MutatingWebhookConfiguration {name}: every webhook has a caBundle")
                }
            };
            writeln!(
                f,
                "      wait (kube::runtime, context {}): {what}\n      bound: {}",
                p.context(*cluster),
                fmt_secs(*timeout)
            )?;
        }
        Action::Resolve {
            vars,
            lookup,
            cluster: _,
            timeout,
        } => {
            let how = match lookup {
                Lookup::MetallbPools { network } => {
                    format!(
                        "docker network inspect {network} (IPv4 subnet) -> .255.200-.255.219 external, .255.220-.255.239 remote"
                    )
                }
                Lookup::LoadBalancerIp { namespace, service } => {
                    format!("Service {namespace}/{service}: status.loadBalancer.ingress[0].ip")
                }
                Lookup::ContainerIp { container, network } => {
                    format!(
                        "docker inspect {container} --format '{{{{ .NetworkSettings.Networks.{network}.IPAddress }}}}'"
                    )
                }
                Lookup::GeneratedCerts => {
                    "rcgen, in the harness process (written only into the clusters' Secrets)".into()
                }
            };
            let vars: Vec<String> = vars.iter().map(|v| format!("${{{v}}}")).collect();
            writeln!(
                f,
                "      {} <- {how}\n      bound: {}",
                vars.join(" "),
                fmt_secs(*timeout)
            )?;
        }
        Action::PortForward {
            cluster,
            namespace,
            service,
            local,
            remote,
        } => {
            writeln!(
                f,
                "      kube port-forward (ws) context {}: localhost:{local} -> a ready pod of service {namespace}/{service}, port {remote}; kept until the end",
                p.context(*cluster)
            )?;
        }
        Action::MeasureSharding {
            min_owners,
            max_rerolls,
            per_roll_timeout,
        } => {
            writeln!(
                f,
                "      until >= {min_owners} istiod replicas own proxies: delete the sample pods and wait for their replacements, at most {max_rerolls} times, {} each",
                fmt_secs(*per_roll_timeout)
            )?;
        }
        Action::CompareTable { table_from } => {
            writeln!(
                f,
                "      read {table_from}; list pods with an istio-proxy container on the remote cluster; the NAME column must equal them, every ISTIOD cell <external>"
            )?;
        }
    }
    Ok(())
}
