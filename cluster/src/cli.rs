//! `proxy-conformance cluster plan|up|walkthrough|down`.
use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::exec::{ExecError, Executor};
use crate::istio::{IstioVersion, VersionError};
use crate::manifests::ManifestError;
use crate::plan::{Plan, PlanOptions, ProxyChoice, REFERENCE_IMAGE};
use crate::provider::Provider;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Print every step `up` and `walkthrough` would take (commands, files, manifests, waits with bounds). No side effects.
    Plan(PlanArgs),
    /// Create the clusters, install the external control plane as the guide does, deploy the proxy.
    Up(PlanArgs),
    /// The blog end to end: up, port-forward 9090, istioctl proxy-status with ISTIOCTL_XDS_ADDRESS; down unless --keep.
    Walkthrough(WalkthroughArgs),
    /// Delete the clusters created by up (kind / k3d only).
    Down(PlanArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProviderArg {
    /// Two kind clusters on the docker network `kind`, MetalLB for LoadBalancer Services.
    Kind,
    /// Two k3d clusters on the same network (k3s's servicelb off, MetalLB instead).
    K3d,
    /// Two existing kubeconfig contexts: nothing created or deleted.
    Contexts,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProxyArg {
    /// The image built from istioctl-proxy/, loaded into the cluster.
    Reference,
    /// The seed's istioctl-proxy-sample manifest, applied by URL as the blog does.
    Sample,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Where the external and the remote cluster come from.
    #[arg(long, value_enum, default_value = "kind")]
    pub provider: ProviderArg,
    /// Istio release (1.12.0 to 1.30.x): the blog's is 1.12.
    #[arg(long, default_value = "1.30.3")]
    pub istio_version: String,
    /// With --provider contexts: the external (control plane) cluster's context.
    #[arg(long, required_if_eq("provider", "contexts"))]
    pub external_context: Option<String>,
    /// With --provider contexts: the remote (mesh) cluster's context.
    #[arg(long, required_if_eq("provider", "contexts"))]
    pub remote_context: Option<String>,
    #[arg(
        long,
        value_enum,
        default_value = "reference",
        conflicts_with = "proxy_manifest"
    )]
    pub proxy: ProxyArg,
    /// Your proxy's manifest (applied in external-istiod on the external cluster); needs --proxy-image.
    #[arg(long, requires = "proxy_image")]
    pub proxy_manifest: Option<PathBuf>,
    /// The image your manifest uses (loaded into kind / k3d; pulled by existing contexts).
    #[arg(long)]
    pub proxy_image: Option<String>,
    /// istiod replicas (>= 3 for real sharding).
    #[arg(long, default_value_t = 3)]
    pub replicas: u32,
    /// Where files, the istioctl download and logs go.
    #[arg(long, default_value = "target/cluster")]
    pub work_dir: String,
    /// Also write every rendered manifest into DIR (k8s/ built-in kinds, crd/ the rest) for offline validation.
    #[arg(long)]
    pub write_manifests: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WalkthroughArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Keep the clusters afterwards.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("--replicas {0}: at least 3 replicas are needed for real sharding (clusters.md)")]
    Replicas(u32),
    #[error("writing manifests to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl PlanArgs {
    pub fn options(&self) -> Result<PlanOptions, CliError> {
        let istio: IstioVersion = self.istio_version.parse()?;
        let provider = match self.provider {
            ProviderArg::Kind => Provider::Kind,
            ProviderArg::K3d => Provider::K3d,
            ProviderArg::Contexts => Provider::Contexts {
                external: self.external_context.clone().unwrap_or_default(),
                remote: self.remote_context.clone().unwrap_or_default(),
            },
        };
        if self.replicas < 3 {
            return Err(CliError::Replicas(self.replicas));
        }
        let mut o = PlanOptions::new(provider, istio);
        o.replicas = self.replicas;
        o.work_dir = self.work_dir.clone();
        o.proxy = match (&self.proxy_manifest, self.proxy) {
            (Some(file), _) => ProxyChoice::Manifest {
                file: file.display().to_string(),
                image: self.proxy_image.clone().unwrap_or_default(),
            },
            (None, ProxyArg::Sample) => ProxyChoice::Sample,
            (None, ProxyArg::Reference) => ProxyChoice::Reference {
                image: self
                    .proxy_image
                    .clone()
                    .unwrap_or_else(|| REFERENCE_IMAGE.into()),
            },
        };
        Ok(o)
    }
}

/// Writes the plan's rendered manifests: `k8s/` (built-in kinds, for kubernetes-validate) and
/// `crd/` (CRD-typed and tool configs, checked by this crate's serde types).
pub fn write_manifests(plan: &Plan, dir: &std::path::Path) -> Result<usize, CliError> {
    let mut n = 0;
    for m in plan.rendered_manifests() {
        for (i, d) in m.docs.iter().enumerate() {
            let builtin = d["apiVersion"].as_str().is_some_and(|a| {
                !a.contains('.') || a.ends_with(".k8s.io/v1") && a.starts_with("rbac.")
            });
            let sub = if builtin { "k8s" } else { "crd" };
            let path = dir
                .join(sub)
                .join(format!("{}.{i}.yaml", m.file.trim_end_matches(".yaml")));
            let w = |p: &std::path::Path, text: String| -> Result<(), CliError> {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|source| CliError::Write {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
                std::fs::write(p, text).map_err(|source| CliError::Write {
                    path: p.display().to_string(),
                    source,
                })
            };
            w(&path, serde_yaml_ng::to_string(d).unwrap_or_default())?;
            n += 1;
        }
    }
    Ok(n)
}

pub async fn main(args: ClusterArgs) -> Result<i32, CliError> {
    match args.command {
        ClusterCommand::Plan(a) => {
            let plan = Plan::build(&a.options()?)?;
            // `plan | head` closes the pipe early: that is the reader's
            // choice, not an error (print! would panic on it).
            let mut out = std::io::stdout().lock();
            match write!(out, "{plan}").and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                r => r.map_err(|source| CliError::Write {
                    path: "standard output".into(),
                    source,
                })?,
            }
            if let Some(dir) = &a.write_manifests {
                let n = write_manifests(&plan, dir)?;
                eprintln!("wrote {n} manifests under {}", dir.display());
            }
            Ok(0)
        }
        ClusterCommand::Up(a) => {
            let plan = Plan::build(&a.options()?)?;
            Executor::new(&plan).run(false).await?;
            Ok(0)
        }
        ClusterCommand::Walkthrough(w) => {
            let plan = Plan::build(&w.plan.options()?)?;
            let mut ex = Executor::new(&plan);
            let r = ex.run(true).await;
            if !w.keep
                && let Err(e) = ex.down().await
            {
                eprintln!("down after the walkthrough failed: {e}");
            }
            r?;
            Ok(0)
        }
        ClusterCommand::Down(a) => {
            let plan = Plan::build(&a.options()?)?;
            Executor::new(&plan).down().await?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Top {
        #[command(subcommand)]
        command: ClusterCommand,
    }

    fn plan_args(args: &[&str]) -> Result<PlanArgs, String> {
        let mut argv = vec!["cluster", "plan"];
        argv.extend_from_slice(args);
        match Top::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            ClusterCommand::Plan(a) => Ok(a),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    #[test]
    fn the_done_when_command_parses_to_the_blogs_plan() {
        let o = plan_args(&["--provider", "kind", "--istio-version", "1.12.9"])
            .unwrap()
            .options()
            .unwrap();
        assert_eq!(o.provider, Provider::Kind);
        assert_eq!(o.istio.to_string(), "1.12.9");
        assert_eq!(o.replicas, 3);
        assert_eq!(
            o.proxy,
            ProxyChoice::Reference {
                image: REFERENCE_IMAGE.into()
            }
        );
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let e = plan_args(&["--provider", "contexts"]).unwrap_err();
        assert!(e.contains("--external-context"), "{e}");
        let e = plan_args(&["--proxy-manifest", "mine.yaml"]).unwrap_err();
        assert!(e.contains("--proxy-image"), "{e}");
        let e = plan_args(&["--replicas", "2"])
            .unwrap()
            .options()
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 3 replicas"), "{e}");
        let e = plan_args(&["--istio-version", "1.11.0"])
            .unwrap()
            .options()
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside the versions"), "{e}");
        let o = plan_args(&["--proxy-manifest", "mine.yaml", "--proxy-image", "mine:1"])
            .unwrap()
            .options()
            .unwrap();
        assert_eq!(
            o.proxy,
            ProxyChoice::Manifest {
                file: "mine.yaml".into(),
                image: "mine:1".into()
            }
        );
        let o = plan_args(&[
            "--provider",
            "contexts",
            "--external-context",
            "a",
            "--remote-context",
            "b",
            "--proxy",
            "sample",
        ])
        .unwrap()
        .options()
        .unwrap();
        assert_eq!(
            o.provider,
            Provider::Contexts {
                external: "a".into(),
                remote: "b".into()
            }
        );
        assert_eq!(o.proxy, ProxyChoice::Sample);
    }

    #[test]
    fn manifests_are_written_split_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let plan =
            Plan::build(&PlanOptions::new(Provider::Kind, "1.22.8".parse().unwrap())).unwrap();
        let n = write_manifests(&plan, dir.path()).unwrap();
        assert_eq!(
            n,
            plan.rendered_manifests()
                .iter()
                .map(|m| m.docs.len())
                .sum::<usize>()
        );
        assert!(dir.path().join("k8s/istioctl-proxy.1.yaml").exists());
        assert!(dir.path().join("crd/external-istiod-gw.0.yaml").exists());
        assert!(dir.path().join("crd/kind-external.0.yaml").exists());
    }
}
