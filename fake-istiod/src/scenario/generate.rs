//! Synthetic meshes: `generate: [{count: 10000, namespaces: 50, replicas: all}]`.

use super::{Proxy, ProxyKind, TypeStatus};
use proto::IstioVersion;

/// Proxies spread round-robin over replicas and namespaces, with stable names.
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    pub count: usize,
    pub namespaces: usize,
    /// `None` = all replicas.
    pub replicas: Option<Vec<String>>,
    pub version: IstioVersion,
    pub kind: ProxyKind,
    pub cluster: String,
    /// Pod name prefix (the deployment name).
    pub prefix: String,
    /// Watched types; `None` = the kind's defaults, all SYNCED.
    pub types: Option<Vec<TypeStatus>>,
}

const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A Kubernetes-looking random suffix derived from a number.
fn suffix(mut n: u64, len: usize) -> String {
    n = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5bd1_e995;
    (0..len)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize];
            n = (n / ALPHABET.len() as u64) ^ n.rotate_left(17);
            c as char
        })
        .collect()
}

impl Generator {
    /// The generated proxies; `all_replicas` is every replica name in scenario order.
    pub fn proxies(&self, all_replicas: &[&str]) -> Vec<Proxy> {
        let owners: Vec<&str> = match &self.replicas {
            Some(r) if !r.is_empty() => r.iter().map(|s| s.as_str()).collect(),
            _ => all_replicas.to_vec(),
        };
        if owners.is_empty() {
            return Vec::new();
        }
        let rs = suffix(self.prefix.len() as u64, 9);
        (0..self.count)
            .map(|i| {
                let ns = format!("ns-{}", i % self.namespaces.max(1));
                let id = format!("{}-{i}-{rs}-{}.{ns}", self.prefix, suffix(i as u64, 5));
                let mut p = Proxy::new(
                    &id,
                    owners[i % owners.len()],
                    self.version.clone(),
                    self.kind,
                );
                p.cluster = self.cluster.clone();
                if let Some(t) = &self.types {
                    p.types = t.clone();
                }
                p
            })
            .collect()
    }
}
