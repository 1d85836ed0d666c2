//! The phases of the install guide (seeds/install-external-controlplane.md)
//! up to a running external istiod: istioctl, the shared CA, the gateway in the
//! external cluster, the remote config cluster, the external control plane.
use super::builder::{Builder, CLUSTERS, GUIDE, secs};
use super::step::{Action, ApplySource, Lookup, Until};
use crate::manifests::{self, CONTROL_PLANE_NS, ManifestError};
use crate::provider::{DOCKER_NETWORK, Role, argv};

/// Download istioctl and samples: the release tarball of the Istio version (cached).
pub(super) fn download_istioctl(b: &mut Builder<'_>) {
    let o = b.o;
    let v = o.istio;
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
}

/// Plant the shared CA (trust pitfall): generated certificates in `cacerts` before either istiod starts.
pub(super) fn plant_shared_ca(b: &mut Builder<'_>) -> Result<(), ManifestError> {
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
    Ok(())
}

/// The guide's "Set up a gateway in the external cluster": the ingress gateway in istio-system,
/// and its LoadBalancer IP as `EXTERNAL_ISTIOD_ADDR`.
pub(super) fn external_gateway(b: &mut Builder<'_>) -> Result<(), ManifestError> {
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
            &b.ctx(Role::External),
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
    Ok(())
}

/// The guide's "Set up the remote config cluster": `istioctl manifest generate` of the remote
/// profile, applied CRDs first.
pub(super) fn remote_config_cluster(b: &mut Builder<'_>) -> Result<(), ManifestError> {
    let o = b.o;
    let p = &o.provider;
    let v = o.istio;
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
    Ok(())
}

/// The guide's "Set up the control plane in the external cluster": the remote secret, the
/// external istiod, its webhook's caBundle, the Gateway + VirtualService to it.
pub(super) fn external_control_plane(b: &mut Builder<'_>) -> Result<(), ManifestError> {
    let o = b.o;
    let p = &o.provider;
    let v = o.istio;
    b.phase("Set up the control plane in the external cluster", GUIDE);
    let remote_secret = b.file("remote-secret.yaml");
    let mut secret_argv = argv(&[
        &b.istioctl(),
        "create-remote-secret",
        &b.ctx(Role::Remote),
        "--type=config",
        &format!("--namespace={CONTROL_PLANE_NS}"),
        "--service-account=istiod",
        "--create-service-account=false",
    ]);
    if let Some(container) = p.control_plane_container(Role::Remote) {
        b.push(
            "the remote API server as the external cluster sees it (control-plane container IP)",
            Some(Role::Remote),
            Action::Resolve {
                vars: vec!["REMOTE_API_SERVER_IP".into()],
                lookup: Lookup::ContainerIp {
                    container,
                    network: DOCKER_NETWORK.into(),
                },
                cluster: None,
                timeout: secs(10),
            },
        );
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
            &b.ctx(Role::External),
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
    Ok(())
}
