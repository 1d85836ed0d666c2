//! The proxy's wire scanner and merge against prost as the oracle: the input
//! is a replica's answer (an encoded `DiscoveryResponse`; its first byte picks
//! syncz or config_dump). Whatever the proxy forwards as OK must decode with
//! prost as istioctl decodes it: the merged answer as a `DiscoveryResponse`,
//! every syncz row as a `ClientConfig`, every config_dump section as its type.
//! Two copies of the answer are merged (two replicas: duplicates found,
//! update times read), with the annotate policy (failures become marker rows).
#![no_main]

use istioctl_proxy::auth::Visibility;
use istioctl_proxy::config::FailurePolicy;
use istioctl_proxy::discovery::Replica;
use istioctl_proxy::fanout::ReplicaAnswer;
use istioctl_proxy::merge::{self, Checks, MergeFlaws, Remembered};
use istioctl_proxy::wire::Received;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use prost::bytes::Bytes;
use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use proto::envoy::envoy::service::status::v3::ClientConfig;

fn replica(name: &str) -> Replica {
    Replica {
        name: name.into(),
        address: format!("{name}:15010"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let Ok(received) = Received::decode(Bytes::copy_from_slice(body)) else {
        return;
    };
    if mode & 1 == 1 {
        // config_dump: passed through only when every section decodes.
        if istioctl_proxy::validate::config_dump(&received.resources).is_ok() {
            for (i, r) in received.resources.iter().enumerate() {
                let (type_url, value) = istioctl_proxy::wire::scan_any(r)
                    .unwrap_or_else(|e| panic!("section {i} forwarded, yet its Any: {e}"));
                oracle_section(type_url, value);
            }
        }
        return;
    }
    let syncz = proto::type_url::SYNCZ;
    let answers: Vec<ReplicaAnswer> = ["istiod-a", "istiod-b"]
        .iter()
        .map(|name| {
            let prepared = merge::prepare_syncz(&received, Checks::Full);
            let (result, prepared) = match prepared {
                Ok(p) => (Ok(received.clone()), Some(p)),
                Err(e) => (Err(e), None),
            };
            ReplicaAnswer {
                replica: replica(name),
                result,
                prepared,
            }
        })
        .collect();
    let Ok((shared, _)) = merge::merge(
        syncz,
        &answers,
        FailurePolicy::Annotate,
        &Visibility::All,
        &Remembered::default(),
        MergeFlaws::default(),
    ) else {
        return;
    };
    let answer = merge::answer_for_client(std::sync::Arc::new(shared));
    let bytes = answer.encode_to_vec();
    assert_eq!(bytes.len(), answer.encoded_len(), "announced length");
    let resp = DiscoveryResponse::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("the merged answer does not decode: {e}"));
    for (i, any) in resp.resources.iter().enumerate() {
        assert_eq!(any.type_url, proto::type_url::CLIENT_CONFIG, "row {i}");
        if let Err(e) = ClientConfig::decode(any.value.as_slice()) {
            panic!("row {i} forwarded as OK does not decode as a ClientConfig: {e}");
        }
    }
});

/// A forwarded config_dump section decodes with prost as its type.
fn oracle_section(type_url: &str, value: &[u8]) {
    use proto::envoy::envoy::admin::v3 as admin;
    let name = type_url.rsplit('/').next().unwrap_or_default();
    let ok = match name {
        "envoy.admin.v3.BootstrapConfigDump" => admin::BootstrapConfigDump::decode(value).is_ok(),
        "envoy.admin.v3.ClustersConfigDump" => admin::ClustersConfigDump::decode(value).is_ok(),
        "envoy.admin.v3.ListenersConfigDump" => admin::ListenersConfigDump::decode(value).is_ok(),
        "envoy.admin.v3.RoutesConfigDump" => admin::RoutesConfigDump::decode(value).is_ok(),
        "envoy.admin.v3.ScopedRoutesConfigDump" => {
            admin::ScopedRoutesConfigDump::decode(value).is_ok()
        }
        "envoy.admin.v3.SecretsConfigDump" => admin::SecretsConfigDump::decode(value).is_ok(),
        "envoy.admin.v3.EcdsConfigDump" => admin::EcdsConfigDump::decode(value).is_ok(),
        _ => true,
    };
    assert!(ok, "a {name} section forwarded as OK does not decode");
}
