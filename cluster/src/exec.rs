//! Runs a plan: CLIs through tokio::process with bounds, every API call through
//! [`crate::kubeops`]. Progress: each step named, with its elapsed time. A
//! failure says which step, on which object, what to try, and exports the
//! clusters' logs.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use crate::kubeops::{self, KubeError};
use crate::manifests::{CONTROL_PLANE_NS, parse_yaml_docs};
use crate::plan::{Action, ApplySource, Lookup, Plan, Step, Until};
use crate::provider::Role;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("step {n} \"{name}\" ({phase}) failed: {cause}\n  try: {hint}")]
    Step {
        n: usize,
        name: String,
        phase: &'static str,
        cause: String,
        hint: String,
    },
    #[error("step {n} \"{name}\": not implemented yet ({what})")]
    NotImplemented {
        n: usize,
        name: String,
        what: &'static str,
    },
}

/// Fills `${NAME}` placeholders; an unknown name is an error naming it.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {text:?}"))?;
        let name = &after[..end];
        let value = vars.get(name).ok_or_else(|| {
            format!("${{{name}}} is not known yet (a step that finds it must run first)")
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Fills placeholders inside every string of a rendered object (multi-line values such as PEM
/// stay valid YAML, unlike a text replacement).
pub fn substitute_value(v: &Value, vars: &BTreeMap<String, String>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => Value::String(substitute(s, vars)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| substitute_value(x, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), substitute_value(x, vars)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// kubectl's `-l k=v[,k2=v2]` on the documents of a file.
pub fn select(docs: Vec<Value>, selector: Option<&str>) -> Vec<Value> {
    let Some(sel) = selector else { return docs };
    let wanted: Vec<(&str, &str)> = sel
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    docs.into_iter()
        .filter(|d| {
            wanted
                .iter()
                .all(|(k, v)| d["metadata"]["labels"][*k].as_str() == Some(*v))
        })
        .collect()
}

/// Splits an IPv4 /16 or larger docker subnet into the two MetalLB pools at its end.
pub fn metallb_pools(subnet: &str) -> Result<(String, String), String> {
    let (addr, len) = subnet
        .split_once('/')
        .ok_or_else(|| format!("docker subnet {subnet:?} is not CIDR"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("docker subnet {subnet:?}: bad prefix length"))?;
    let octets: Vec<u8> = addr
        .split('.')
        .map(|o| o.parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("docker subnet {subnet:?} is not IPv4"))?;
    if octets.len() != 4 || len > 16 {
        return Err(format!(
            "docker subnet {subnet:?}: need an IPv4 network of /16 or larger"
        ));
    }
    let p = format!("{}.{}", octets[0], octets[1]);
    Ok((
        format!("{p}.255.200-{p}.255.219"),
        format!("{p}.255.220-{p}.255.239"),
    ))
}

pub struct Executor<'a> {
    plan: &'a Plan,
    vars: BTreeMap<String, String>,
    clients: BTreeMap<Role, Client>,
    started: Instant,
    n: usize,
    /// Port-forwards kept until the executor is dropped.
    forwards: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Executor<'_> {
    fn drop(&mut self) {
        for f in &self.forwards {
            f.abort();
        }
    }
}

impl<'a> Executor<'a> {
    pub fn new(plan: &'a Plan) -> Self {
        Self {
            plan,
            vars: BTreeMap::new(),
            clients: BTreeMap::new(),
            started: Instant::now(),
            n: 0,
            forwards: Vec::new(),
        }
    }

    /// `up` (and `walkthrough` when asked); on failure exports the logs and returns the error.
    pub async fn run(&mut self, walkthrough: bool) -> Result<(), ExecError> {
        let mut steps: Vec<&Step> = self.plan.up.iter().collect();
        if walkthrough {
            steps.extend(&self.plan.walkthrough);
        }
        let total = steps.len();
        let mut i = 0;
        while i < steps.len() {
            // Consecutive steps of one parallel group run together.
            let group = steps[i].parallel;
            let mut j = i + 1;
            while group.is_some() && j < steps.len() && steps[j].parallel == group {
                j += 1;
            }
            let batch = &steps[i..j];
            let results = futures::future::join_all(batch.iter().enumerate().map(|(k, s)| {
                let n = i + k + 1;
                let vars = self.vars.clone();
                let started = self.started;
                async move { (n, *s, run_detached(n, total, s, &vars, started).await) }
            }))
            .await;
            for (n, s, r) in results {
                match r {
                    Ok(Detached::Done) => {}
                    Ok(Detached::NeedsExecutor) => {
                        self.n = n;
                        let t = Instant::now();
                        if let Err(e) = self.step(s).await {
                            self.on_failure().await;
                            return Err(e);
                        }
                        progress(n, total, s, t.elapsed(), self.started.elapsed());
                    }
                    Err(e) => {
                        self.on_failure().await;
                        return Err(e);
                    }
                }
            }
            i = j;
        }
        Ok(())
    }

    pub async fn down(&mut self) -> Result<(), ExecError> {
        let total = self.plan.down.len();
        for (k, s) in self.plan.down.iter().enumerate() {
            if let Detached::NeedsExecutor =
                run_detached(k + 1, total, s, &self.vars, self.started).await?
            {
                return Err(ExecError::NotImplemented {
                    n: k + 1,
                    name: s.name.clone(),
                    what: "a down step that is not a command",
                });
            }
        }
        Ok(())
    }

    async fn on_failure(&mut self) {
        let total = self.plan.on_failure.len();
        for (k, s) in self.plan.on_failure.iter().enumerate() {
            if let Err(e) = run_detached(k + 1, total, s, &self.vars, self.started).await {
                eprintln!("  (log export failed: {e})");
            }
        }
        if total > 0 {
            eprintln!(
                "cluster logs exported under {}/logs",
                self.plan.options.work_dir
            );
        }
    }

    fn fail(&self, s: &Step, cause: String, hint: &str) -> ExecError {
        ExecError::Step {
            n: self.n,
            name: s.name.clone(),
            phase: s.phase,
            cause,
            hint: hint.into(),
        }
    }

    async fn client(&mut self, s: &Step, role: Role) -> Result<Client, ExecError> {
        if let Some(c) = self.clients.get(&role) {
            return Ok(c.clone());
        }
        let context = self.plan.options.provider.context(role);
        let kc = Kubeconfig::read().map_err(|e| {
            self.fail(
                s,
                format!("reading the kubeconfig: {e}"),
                "is KUBECONFIG set, or ~/.kube/config present?",
            )
        })?;
        let opts = KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        };
        let cfg = Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| {
                self.fail(
                    s,
                    format!("kubeconfig context {context}: {e}"),
                    "kubectl config get-contexts",
                )
            })?;
        let c = Client::try_from(cfg).map_err(|e| {
            self.fail(
                s,
                format!("client for context {context}: {e}"),
                "kubectl cluster-info --context ...",
            )
        })?;
        self.clients.insert(role, c.clone());
        Ok(c)
    }

    async fn docs_for(&self, s: &Step, source: &ApplySource) -> Result<Vec<Value>, ExecError> {
        // Only our own objects carry placeholders; files from istioctl or the network are applied as they are.
        let (file, text, selector) = match source {
            ApplySource::Rendered(m) => {
                return m
                    .docs
                    .iter()
                    .map(|d| {
                        substitute_value(d, &self.vars)
                            .map_err(|e| self.fail(s, e, "a bug in the plan's step order"))
                    })
                    .collect();
            }
            ApplySource::File {
                path,
                label_selector,
            } => {
                let text = tokio::fs::read_to_string(path).await.map_err(|e| {
                    self.fail(
                        s,
                        format!("{path}: {e}"),
                        "did the step that writes it run?",
                    )
                })?;
                (path.clone(), text, label_selector.as_deref())
            }
            ApplySource::Url(url) => {
                let out = run_cmd(
                    &["curl".into(), "-fsSL".into(), url.clone()],
                    &[],
                    Duration::from_secs(60),
                )
                .await
                .map_err(|e| self.fail(s, e, "is the network reachable?"))?;
                (url.clone(), out, None)
            }
        };
        let docs = parse_yaml_docs(&file, &text)
            .map_err(|e| self.fail(s, e.to_string(), "the file is not YAML"))?;
        Ok(select(docs, selector))
    }

    async fn step(&mut self, s: &Step) -> Result<(), ExecError> {
        match &s.action {
            Action::Apply {
                cluster,
                namespace,
                source,
                timeout,
            } => {
                self.apply(s, *cluster, namespace.as_deref(), source, *timeout)
                    .await
            }
            Action::Wait {
                cluster,
                until,
                timeout,
            } => self.wait(s, *cluster, until, *timeout).await,
            Action::Resolve {
                vars,
                lookup,
                timeout,
                ..
            } => self.resolve(s, vars, lookup, *timeout).await,
            Action::PortForward {
                cluster,
                namespace,
                service,
                local,
                remote,
            } => {
                self.port_forward(s, *cluster, namespace, service, *local, *remote)
                    .await
            }
            Action::MeasureSharding {
                min_owners,
                max_rerolls,
                per_roll_timeout,
            } => {
                self.measure_sharding(s, *min_owners, *max_rerolls, *per_roll_timeout)
                    .await
            }
            Action::CompareTable { table_from } => self.compare_table(s, table_from).await,
            Action::Run { .. } | Action::Download { .. } | Action::WriteFile { .. } => {
                unreachable_detached(s);
                Ok(())
            }
        }
    }

    /// Server-side apply of a step's documents.
    async fn apply(
        &mut self,
        s: &Step,
        cluster: Role,
        namespace: Option<&str>,
        source: &ApplySource,
        timeout: Duration,
    ) -> Result<(), ExecError> {
        let kube_fail = |me: &Self, e: KubeError| me.fail(s, e.to_string(), e.hint());
        let docs = self.docs_for(s, source).await?;
        let c = self.client(s, cluster).await?;
        kubeops::apply_documents(&c, &docs, namespace, timeout)
            .await
            .map_err(|e| kube_fail(self, e))?;
        Ok(())
    }

    /// A bounded wait through `kube::runtime`.
    async fn wait(
        &mut self,
        s: &Step,
        cluster: Role,
        until: &Until,
        timeout: Duration,
    ) -> Result<(), ExecError> {
        let kube_fail = |me: &Self, e: KubeError| me.fail(s, e.to_string(), e.hint());
        let c = self.client(s, cluster).await?;
        let r = match until {
            Until::CrdsEstablished { from } => {
                let docs = self
                    .docs_for(
                        s,
                        &ApplySource::File {
                            path: from.clone(),
                            label_selector: None,
                        },
                    )
                    .await?;
                let names: Vec<String> = docs
                    .iter()
                    .filter(|d| d["kind"] == "CustomResourceDefinition")
                    .filter_map(|d| d["metadata"]["name"].as_str().map(String::from))
                    .collect();
                kubeops::wait_crds_established(&c, &names, timeout).await
            }
            Until::DeploymentAvailable {
                namespace,
                name,
                replicas,
            } => kubeops::wait_deployment_available(&c, namespace, name, *replicas, timeout).await,
            Until::PodsReady {
                namespace,
                selector,
                containers,
            } => {
                kubeops::wait_pods_ready(
                    &c,
                    namespace,
                    selector,
                    usize::try_from(*containers).unwrap_or(2),
                    timeout,
                )
                .await
            }
            Until::WebhookCaBundle { name } => {
                kubeops::wait_webhook_ca_bundle(&c, name, timeout).await
            }
        };
        r.map_err(|e| kube_fail(self, e))?;
        Ok(())
    }

    /// Finds values at run time and keeps them as `${VAR}`s for the steps after.
    async fn resolve(
        &mut self,
        s: &Step,
        vars: &[String],
        lookup: &Lookup,
        timeout: Duration,
    ) -> Result<(), ExecError> {
        let kube_fail = |me: &Self, e: KubeError| me.fail(s, e.to_string(), e.hint());
        let values: Vec<String> = match lookup {
            Lookup::MetallbPools { network } => {
                let out = run_cmd(
                    &[
                        "docker".into(),
                        "network".into(),
                        "inspect".into(),
                        network.clone(),
                        "--format".into(),
                        "{{range .IPAM.Config}}{{.Subnet}} {{end}}".into(),
                    ],
                    &[],
                    timeout,
                )
                .await
                .map_err(|e| {
                    self.fail(
                        s,
                        e,
                        "is docker running, and did the cluster creation make the network?",
                    )
                })?;
                let subnet = out
                    .split_whitespace()
                    .find(|w| !w.contains(':'))
                    .unwrap_or("")
                    .to_string();
                let (a, b) = metallb_pools(&subnet)
                    .map_err(|e| self.fail(s, e, "use a docker network with an IPv4 /16"))?;
                vec![a, b]
            }
            Lookup::ContainerIp { container, network } => {
                let fmt = format!("{{{{ .NetworkSettings.Networks.{network}.IPAddress }}}}");
                let out = run_cmd(
                    &[
                        "docker".into(),
                        "inspect".into(),
                        container.clone(),
                        "--format".into(),
                        fmt,
                    ],
                    &[],
                    timeout,
                )
                .await
                .map_err(|e| {
                    self.fail(
                        s,
                        e,
                        "is the cluster's control-plane container running (docker ps)?",
                    )
                })?;
                vec![out.trim().to_string()]
            }
            Lookup::LoadBalancerIp { namespace, service } => {
                let c = self.client(s, s.cluster.unwrap_or(Role::External)).await?;
                vec![
                    kubeops::load_balancer_ip(&c, namespace, service, timeout)
                        .await
                        .map_err(|e| kube_fail(self, e))?,
                ]
            }
            Lookup::GeneratedCerts => crate::certs::generate()
                .map_err(|e| self.fail(s, e, "a bug: certificate generation"))?,
        };
        for (k, v) in vars.iter().zip(values) {
            self.vars.insert(k.clone(), v);
        }
        Ok(())
    }

    /// A port-forward kept until the executor is dropped.
    async fn port_forward(
        &mut self,
        s: &Step,
        cluster: Role,
        namespace: &str,
        service: &str,
        local: u16,
        remote: u16,
    ) -> Result<(), ExecError> {
        let kube_fail = |me: &Self, e: KubeError| me.fail(s, e.to_string(), e.hint());
        let c = self.client(s, cluster).await?;
        let task = kubeops::port_forward_service(&c, namespace, service, local, remote)
            .await
            .map_err(|e| kube_fail(self, e))?;
        self.forwards.push(task);
        Ok(())
    }

    /// Asks each istiod pod how many proxies it owns; re-rolls the sample workloads (bounded) until
    /// `min_owners` replicas own some.
    async fn measure_sharding(
        &mut self,
        s: &Step,
        min_owners: u32,
        max_rerolls: u32,
        per_roll_timeout: Duration,
    ) -> Result<(), ExecError> {
        let kube_fail = |me: &Self, e: KubeError| me.fail(s, e.to_string(), e.hint());
        let ext = self.client(s, Role::External).await?;
        let remote = self.client(s, Role::Remote).await?;
        let workloads = "app in (helloworld,sleep)";
        for attempt in 0..=max_rerolls {
            let istiods = kubeops::ready_pods(&ext, CONTROL_PLANE_NS, "app=istiod")
                .await
                .map_err(|e| kube_fail(self, e))?;
            let mut split = Vec::new();
            for pod in &istiods {
                let n = kubeops::syncz_count(&ext, CONTROL_PLANE_NS, pod, Duration::from_secs(20))
                    .await
                    .map_err(|e| kube_fail(self, e))?;
                split.push((pod.clone(), n));
            }
            let owners = split.iter().filter(|(_, n)| *n > 0).count();
            let shown: Vec<String> = split.iter().map(|(p, n)| format!("{p}: {n}")).collect();
            eprintln!("      split across istiod replicas: {}", shown.join(", "));
            if owners >= usize::try_from(min_owners).unwrap_or(2) {
                self.vars.insert("SHARDING".into(), shown.join(", "));
                return Ok(());
            }
            if attempt == max_rerolls {
                break;
            }
            eprintln!(
                "      re-roll {}/{max_rerolls}: deleting the sample pods",
                attempt + 1
            );
            kubeops::delete_pods(&remote, "sample", workloads)
                .await
                .map_err(|e| kube_fail(self, e))?;
            kubeops::wait_pods_ready(&remote, "sample", workloads, 2, per_roll_timeout)
                .await
                .map_err(|e| kube_fail(self, e))?;
        }
        Err(self.fail(
            s,
            format!(
                "fewer than {min_owners} istiod replicas own proxies after {max_rerolls} re-rolls"
            ),
            "run again (the split is random), or raise --replicas",
        ))
    }

    /// istioctl's table against the remote cluster's pods with a sidecar.
    async fn compare_table(&mut self, s: &Step, table_from: &str) -> Result<(), ExecError> {
        let kube_fail = |me: &Self, e: KubeError| me.fail(s, e.to_string(), e.hint());
        let text = tokio::fs::read_to_string(table_from).await.map_err(|e| {
            self.fail(
                s,
                format!("{table_from}: {e}"),
                "did istioctl proxy-status run?",
            )
        })?;
        let rows = crate::table::parse(&text)
            .map_err(|e| self.fail(s, e, "look at the table istioctl printed"))?;
        let c = self.client(s, Role::Remote).await?;
        let expected = kubeops::pods_with_sidecar(&c)
            .await
            .map_err(|e| kube_fail(self, e))?;
        crate::table::compare(&rows, &expected).map_err(|e| {
            self.fail(s, e, "the proxy under test does not return the full merged table: run `proxy-conformance run` against it locally")
        })?;
        eprintln!(
            "      {} rows, every ISTIOD <external>, exactly the pods with a sidecar",
            rows.len()
        );
        Ok(())
    }
}

fn unreachable_detached(s: &Step) {
    // run_detached handles these; reaching here is a bug we report, not a panic.
    eprintln!("internal: step {:?} was not run", s.name);
}

enum Detached {
    Done,
    NeedsExecutor,
}

fn progress(n: usize, total: usize, s: &Step, took: Duration, since_start: Duration) {
    let on = s.cluster.map(|c| format!(" [{c}]")).unwrap_or_default();
    eprintln!(
        "[{n:>2}/{total}] {}: {}{on} ... ok ({:.1}s, {:.0}s in)",
        s.phase,
        s.name,
        took.as_secs_f64(),
        since_start.as_secs_f64()
    );
}

/// Steps that need no API client (commands, downloads, files) run here, so a parallel group can
/// run them concurrently.
async fn run_detached(
    n: usize,
    total: usize,
    s: &Step,
    vars: &BTreeMap<String, String>,
    started: Instant,
) -> Result<Detached, ExecError> {
    let t = Instant::now();
    let fail = |cause: String, hint: &str| ExecError::Step {
        n,
        name: s.name.clone(),
        phase: s.phase,
        cause,
        hint: hint.into(),
    };
    let sub =
        |text: &str| substitute(text, vars).map_err(|e| fail(e, "a bug in the plan's step order"));
    match &s.action {
        Action::Run {
            argv,
            env,
            stdout_to,
            timeout,
        } => {
            let argv: Vec<String> = argv.iter().map(|a| sub(a)).collect::<Result<_, _>>()?;
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| Ok((k.clone(), sub(v)?)))
                .collect::<Result<_, ExecError>>()?;
            let out = run_cmd(&argv, &env, *timeout)
                .await
                .map_err(|e| fail(e, "run the command above by hand to see more"))?;
            match stdout_to {
                Some(path) => {
                    write_file(path, &out)
                        .await
                        .map_err(|e| fail(e, "is the work dir writable?"))?;
                    if s.phase == crate::plan::PROXY_STATUS_PHASE {
                        // The table, as the blog shows it.
                        println!("{out}");
                    }
                }
                None => {
                    for l in out
                        .lines()
                        .rev()
                        .take(3)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        eprintln!("      {l}");
                    }
                }
            }
        }
        Action::Download {
            url,
            into,
            creates,
            timeout,
        } => {
            if !Path::new(creates).exists() {
                let tarball = format!("{into}/download.tar.gz");
                tokio::fs::create_dir_all(into)
                    .await
                    .map_err(|e| fail(format!("{into}: {e}"), "is the work dir writable?"))?;
                run_cmd(
                    &["curl".into(), "-fsSLo".into(), tarball.clone(), url.clone()],
                    &[],
                    *timeout,
                )
                .await
                .map_err(|e| fail(e, "is github.com reachable? is the version a real release?"))?;
                run_cmd(
                    &[
                        "tar".into(),
                        "-xzf".into(),
                        tarball,
                        "-C".into(),
                        into.clone(),
                    ],
                    &[],
                    *timeout,
                )
                .await
                .map_err(|e| fail(e, "the download is not a tarball"))?;
            }
        }
        Action::WriteFile { manifest, path } => {
            let docs: Vec<Value> = manifest
                .docs
                .iter()
                .map(|d| substitute_value(d, vars))
                .collect::<Result<_, _>>()
                .map_err(|e| fail(e, "a bug in the plan's step order"))?;
            let text = crate::manifests::Manifest {
                file: manifest.file.clone(),
                docs,
            }
            .to_yaml();
            write_file(path, &text)
                .await
                .map_err(|e| fail(e, "is the work dir writable?"))?;
        }
        _ => return Ok(Detached::NeedsExecutor),
    }
    progress(n, total, s, t.elapsed(), started.elapsed());
    Ok(Detached::Done)
}

async fn write_file(path: &str, text: &str) -> Result<(), String> {
    if let Some(dir) = Path::new(path).parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    tokio::fs::write(path, text)
        .await
        .map_err(|e| format!("{path}: {e}"))
}

/// Runs a command with a bound; the error carries the command and the tail of its stderr.
pub async fn run_cmd(
    argv: &[String],
    env: &[(String, String)],
    bound: Duration,
) -> Result<String, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let shown = argv.join(" ");
    let out = match tokio::time::timeout(bound, cmd.output()).await {
        Err(_) => {
            return Err(format!(
                "`{shown}` did not finish within {bound:?} (killed)"
            ));
        }
        Ok(Err(e)) => {
            return Err(format!(
                "`{shown}` could not start: {e} (is {prog} installed and on PATH?)"
            ));
        }
        Ok(Ok(o)) => o,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "`{shown}` exited with {}:\n    {}",
            out.status,
            tail.join("\n    ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_fills_and_names_the_missing_variable() {
        let vars: BTreeMap<String, String> = [("A".to_string(), "1.2.3.4".to_string())].into();
        assert_eq!(
            substitute("https://${A}:15017/x", &vars).unwrap(),
            "https://1.2.3.4:15017/x"
        );
        let e = substitute("${B}", &vars).unwrap_err();
        assert!(e.contains("${B} is not known yet"), "{e}");
        assert!(substitute("${A", &vars).is_err());
        let pem: BTreeMap<String, String> =
            [("P".to_string(), "-----BEGIN\nabc\n-----END\n".to_string())].into();
        let doc = serde_json::json!({"stringData": {"k": "${P}"}});
        let out = substitute_value(&doc, &pem).unwrap();
        let yaml = crate::manifests::Manifest {
            file: "f".into(),
            docs: vec![out.clone()],
        }
        .to_yaml();
        assert_eq!(
            parse_yaml_docs("f", &yaml).unwrap(),
            vec![out],
            "a multi-line value survives YAML"
        );
    }

    #[test]
    fn pools_at_the_end_of_the_network() {
        assert_eq!(
            metallb_pools("172.18.0.0/16").unwrap(),
            (
                "172.18.255.200-172.18.255.219".into(),
                "172.18.255.220-172.18.255.239".into()
            )
        );
        assert!(metallb_pools("172.18.0.0/24").is_err());
        assert!(metallb_pools("fc00:f853::/64").is_err());
    }

    #[test]
    fn label_selection_like_kubectl_l() {
        let docs = parse_yaml_docs(
            "t",
            "kind: Service\nmetadata: {name: helloworld, labels: {service: helloworld}}\n---\nkind: Deployment\nmetadata: {name: helloworld-v1, labels: {version: v1}}\n---\nkind: Deployment\nmetadata: {name: helloworld-v2, labels: {version: v2}}\n",
        )
        .unwrap();
        let names = |d: Vec<Value>| {
            d.iter()
                .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(select(docs.clone(), Some("version=v1"))),
            ["helloworld-v1"]
        );
        assert_eq!(
            names(select(docs.clone(), Some("service=helloworld"))),
            ["helloworld"]
        );
        assert_eq!(select(docs, None).len(), 3);
    }

    #[tokio::test]
    async fn commands_are_bounded_and_errors_name_them() {
        let e = run_cmd(
            &["sleep".into(), "5".into()],
            &[],
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(e.contains("`sleep 5` did not finish within"), "{e}");
        let e = run_cmd(
            &["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()],
            &[],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.contains("exited with") && e.contains("boom"), "{e}");
        let e = run_cmd(&["no-such-binary-xyz".into()], &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("could not start"), "{e}");
    }
}
