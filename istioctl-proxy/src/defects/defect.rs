//! The defects by name: what each breaks, its kebab-case name, and the set of
//! those switched on.

use std::str::FromStr;

/// One defect of the blog's sample (or a typical bug), switched on by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Defect {
    /// (a) config_dump goes to the first replica only.
    ConfigDumpFirstReplicaOnly,
    /// (b) a missing `authorization` header aborts the connection (the sample's panic).
    CrashOnMissingToken,
    /// (c) sequential fan-out, fail on the first error, 2 s per replica.
    SequentialFailFast,
    /// (d) a proxy reported by two replicas appears twice.
    NoDedupe,
    /// (e) the last replica's results are omitted with no error and no marker.
    DropLastReplicaSilently,
    /// (f) the first replica's ControlPlane ID instead of `<external>`.
    KeepReplicaControlPlaneId,
    /// (g) gRPC's 4 MiB default as the maximum answer size.
    Cap4MiB,
    /// (h) a request that ACKs one of the proxy's own answers (its
    /// `response_nonce` is a nonce the proxy sent on that stream) ends the
    /// stream with an error. Plausible for a proxy written against istioctl
    /// 1.16+, which never ACKs debug responses: it treats any ACK on a debug
    /// stream as a protocol violation, and breaks istioctl 1.8-1.15, whose adsc
    /// ACKs every response (`1.12.0:pkg/adsc/adsc.go` `ack`).
    FailOnAck,
    /// (i) config_dump is sent to every replica and answered only when every
    /// replica has answered (or the request deadline passed): istiod ≤1.19
    /// never answers for a proxy it does not have, so this hangs there.
    ConfigDumpWaitsForEveryReplica,
    /// (j) an undecodable request ends the stream with status OK and no answer.
    SilentOnBadRequest,
    /// (k) requests of any size are read (and held) in full.
    UnboundedRequests,
    /// (l) a connection that does not start with a TLS or HTTP/2 handshake
    /// stops the accept loop (the proxy serves no new client).
    DieOnGarbage,
    /// (m) at most 32 client connections, no idle timeout: idle ones starve others.
    TinyConnectionCap,
    /// (n) own-identity mode filters syncz and config_dump only (the audit's
    /// finding: connections and every istio.io/debug path unfiltered).
    AuthzSynczOnly,
    /// (o) a global lock from a stream's start to its first request: a stream
    /// that sends nothing blocks every other one.
    SerialStreams,
    /// (p) a replica that failed once is never asked again and its proxies
    /// are silently left out (a circuit breaker that never closes): a
    /// restarted or recovered replica is not seen.
    ForgetFailedReplicas,
    /// (q) no backpressure on answers: no limit on answers in flight, and a
    /// client that does not read its answer keeps it (and its connection)
    /// for as long as it likes.
    UnboundedAnswers,
    /// (r) DNS discovery resolves the name once, at start, and never again: a
    /// replica added later is never asked, and one restarted with a new
    /// address is asked at its old one forever.
    DnsOnce,
    /// (s) every replica's answer is also decoded in full (each resource an
    /// owned `Any`, each syncz row a decoded `ClientConfig`, as the blog's
    /// sample and the first reference proxy did) and the copy is held as
    /// long as the merged answer: memory far above the answer's size.
    BufferDecodedAnswers,
    /// (t) replicas' answers checked as the reference did before issue 22:
    /// the envelope, each `Any`'s framing, the last type URL and the node id;
    /// the rest of a row forwarded as bytes, config_dump unchecked. One row
    /// istioctl cannot decode then breaks the whole table, naming no replica.
    ForwardUnchecked,
}

#[cfg_attr(not(feature = "test-defects"), allow(dead_code))]
impl Defect {
    pub const ALL: [Defect; 20] = [
        Defect::ConfigDumpFirstReplicaOnly,
        Defect::CrashOnMissingToken,
        Defect::SequentialFailFast,
        Defect::NoDedupe,
        Defect::DropLastReplicaSilently,
        Defect::KeepReplicaControlPlaneId,
        Defect::Cap4MiB,
        Defect::FailOnAck,
        Defect::ConfigDumpWaitsForEveryReplica,
        Defect::SilentOnBadRequest,
        Defect::UnboundedRequests,
        Defect::DieOnGarbage,
        Defect::TinyConnectionCap,
        Defect::AuthzSynczOnly,
        Defect::SerialStreams,
        Defect::ForgetFailedReplicas,
        Defect::UnboundedAnswers,
        Defect::DnsOnce,
        Defect::BufferDecodedAnswers,
        Defect::ForwardUnchecked,
    ];

    /// The kebab-case name used in `ISTIOCTL_PROXY_DEFECTS`.
    pub fn name(self) -> &'static str {
        match self {
            Defect::ConfigDumpFirstReplicaOnly => "config-dump-first-replica-only",
            Defect::CrashOnMissingToken => "crash-on-missing-token",
            Defect::SequentialFailFast => "sequential-fail-fast",
            Defect::NoDedupe => "no-dedupe",
            Defect::DropLastReplicaSilently => "drop-last-replica-silently",
            Defect::KeepReplicaControlPlaneId => "keep-replica-control-plane-id",
            Defect::Cap4MiB => "cap-4-mib",
            Defect::FailOnAck => "fail-on-ack",
            Defect::ConfigDumpWaitsForEveryReplica => "config-dump-waits-for-every-replica",
            Defect::SilentOnBadRequest => "silent-on-bad-request",
            Defect::UnboundedRequests => "unbounded-requests",
            Defect::DieOnGarbage => "die-on-garbage",
            Defect::TinyConnectionCap => "tiny-connection-cap",
            Defect::AuthzSynczOnly => "authz-syncz-only",
            Defect::SerialStreams => "serial-streams",
            Defect::ForgetFailedReplicas => "forget-failed-replicas",
            Defect::UnboundedAnswers => "unbounded-answers",
            Defect::DnsOnce => "dns-once",
            Defect::BufferDecodedAnswers => "buffer-decoded-answers",
            Defect::ForwardUnchecked => "forward-unchecked",
        }
    }

    /// Parses `a,b,...` (kebab-case names; empty entries ignored).
    pub fn parse_list(list: &str) -> Result<Vec<Defect>, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl FromStr for Defect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase();
        Defect::ALL
            .into_iter()
            .find(|d| d.name() == norm || d.name().replace('-', "") == norm.replace('-', ""))
            .ok_or_else(|| {
                let names: Vec<_> = Defect::ALL.iter().map(|d| d.name()).collect();
                format!("unknown defect {s:?}; known: {}", names.join(", "))
            })
    }
}

/// The defects switched on (a bit per defect). Empty without the
/// `test-defects` feature, whatever it was built from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Set(u32);

impl Set {
    pub fn of(defects: &[Defect]) -> Self {
        Set(defects.iter().fold(0, |set, d| set | Self::bit(*d)))
    }

    const fn bit(d: Defect) -> u32 {
        1 << d as u32
    }

    /// Whether `d` is on (never without `test-defects`).
    pub fn has(self, d: Defect) -> bool {
        cfg!(feature = "test-defects") && self.0 & Self::bit(d) != 0
    }
}

const _: () = assert!(Defect::ALL.len() <= u32::BITS as usize);

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "test-defects")]
    fn a_set_has_what_it_was_made_of() {
        let set = Set::of(&[Defect::NoDedupe, Defect::BufferDecodedAnswers]);
        for d in Defect::ALL {
            let want = matches!(d, Defect::NoDedupe | Defect::BufferDecodedAnswers);
            assert_eq!(set.has(d), want, "{d}");
        }
        assert!(!Set::default().has(Defect::NoDedupe));
    }

    #[test]
    fn names_round_trip() {
        for d in Defect::ALL {
            assert_eq!(d.name().parse::<Defect>(), Ok(d));
        }
        assert_eq!(
            Defect::parse_list("no-dedupe, cap-4-mib,"),
            Ok(vec![Defect::NoDedupe, Defect::Cap4MiB])
        );
        assert_eq!("cap4mib".parse::<Defect>(), Ok(Defect::Cap4MiB));
        assert!(
            Defect::parse_list("nope")
                .unwrap_err()
                .contains("known: config-dump-first-replica-only")
        );
    }
}
