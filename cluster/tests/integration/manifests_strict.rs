//! Every manifest the crate renders deserializes into its type with NO unknown
//! field: k8s-openapi types through `serde_ignored` (an ignored path is a typo
//! the API server's strict validation would reject), our CRD types with
//! `deny_unknown_fields`. Over every provider, Istio version and proxy choice.
use cluster::crd::*;
use cluster::{IstioVersion, Plan, PlanOptions, Provider, ProxyChoice};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn ignored_paths<T: DeserializeOwned>(doc: &Value) -> Result<Vec<String>, String> {
    let mut ignored = Vec::new();
    // serde_ignored marks each Option level with "?": dropped for readable paths.
    serde_ignored::deserialize::<_, _, T>(doc.clone(), |p| {
        ignored.push(p.to_string().replace(".?", ""))
    })
    .map_err(|e| e.to_string())?;
    Ok(ignored)
}

fn strict<T: DeserializeOwned>(doc: &Value) -> Result<Vec<String>, String> {
    serde_json::from_value::<T>(doc.clone())
        .map(|_| vec![])
        .map_err(|e| e.to_string())
}

/// The ignored paths of one document, or why it does not deserialize at all.
fn check(doc: &Value) -> Result<Vec<String>, String> {
    let api = doc["apiVersion"].as_str().unwrap_or("");
    let kind = doc["kind"].as_str().unwrap_or("");
    match (api, kind) {
        ("v1", "Namespace") => ignored_paths::<Namespace>(doc),
        ("v1", "Secret") => ignored_paths::<Secret>(doc),
        ("v1", "Service") => ignored_paths::<Service>(doc),
        ("v1", "ServiceAccount") => ignored_paths::<ServiceAccount>(doc),
        ("apps/v1", "Deployment") => ignored_paths::<Deployment>(doc),
        ("rbac.authorization.k8s.io/v1", "Role") => ignored_paths::<Role>(doc),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => ignored_paths::<RoleBinding>(doc),
        ("kind.x-k8s.io/v1alpha4", "Cluster") => strict::<KindCluster>(doc),
        ("metallb.io/v1beta1", "IPAddressPool") => strict::<IpAddressPool>(doc),
        ("metallb.io/v1beta1", "L2Advertisement") => strict::<L2Advertisement>(doc),
        ("install.istio.io/v1alpha1", "IstioOperator") => strict::<IstioOperator>(doc),
        ("networking.istio.io/v1beta1", "Gateway") => strict::<Gateway>(doc),
        ("networking.istio.io/v1beta1", "VirtualService") => strict::<VirtualService>(doc),
        _ => Err(format!(
            "no type to check {api} {kind} against: add one here"
        )),
    }
}

fn plans() -> Vec<Plan> {
    let mut out = vec![];
    for p in [
        Provider::Kind,
        Provider::K3d,
        Provider::Contexts {
            external: "a".into(),
            remote: "b".into(),
        },
    ] {
        for v in ["1.12.9", "1.14.6", "1.15.7", "1.16.0", "1.22.8", "1.30.3"] {
            let istio: IstioVersion = v.parse().unwrap();
            for proxy in [
                ProxyChoice::Reference {
                    image: "istioctl-proxy:conformance".into(),
                },
                ProxyChoice::Sample,
                ProxyChoice::Manifest {
                    file: "mine.yaml".into(),
                    image: "mine:1".into(),
                },
            ] {
                let mut o = PlanOptions::new(p.clone(), istio);
                o.proxy = proxy;
                out.push(Plan::build(&o).unwrap());
            }
        }
    }
    out
}

#[test]
fn every_rendered_manifest_has_no_unknown_field() {
    let mut checked = 0;
    let mut problems = vec![];
    for plan in plans() {
        for m in plan.rendered_manifests() {
            for (i, doc) in m.docs.iter().enumerate() {
                checked += 1;
                match check(doc) {
                    Ok(ignored) if ignored.is_empty() => {}
                    Ok(ignored) => problems.push(format!(
                        "{} document {i}: unknown fields {ignored:?}",
                        m.file
                    )),
                    Err(e) => problems.push(format!("{} document {i}: {e}", m.file)),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 500, "only {checked} documents checked");
}

/// The check has teeth: a misspelt field is reported, for a k8s-openapi type and for ours.
#[test]
fn a_misspelt_field_is_caught() {
    let plan = Plan::build(&PlanOptions::new(Provider::Kind, "1.30.3".parse().unwrap())).unwrap();
    let proxy = plan
        .rendered_manifests()
        .into_iter()
        .find(|m| m.file == "istioctl-proxy.yaml")
        .unwrap();
    let mut dep = proxy
        .docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .unwrap()
        .clone();
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "IfNotPresent".into();
    assert_eq!(
        check(&dep).unwrap(),
        vec!["spec.template.spec.containers.0.imagePullPolicyy".to_string()]
    );

    let gw = plan
        .rendered_manifests()
        .into_iter()
        .find(|m| m.file == "external-istiod-gw.yaml")
        .unwrap();
    let mut vs = gw.docs[1].clone();
    vs["spec"]["tls"][0]["match"][0]["sniHost"] = serde_json::json!(["*"]);
    let e = check(&vs).unwrap_err();
    assert!(e.contains("unknown field `sniHost`"), "{e}");

    let iop = plan
        .rendered_manifests()
        .into_iter()
        .find(|m| m.file == "external-istiod.yaml")
        .unwrap();
    let mut op = iop.docs[0].clone();
    op["spec"]["component"] = serde_json::json!({});
    assert!(
        check(&op)
            .unwrap_err()
            .contains("unknown field `component`")
    );
}
