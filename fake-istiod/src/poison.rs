//! The `poison` fault: a replica whose answers hold valid rows and ONE row
//! istioctl cannot decode (issue 22's reproducers), or, for `config_dump`, a
//! config_dump section that does not decode. istioctl then fails the whole
//! command (`istioctl/pkg/writer/pilot/status.go` `setupStatusPrint`:
//! `could not unmarshal ClientConfig: proto: cannot parse invalid wire-format data`).
//!
//! Every kind fits in a well-formed `Any` (the bad bytes lie in its value),
//! so the replica still answers through the generated gRPC service.

use prost::Message;
use proto::envoy::envoy::config::core::v3::Node;
use proto::envoy::google::protobuf::Any;
use proto::type_url;

/// Which row (or section) is poisoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Poison {
    /// The issue's `poison-1.hns1`: a node, then one garbage byte where
    /// `generic_xds_configs` starts (`1a 01 ff`).
    Wire,
    /// A nested `Any` (`generic_xds_configs[0].xds_config`) whose type URL
    /// occurs twice: first invalid UTF-8, then valid (the last one wins, and
    /// a decoder checking only that one misses it).
    Utf8,
    /// A varint where `xds_config` (a message, field 2) belongs.
    Varint,
    /// A nested `Any` holding an unknown field of 100 nested groups: past
    /// prost's recursion limit of 100 (Go's is 10,000).
    Nesting,
    /// config_dump: the clusters section does not decode (syncz is clean).
    ConfigDump,
}

impl Poison {
    pub const ALL: [Poison; 5] = [
        Poison::Wire,
        Poison::Utf8,
        Poison::Varint,
        Poison::Nesting,
        Poison::ConfigDump,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Poison::Wire => "wire",
            Poison::Utf8 => "utf8",
            Poison::Varint => "varint",
            Poison::Nesting => "nesting",
            Poison::ConfigDump => "config_dump",
        }
    }

    pub fn from_name(name: &str) -> Option<Poison> {
        Poison::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the syncz answer carries the poisoned row.
    pub fn poisons_syncz(self) -> bool {
        self != Poison::ConfigDump
    }

    /// The bad row for a syncz answer (node `poison-<kind>.<namespace>`).
    pub fn syncz_row(self, namespace: &str) -> Any {
        let id = format!("poison-{}.{namespace}", self.name());
        let node = Node {
            id,
            ..Default::default()
        }
        .encode_to_vec();
        // ClientConfig.node (1)
        let mut value = len_delimited(1, &node);
        match self {
            Poison::Wire | Poison::ConfigDump => value.extend_from_slice(&[0x1a, 0x01, 0xff]),
            Poison::Varint => value.extend_from_slice(&[0x10, 0x01]),
            Poison::Utf8 => {
                let mut any = len_delimited(1, &[0xff, 0xfe]);
                any.extend(len_delimited(1, type_url::CLIENT_CONFIG.as_bytes()));
                value.extend(generic_with(&any));
            }
            Poison::Nesting => {
                let mut any = len_delimited(1, type_url::CLIENT_CONFIG.as_bytes());
                any.extend(std::iter::repeat_n(0x1b, 100)); // field 3, start group
                any.extend(std::iter::repeat_n(0x1c, 100)); // field 3, end group
                value.extend(generic_with(&any));
            }
        }
        Any {
            type_url: type_url::CLIENT_CONFIG.to_string(),
            value,
        }
    }

    /// Spoils a config_dump answer's clusters section (a
    /// `dynamic_active_clusters` entry of one byte that is no message).
    pub fn spoil_config_dump(self, sections: &mut [Any]) {
        if self != Poison::ConfigDump {
            return;
        }
        if let Some(s) = sections
            .iter_mut()
            .find(|s| s.type_url.ends_with("envoy.admin.v3.ClustersConfigDump"))
        {
            s.value.extend_from_slice(&[0x1a, 0x01, 0xff]);
        }
    }
}

/// `ClientConfig.generic_xds_configs` (3) with `type_url` (1) and
/// `xds_config` (4) = `any`.
fn generic_with(any: &[u8]) -> Vec<u8> {
    let mut generic = len_delimited(1, type_url::CLIENT_CONFIG.as_bytes());
    generic.extend(len_delimited(4, any));
    len_delimited(3, &generic)
}

fn len_delimited(field: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 6);
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::envoy::envoy::admin::v3::ClustersConfigDump;
    use proto::envoy::envoy::service::status::v3::ClientConfig;

    #[test]
    fn every_syncz_kind_fails_a_full_decode() {
        for p in Poison::ALL.into_iter().filter(|p| p.poisons_syncz()) {
            let row = p.syncz_row("hns1");
            assert!(
                ClientConfig::decode(row.value.as_slice()).is_err(),
                "{}",
                p.name()
            );
        }
        // The wire kind is the shape: the node, then `1a 01 ff`.
        let row = Poison::Wire.syncz_row("hns1");
        assert!(row.value.ends_with(&[0x1a, 0x01, 0xff]));
    }

    #[test]
    fn the_config_dump_kind_spoils_the_clusters_section() {
        let mut sections = vec![Any {
            type_url: "type.googleapis.com/envoy.admin.v3.ClustersConfigDump".into(),
            value: ClustersConfigDump::default().encode_to_vec(),
        }];
        Poison::ConfigDump.spoil_config_dump(&mut sections);
        assert!(ClustersConfigDump::decode(sections[0].value.as_slice()).is_err());
    }
}
