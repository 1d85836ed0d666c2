//! The blog's phases (seeds/blog-istioctl-remote-cluster.md): the aggregating
//! proxy deployed next to the external istiod (`up`), then the walkthrough:
//! port-forward to it and `istioctl proxy-status` through it.
use super::PROXY_STATUS_PHASE;
use super::builder::{BLOG, Builder, secs};
use super::options::ProxyChoice;
use super::step::{Action, ApplySource, Until};
use crate::istio::Switches;
use crate::manifests::{self, CONTROL_PLANE_NS, ManifestError};
use crate::provider::{Role, argv};

/// The blog's "Configure istioctl to use the proxy", in `up`: the proxy deployed next to istiod.
pub(super) fn deploy_proxy(b: &mut Builder<'_>) -> Result<(), ManifestError> {
    let o = b.o;
    let p = &o.provider;
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
            b.push(
                "kubectl apply -n external-istiod -f istioctl-proxy.yaml (istioctl-proxy-sample)",
                Some(Role::External),
                Action::Apply {
                    cluster: Role::External,
                    namespace: Some(CONTROL_PLANE_NS.into()),
                    source: ApplySource::Url(manifests::SAMPLE_PROXY_URL.into()),
                    timeout: secs(60),
                },
            );
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
    Ok(())
}

/// The blog's "Configure istioctl to use the proxy", in the walkthrough: the port-forward.
pub(super) fn port_forward_proxy(b: &mut Builder<'_>) {
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
}

/// The blog's "Run the istioctl proxy-status command", and the table compared with the cluster.
pub(super) fn proxy_status(b: &mut Builder<'_>, sw: &Switches) {
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
            argv: argv(&[&b.istioctl(), "proxy-status", &b.ctx(Role::Remote)]),
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
}
