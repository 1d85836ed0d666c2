//! The plan as text (`cluster plan`): a header with the version switches, then
//! every step numbered, with its command, file, manifest, wait and bound.
use std::fmt::{self, Write as _};
use std::time::Duration;

use super::Plan;
use super::step::{Action, ApplySource, Lookup, Step, Until};
use crate::provider::{Provider, Role};

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
        write_header(f, self)?;
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
                write_step(&mut out, n, s, &self.options.provider)?;
                f.write_str(&out)?;
            }
        }
        Ok(())
    }
}

/// The plan's options and the version switches they imply, as `#` comments.
fn write_header(f: &mut fmt::Formatter<'_>, plan: &Plan) -> fmt::Result {
    let o = &plan.options;
    let sw = &plan.switches;
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
    Ok(())
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
            write_apply_source(f, source)?;
        }
        Action::Wait {
            cluster,
            until,
            timeout,
        } => {
            let what = describe_until(until);
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
            let how = describe_lookup(lookup);
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

/// What a wait waits for, in words.
fn describe_until(until: &Until) -> String {
    match until {
        Until::CrdsEstablished { from } => {
            format!("every CRD of {from} has condition Established")
        }
        Until::DeploymentAvailable {
            namespace,
            name,
            replicas,
        } => {
            format!("Deployment {namespace}/{name}: updated and available replicas >= {replicas}")
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
    }
}

/// Where a resolved value comes from, in words.
fn describe_lookup(lookup: &Lookup) -> String {
    match lookup {
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
    }
}

/// Which documents an apply reads.
fn write_apply_source(f: &mut String, source: &ApplySource) -> fmt::Result {
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
    Ok(())
}
