//! The Kubernetes manifest beside the crate: least privilege, no key material,
//! and container args the real CLI accepts.
use clap::Parser;
use serde_yaml_ng::Value;

fn docs() -> Vec<Value> {
    let text = include_str!("../../deploy/istioctl-proxy.yaml");
    assert!(
        !text.contains("PRIVATE KEY"),
        "no private key in the repository"
    );
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn of_kind(kind: &str) -> Vec<Value> {
    docs().into_iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn has_every_object_and_no_secret() {
    let kinds: Vec<String> = docs()
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment"
        ]
    );
}

#[test]
fn role_only_reads_and_watches_pods() {
    let role = &of_kind("Role")[0];
    let rules = role["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0]["resources"],
        serde_yaml_ng::from_str::<Value>("[pods]").unwrap()
    );
    assert_eq!(
        rules[0]["verbs"],
        serde_yaml_ng::from_str::<Value>("[get, list, watch]").unwrap()
    );
}

#[test]
fn service_on_9090() {
    let svc = &of_kind("Service")[0];
    assert_eq!(svc["spec"]["ports"][0]["port"], Value::from(9090));
}

#[test]
fn container_args_are_valid_cli() {
    let dep = &of_kind("Deployment")[0];
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            a.as_str()
                .unwrap()
                .replace("$(POD_NAMESPACE)", "external-istiod")
        })
        .collect();
    let parsed = istioctl_proxy::cli::Args::try_parse_from(
        std::iter::once("istioctl-proxy".to_string()).chain(args),
    )
    .expect("the manifest's args parse");
    let config = parsed.to_config().expect("and make a configuration");
    assert!(
        matches!(config.serve, istioctl_proxy::ServeTransport::Tls { .. }),
        "TLS, not plaintext"
    );
    assert!(
        matches!(config.discovery, istioctl_proxy::Discovery::Kubernetes { ref namespace, port: 15012, .. } if namespace == "external-istiod")
    );
    assert!(matches!(
        config.identity,
        istioctl_proxy::IdentityMode::Passthrough
    ));
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"],
        Value::from("/readyz")
    );
}
