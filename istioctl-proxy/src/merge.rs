//! Turning the replicas' answers into one response (pure functions, no I/O).
//!
//! Rules (documented in the README):
//! - syncz: every replica's `ClientConfig`s, one per node id. When two replicas
//!   report the same proxy (a reconnect race), the copy with the newest
//!   `last_updated` (the max over its `generic_xds_configs`) wins; a copy with a
//!   timestamp beats one without; on a tie the replica first in name order wins
//!   (and within one replica, its first copy). Kept copies are passed through
//!   byte for byte, in replica name order and each replica's own order (as
//!   istioctl concatenates the answers of several istiods itself:
//!   `istioctl/pkg/multixds/gather.go` `mergeShards`; it sorts the rows it
//!   prints, and nothing fixes the order of the answer).
//! - other fan-out types (`istio.io/connections`, `istio.io/debug`): resources
//!   concatenated in replica name order.
//! - ControlPlane: `{"Component":"istiod","ID":"<external>","Info":…}`; Info is
//!   the replicas' build info; when versions differ, the LOWEST version wins (the
//!   capabilities every replica has; ties: replica name order), and a warning is logged.
//! - failures: policy `fail` → `Unavailable` naming every failed replica and why;
//!   `annotate` → one marker `ClientConfig` per failed replica whose node id reads
//!   `<replica> (unreachable: <reason>)`.

use crate::auth::Visibility;
use crate::config::FailurePolicy;
use crate::discovery::Replica;
use crate::fanout::ReplicaAnswer;
use crate::upstream::ReplicaError;
use crate::validate as checked;
use crate::wire::{self, Answer, Piece, RawResponse, Received, Shared, Stamp};
use prost::Message;
use prost::bytes::Bytes;
use proto::control_plane::EXTERNAL_ID;
use proto::envoy::envoy::config::core::v3::{ControlPlane, Node};
use proto::envoy::envoy::service::status::v3::ClientConfig;
use proto::envoy::google::protobuf::{Any, Timestamp};
use proto::{BuildInfo, IstioControlPlaneInstance, IstioVersion, type_url};
use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock};

/// Switches for deliberate defects (all off in a correct proxy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MergeFlaws {
    pub no_dedupe: bool,
    pub drop_last_replica: bool,
    pub keep_replica_id: bool,
}

/// What a merge produced besides the answer.
#[derive(Debug, Default)]
pub struct MergeOutcome {
    /// ControlPlane seen per replica name (remembered for later answers).
    pub seen: Vec<(String, IstioControlPlaneInstance)>,
    /// syncz: which rows the answer kept (config_dump routing learns their owners).
    pub kept: Option<KeptRows>,
}

/// The rows a syncz answer kept: per answer (its index in the merged
/// answers), the indexes of the rows it dropped as duplicates, ascending;
/// rows the caller may not see were left out too.
#[derive(Debug)]
pub struct KeptRows {
    runs: Vec<(usize, Vec<u32>)>,
    visibility: Visibility,
    /// A digest of which replica kept which node ids (and how many rows):
    /// equal digests, same owners (a sum of hashes: a collision, unlikely,
    /// would only leave an owner stale, which config_dump corrects).
    pub digest: u64,
}

impl KeptRows {
    /// Whom the answer was for (a whole-mesh answer teaches every owner).
    pub fn visibility(&self) -> &Visibility {
        &self.visibility
    }

    /// `(node id, replica name)` of every kept row, from the answers the
    /// merge was given.
    pub fn owners<'a>(
        &'a self,
        answers: &'a [ReplicaAnswer],
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.runs.iter().flat_map(move |(a, dropped)| {
            let answer = answers.get(*a);
            let resources: &[Bytes] = answer
                .and_then(|a| a.result.as_ref().ok())
                .map_or(&[], |r| &r.resources[..]);
            let name = answer.map_or("", |a| a.replica.name.as_str());
            let mut dropped = dropped.iter().peekable();
            resources.iter().enumerate().filter_map(move |(i, r)| {
                if dropped.next_if(|&&d| d as usize == i).is_some() {
                    return None;
                }
                let id = row_id(r)?;
                self.visibility.sees(id).then_some((id, name))
            })
        })
    }
}

/// What earlier answers taught: per replica name, its ControlPlane (istiod
/// 1.25+ sends it only on syncz; markers show the ID instead of an address).
#[derive(Debug, Clone, Default)]
pub struct Remembered {
    pub control_planes: HashMap<String, IstioControlPlaneInstance>,
}

/// A replica's answer after validation.
struct Valid<'a> {
    /// Its index in the merged answers.
    at: usize,
    replica: &'a Replica,
    received: &'a Received,
    cp: Option<IstioControlPlaneInstance>,
    /// syncz: its rows' keys (prepared on arrival, or now).
    keys: Cow<'a, [Key]>,
}

/// A syncz answer read as it arrived: its ControlPlane and its rows' keys,
/// sorted (so that copies of one node id are found without comparing ids).
#[derive(Debug, Clone)]
pub struct Prepared {
    cp: Option<IstioControlPlaneInstance>,
    keys: Vec<Key>,
}

/// One syncz row: the hash of its node id and its index in the answer.
/// Ordered by hash, then index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    hash: u64,
    index: u32,
}

/// The hasher of node ids: one random seed for the process, so that hashes
/// of different replicas' answers compare, and nobody can choose node ids
/// that collide (a collision costs only a comparison of ids, but still).
static ID_HASH: LazyLock<foldhash::fast::RandomState> = LazyLock::new(Default::default);

/// The node id of a checked syncz row (`None` if it does not read).
fn row_id(resource: &[u8]) -> Option<&str> {
    let (_, value) = wire::scan_any_raw(resource).ok()?;
    wire::client_config_id(value).ok()
}

/// How much of each row is checked before it is forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Checks {
    /// Every row decoded as istioctl decodes it ([`crate::validate`]).
    #[default]
    Full,
    /// The envelope, each `Any`'s framing, the type URL and the node id only:
    /// the `forward-unchecked` defect (the reference proxy before issue 22).
    Framing,
}

/// Reads a syncz answer (checks, node ids, their hashes, sorted): done per
/// replica as its answer arrives, so that the merge after the last one
/// only has to find the duplicates among them.
pub fn prepare_syncz(resp: &RawResponse, checks: Checks) -> Result<Prepared, ReplicaError> {
    let mut keys = Vec::with_capacity(resp.resources.len());
    let cp = validate(resp, true, checks, |index, id| {
        keys.push(Key {
            hash: ID_HASH.hash_one(id.as_bytes()),
            index: index as u32,
        })
    })?;
    keys.sort_unstable();
    Ok(Prepared { cp, keys })
}

/// Merges fan-out answers. `known` holds what earlier answers taught. The
/// kept resources are the replicas' bytes (shared, not copied); the answer
/// gets a fresh version and nonce per client (see [`answer_for_client`]).
pub fn merge(
    type_url_requested: &str,
    answers: &[ReplicaAnswer],
    policy: FailurePolicy,
    visibility: &Visibility,
    known: &Remembered,
    flaws: MergeFlaws,
) -> Result<(Shared, MergeOutcome), tonic::Status> {
    let answers = if flaws.drop_last_replica && !answers.is_empty() {
        &answers[..answers.len() - 1]
    } else {
        answers
    };
    let syncz = type_url_requested == type_url::SYNCZ;
    let mut valid = Vec::new();
    let mut failed: Vec<(&Replica, ReplicaError)> = Vec::new();
    for (at, a) in answers.iter().enumerate() {
        let checked = match (&a.result, &a.prepared) {
            (Err(e), _) => Err(e.clone()),
            (Ok(resp), Some(p)) if syncz => Ok((resp, p.cp.clone(), Cow::Borrowed(&p.keys[..]))),
            (Ok(resp), _) if syncz => {
                prepare_syncz(resp, Checks::Full).map(|p| (resp, p.cp, Cow::Owned(p.keys)))
            }
            (Ok(resp), _) => validate(resp, false, Checks::Full, |_, _| {})
                .map(|cp| (resp, cp, Cow::Borrowed(&[][..]))),
        };
        match checked {
            Ok((received, cp, keys)) => valid.push(Valid {
                at,
                replica: &a.replica,
                received,
                cp,
                keys,
            }),
            Err(e) => failed.push((&a.replica, e)),
        }
    }
    let refused = common_caller_error(&failed, answers.len()) != tonic::Code::Unavailable;
    if !failed.is_empty() && (policy == FailurePolicy::Fail || refused) {
        return Err(failure_status(&failed, answers.len()));
    }

    let mut outcome = MergeOutcome::default();
    let mut pieces = Vec::new();
    let mut rows = 0;
    if syncz {
        let (dropped, dropped_sums) = if flaws.no_dedupe {
            (vec![Vec::new(); valid.len()], vec![0; valid.len()])
        } else {
            duplicates(&valid)
        };
        let all = *visibility == Visibility::All;
        let mut digest = 0u64;
        for ((v, dropped), dropped_sum) in valid.iter().zip(&dropped).zip(dropped_sums) {
            let mut skip = dropped.iter().peekable();
            let resources = &v.received.resources;
            let mut visible_sum = 0u64;
            let kept = (0..resources.len()).filter(|&i| {
                if skip.next_if(|&&d| d as usize == i).is_some() {
                    return false;
                }
                if all {
                    return true;
                }
                match row_id(&resources[i]) {
                    Some(id) if visibility.sees(id) => {
                        visible_sum = visible_sum.wrapping_add(ID_HASH.hash_one(id.as_bytes()));
                        true
                    }
                    _ => false,
                }
            });
            let n = wire::pieces_of(v.received, kept, &mut pieces);
            rows += n;
            let sum = if all {
                v.keys
                    .iter()
                    .fold(0u64, |s, k| s.wrapping_add(k.hash))
                    .wrapping_sub(dropped_sum)
            } else {
                visible_sum
            };
            digest = digest.rotate_left(17) ^ ID_HASH.hash_one((v.replica.name.as_str(), sum, n));
        }
        outcome.kept = Some(KeptRows {
            runs: valid.iter().map(|v| v.at).zip(dropped).collect(),
            visibility: visibility.clone(),
            digest,
        });
    } else {
        for v in &valid {
            let resources = &v.received.resources;
            let kept = (0..resources.len()).filter(|&i| {
                // Own-identity mode: only the caller's namespace (crate::authz).
                type_url_requested != type_url::CONNECTIONS
                    || crate::authz::sees_connection(&resources[i], visibility)
            });
            rows += wire::pieces_of(v.received, kept, &mut pieces);
        }
    }
    for (replica, err) in &failed {
        pieces.push(Piece::Any(marker(&display_name(replica, known), err)));
        rows += 1;
    }

    outcome.seen = valid
        .iter()
        .filter_map(|v| v.cp.clone().map(|cp| (v.replica.name.clone(), cp)))
        .collect();
    let mut infos: Vec<(String, BuildInfo)> = valid
        .iter()
        .filter_map(|v| {
            v.cp.as_ref()
                .or_else(|| known.control_planes.get(&v.replica.name))
                .map(|cp| (v.replica.name.clone(), cp.info.clone()))
        })
        .collect();
    let mut id = EXTERNAL_ID.to_string();
    if flaws.keep_replica_id
        && let Some(first) = valid.first()
    {
        id = first
            .cp
            .as_ref()
            .map(|cp| cp.id.clone())
            .unwrap_or_else(|| first.replica.name.clone());
    }
    let shared = Shared {
        pieces,
        rows,
        type_url: type_url_requested.to_string(),
        control_plane: Some(external_control_plane(&id, &mut infos)),
        ..Default::default()
    };
    Ok((shared, outcome))
}

/// One client's answer: the shared merge with its own version and nonce.
pub fn answer_for_client(shared: Arc<Shared>) -> Answer {
    Answer {
        version_info: version_info(),
        nonce: fresh_nonce(),
        shared,
    }
}

/// Checks one answer; returns the replica's build info if it sent a
/// ControlPlane, and for syncz calls `row` with each resource's index and
/// node id. Every resource must be a well-formed `Any`; every syncz row a
/// `ClientConfig` that decodes as istioctl decodes it (with [`Checks::Full`]).
/// Bad rows are counted: the error says how many and shows the first.
fn validate(
    resp: &RawResponse,
    syncz: bool,
    checks: Checks,
    mut row: impl FnMut(usize, &str),
) -> Result<Option<IstioControlPlaneInstance>, ReplicaError> {
    let cp = match &resp.control_plane {
        None => None,
        Some(cp) => match serde_json::from_str::<IstioControlPlaneInstance>(&cp.identifier) {
            Ok(inst) => Some(inst),
            Err(_) => {
                return Err(ReplicaError::Invalid(
                    "ControlPlane identifier is not IstioControlPlaneInstance JSON".into(),
                ));
            }
        },
    };
    let mut tally = checked::Tally::default();
    for (i, r) in resp.resources.iter().enumerate() {
        if !syncz {
            if let Err(e) = wire::scan_any(r) {
                tally.add(i, None, e);
            }
            continue;
        }
        let checked = match checks {
            Checks::Full => checked::syncz_row(r),
            Checks::Framing => framing_only(r).map_err(|e| (None, e)),
        };
        match checked {
            Ok(id) => row(i, id),
            Err((node, e)) => tally.add(i, node, e),
        }
    }
    tally
        .finish(resp.resources.len())
        .map_err(|bad| ReplicaError::Invalid(bad.to_string()))?;
    Ok(cp)
}

/// The checks of [`Checks::Framing`]: the `Any`, its type, the node id.
fn framing_only(r: &[u8]) -> Result<&str, wire::Malformed> {
    let (type_url, value) = wire::scan_any_raw(r)?;
    if type_url != type_url::CLIENT_CONFIG.as_bytes() {
        return Err(wire::Malformed::new(format!(
            "syncz resource of type {:?}, expected ClientConfig",
            checked::shown(&String::from_utf8_lossy(type_url))
        )));
    }
    wire::client_config_id(value)
}

/// A row's newest update time. Its Any and node were checked on arrival
/// (with [`Checks::Full`], the whole row); bytes inside
/// `generic_xds_configs` that do not decode count as no timestamp, counted
/// in `tally` (one log line per replica and request, not one per row).
fn row_stamp(resource: &Bytes, index: u32, tally: &mut checked::Tally) -> Stamp {
    let stamp = wire::scan_any(resource).and_then(|(_, value)| wire::client_config_stamp(value));
    stamp.unwrap_or_else(|e| {
        tally.add(index as usize, None, e);
        None
    })
}

/// The rows to drop as duplicates (see the module rules), per valid answer,
/// ascending, and the sum of their hashes. Rows with equal hashes are found by merging every answer's
/// sorted keys (no id is compared unless two hashes are equal); only the
/// copies of one node id have their update times read.
fn duplicates(valid: &[Valid<'_>]) -> (Vec<Vec<u32>>, Vec<u64>) {
    let mut dropped = vec![Vec::new(); valid.len()];
    let mut sums = vec![0u64; valid.len()];
    let total: usize = valid.iter().map(|v| v.keys.len()).sum();
    // (hash, answer, row): each answer's keys are sorted, so the stable sort
    // by hash merges sorted runs, and equal hashes keep answer and row order.
    let mut all: Vec<(u64, u32, u32)> = Vec::with_capacity(total);
    for (n, v) in valid.iter().enumerate() {
        all.extend(v.keys.iter().map(|k| (k.hash, n as u32, k.index)));
    }
    if valid.len() > 1 {
        all.sort_by_key(|e| e.0);
    }
    let mut stamps: Vec<checked::Tally> = valid.iter().map(|_| Default::default()).collect();
    for group in all.chunk_by(|a, b| a.0 == b.0) {
        if group.len() > 1 {
            drop_older_copies(group, valid, &mut dropped, &mut sums, &mut stamps);
        }
    }
    for (v, tally) in valid.iter().zip(stamps) {
        let rows = v.received.resources.len();
        if let Err(bad) = tally.finish(rows) {
            tracing::warn!(
                replica = %v.replica.name,
                rows = bad.count,
                first = %bad.first,
                "update times of duplicate rows do not decode; taken as none"
            );
        }
    }
    for d in &mut dropped {
        d.sort_unstable();
    }
    (dropped, sums)
}

/// Among rows with one hash: per node id (a collision of two ids keeps
/// both), the first copy with the newest update time stays, in answer
/// order (replica name order) and then row order; the others are dropped.
fn drop_older_copies(
    group: &[(u64, u32, u32)],
    valid: &[Valid<'_>],
    dropped: &mut [Vec<u32>],
    sums: &mut [u64],
    stamps: &mut [checked::Tally],
) {
    let mut copies: Vec<(&str, u32, u32)> = group
        .iter()
        .filter_map(|&(_, n, index)| {
            let r = valid
                .get(n as usize)?
                .received
                .resources
                .get(index as usize)?;
            Some((row_id(r)?, n, index))
        })
        .collect();
    copies.sort_unstable();
    for same in copies.chunk_by(|a, b| a.0 == b.0) {
        if same.len() < 2 {
            continue;
        }
        let mut stamp = |&(_, n, index): &(&str, u32, u32)| {
            let v = &valid[n as usize];
            row_stamp(
                &v.received.resources[index as usize],
                index,
                &mut stamps[n as usize],
            )
        };
        let mut best = 0;
        let mut newest = stamp(&same[0]);
        for (k, copy) in same.iter().enumerate().skip(1) {
            // Strictly newer wins; equal keeps the earlier copy.
            let s = stamp(copy);
            if s > newest {
                (best, newest) = (k, s);
            }
        }
        for (k, &(_, n, index)) in same.iter().enumerate() {
            if k != best {
                dropped[n as usize].push(index);
                sums[n as usize] = sums[n as usize].wrapping_add(group[0].0);
            }
        }
    }
}

/// The newest `last_updated` of a ClientConfig (None before istiod 1.23).
pub fn last_updated(cc: &ClientConfig) -> Option<(i64, i32)> {
    cc.generic_xds_configs
        .iter()
        .filter_map(|g| g.last_updated.as_ref())
        .map(|t: &Timestamp| (t.seconds, t.nanos))
        .max()
}

/// The name to show for a replica: its ControlPlane ID when one was seen and
/// discovery only knows an address, else discovery's name.
fn display_name(replica: &Replica, known: &Remembered) -> String {
    match known.control_planes.get(&replica.name) {
        Some(cp) if replica.name == replica.address && !cp.id.is_empty() => cp.id.clone(),
        _ => replica.name.clone(),
    }
}

/// The marker row istioctl shows for a failed replica (an encoded `Any`).
pub fn marker(replica_name: &str, err: &ReplicaError) -> Bytes {
    let cc = ClientConfig {
        node: Some(Node {
            id: format!("{replica_name} (unreachable: {err})"),
            ..Default::default()
        }),
        ..Default::default()
    };
    wire::encode_any(&Any {
        type_url: type_url::CLIENT_CONFIG.to_string(),
        value: cc.encode_to_vec(),
    })
}

/// `Unavailable` naming every failed replica and why.
pub fn failure_status(failed: &[(&Replica, ReplicaError)], total: usize) -> tonic::Status {
    let detail: Vec<String> = failed
        .iter()
        .map(|(r, e)| {
            if r.name == r.address {
                format!("{}: {e}", r.name)
            } else {
                format!("{} ({}): {e}", r.name, r.address)
            }
        })
        .collect();
    let message = format!(
        "{} of {} istiod replicas failed: {}",
        failed.len(),
        total,
        detail.join("; ")
    );
    tonic::Status::new(common_caller_error(failed, total), message)
}

/// When EVERY replica refused the caller the same way (its token, its
/// identity, its request), that is the answer's code; anything else is `Unavailable`.
fn common_caller_error(failed: &[(&Replica, ReplicaError)], total: usize) -> tonic::Code {
    use tonic::Code::{InvalidArgument, PermissionDenied, Unauthenticated, Unavailable};
    let codes: Vec<tonic::Code> = failed
        .iter()
        .map(|(_, e)| match e {
            ReplicaError::Status { code, .. } => *code,
            _ => Unavailable,
        })
        .collect();
    match codes.first() {
        Some(&first)
            if failed.len() == total
                && matches!(first, Unauthenticated | PermissionDenied | InvalidArgument)
                && codes.iter().all(|c| *c == first) =>
        {
            first
        }
        _ => Unavailable,
    }
}

/// `<external>` with the chosen replica info (lowest version; logged when they differ).
fn external_control_plane(id: &str, infos: &mut [(String, BuildInfo)]) -> ControlPlane {
    let info = choose_info(infos);
    ControlPlane {
        identifier: IstioControlPlaneInstance {
            component: "istiod".to_string(),
            id: id.to_string(),
            info,
        }
        .to_json(),
    }
}

/// The lowest version wins; unparsable versions rank after parsable ones; ties
/// by replica name. Logs when the replicas' versions differ.
pub fn choose_info(infos: &mut [(String, BuildInfo)]) -> BuildInfo {
    infos.sort_by(|(an, a), (bn, b)| {
        let av = a.version.parse::<IstioVersion>().ok();
        let bv = b.version.parse::<IstioVersion>().ok();
        let key = |v: &Option<IstioVersion>| (v.is_none(), v.clone());
        key(&av)
            .cmp(&key(&bv))
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| an.cmp(bn))
    });
    if let (Some(first), Some(last)) = (infos.first(), infos.last())
        && first.1.version != last.1.version
    {
        let all: Vec<String> = infos
            .iter()
            .map(|(n, i)| format!("{n}={}", i.version))
            .collect();
        tracing::warn!(
            chosen = %first.1.version,
            replicas = %all.join(","),
            "istiod replicas run different versions; reporting the lowest"
        );
    }
    infos.first().map(|(_, i)| i.clone()).unwrap_or_default()
}

/// The ControlPlane for a single replica's answer passed through (config_dump).
pub fn external_for(info: Option<BuildInfo>) -> ControlPlane {
    external_control_plane(
        EXTERNAL_ID,
        &mut info.map(|i| vec![(String::new(), i)]).unwrap_or_default(),
    )
}

/// Milliseconds since the epoch: a version that changes with every answer.
pub fn version_info() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis().to_string())
        .unwrap_or_default()
}

/// A random nonce, never a replica's.
pub fn fresh_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
    use proto::envoy::envoy::service::status::v3::client_config::GenericXdsConfig;

    fn replica(name: &str) -> Replica {
        Replica {
            name: name.into(),
            address: format!("{name}:15010"),
        }
    }

    fn cc(id: &str, updated: Option<i64>) -> Any {
        let cc = ClientConfig {
            node: Some(Node {
                id: id.into(),
                ..Default::default()
            }),
            generic_xds_configs: vec![GenericXdsConfig {
                type_url: type_url::CLUSTER.into(),
                last_updated: updated.map(|s| Timestamp {
                    seconds: s,
                    nanos: 0,
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        Any {
            type_url: type_url::CLIENT_CONFIG.into(),
            value: cc.encode_to_vec(),
        }
    }

    /// A replica's answer as the proxy reads it off the wire.
    fn raw(resp: DiscoveryResponse) -> Received {
        Received::decode(Bytes::from(resp.encode_to_vec())).unwrap()
    }

    fn answer(name: &str, version: &str, resources: Vec<Any>) -> ReplicaAnswer {
        ReplicaAnswer {
            replica: replica(name),
            result: Ok(raw(DiscoveryResponse {
                type_url: type_url::SYNCZ.into(),
                nonce: "replica-nonce".into(),
                resources,
                control_plane: Some(ControlPlane {
                    identifier: IstioControlPlaneInstance::istiod(
                        name,
                        BuildInfo::release(version),
                    )
                    .to_json(),
                }),
                ..Default::default()
            })),
            prepared: None,
        }
    }

    /// Merges and decodes the answer as a client would; owners copied out.
    fn merged(
        type_url: &str,
        answers: &[ReplicaAnswer],
        policy: FailurePolicy,
        visibility: &Visibility,
        known: &Remembered,
        flaws: MergeFlaws,
    ) -> Result<(DiscoveryResponse, Owners), tonic::Status> {
        let (shared, outcome) = merge(type_url, answers, policy, visibility, known, flaws)?;
        let owners = outcome
            .kept
            .iter()
            .flat_map(|k| k.owners(answers))
            .map(|(id, r)| (id.to_string(), r.to_string()))
            .collect();
        let resp = answer_for_client(Arc::new(shared)).to_response().unwrap();
        Ok((resp, Owners { owners }))
    }

    #[derive(Debug)]
    struct Owners {
        owners: Vec<(String, String)>,
    }

    fn ids(resp: &DiscoveryResponse) -> Vec<String> {
        resp.resources
            .iter()
            .map(|a| {
                ClientConfig::decode(a.value.as_slice())
                    .unwrap()
                    .node
                    .unwrap()
                    .id
            })
            .collect()
    }

    fn run(
        answers: &[ReplicaAnswer],
        policy: FailurePolicy,
    ) -> Result<(DiscoveryResponse, Owners), tonic::Status> {
        merged(
            type_url::SYNCZ,
            answers,
            policy,
            &Visibility::All,
            &Remembered::default(),
            MergeFlaws::default(),
        )
    }

    fn cp(resp: &DiscoveryResponse) -> IstioControlPlaneInstance {
        serde_json::from_str(&resp.control_plane.as_ref().unwrap().identifier).unwrap()
    }

    #[test]
    fn union_in_replica_order_with_external_identity() {
        let answers = [
            answer(
                "istiod-1",
                "1.30.0",
                vec![cc("b.ns", Some(1)), cc("a.ns", Some(1))],
            ),
            answer("istiod-2", "1.30.0", vec![cc("c.ns", Some(1))]),
        ];
        let (resp, outcome) = run(&answers, FailurePolicy::Fail).unwrap();
        assert_eq!(ids(&resp), ["b.ns", "a.ns", "c.ns"]);
        assert_eq!(resp.type_url, type_url::SYNCZ);
        assert_ne!(resp.nonce, "replica-nonce");
        assert!(!resp.version_info.is_empty());
        let cp = cp(&resp);
        assert_eq!(
            (cp.id.as_str(), cp.component.as_str()),
            ("<external>", "istiod")
        );
        assert_eq!(cp.info.version, "1.30.0");
        assert_eq!(
            outcome.owners[2],
            ("c.ns".to_string(), "istiod-2".to_string())
        );
        assert_eq!(outcome.owners.len(), 3);
    }

    #[test]
    fn passes_client_configs_through_byte_for_byte() {
        let original = cc("a.ns", Some(7));
        let answers = [answer("istiod-1", "1.30.0", vec![original.clone()])];
        let (resp, _) = run(&answers, FailurePolicy::Fail).unwrap();
        assert_eq!(resp.resources, vec![original]);
    }

    #[test]
    fn dedupe_keeps_newest_then_first_replica() {
        let newer = cc("dup.ns", Some(20));
        let answers = [
            answer(
                "istiod-1",
                "1.30.0",
                vec![cc("dup.ns", Some(10)), cc("tie.ns", Some(5))],
            ),
            answer(
                "istiod-2",
                "1.30.0",
                vec![newer.clone(), cc("tie.ns", Some(5)), cc("old.ns", None)],
            ),
            answer("istiod-3", "1.30.0", vec![cc("old.ns", None)]),
        ];
        let (resp, outcome) = run(&answers, FailurePolicy::Fail).unwrap();
        assert_eq!(ids(&resp), ["tie.ns", "dup.ns", "old.ns"]);
        assert_eq!(resp.resources[1], newer);
        let owner: HashMap<_, _> = outcome.owners.into_iter().collect();
        assert_eq!(owner["dup.ns"], "istiod-2");
        assert_eq!(owner["tie.ns"], "istiod-1");
        assert_eq!(owner["old.ns"], "istiod-2");
    }

    #[test]
    fn the_digest_changes_with_the_kept_rows_only() {
        let digest = |answers: &[ReplicaAnswer], visibility: &Visibility| {
            let (_, outcome) = merge(
                type_url::SYNCZ,
                answers,
                FailurePolicy::Fail,
                visibility,
                &Remembered::default(),
                MergeFlaws::default(),
            )
            .unwrap();
            outcome.kept.unwrap().digest
        };
        let all = &Visibility::All;
        let mesh = |rows_1: Vec<Any>, rows_2: Vec<Any>| {
            [
                answer("istiod-1", "1.30.0", rows_1),
                answer("istiod-2", "1.30.0", rows_2),
            ]
        };
        let base = mesh(
            vec![cc("a.ns", Some(1)), cc("b.ns", Some(1))],
            vec![cc("c.ns", Some(1))],
        );
        let d = digest(&base, all);
        // The same rows again (other bytes, other order): the same digest.
        let again = mesh(
            vec![cc("b.ns", Some(5)), cc("a.ns", Some(2))],
            vec![cc("c.ns", None)],
        );
        assert_eq!(digest(&again, all), d);
        // A proxy that moved to the other replica, one more, one fewer.
        for changed in [
            mesh(
                vec![cc("a.ns", Some(1))],
                vec![cc("b.ns", Some(1)), cc("c.ns", Some(1))],
            ),
            mesh(
                vec![cc("a.ns", Some(1)), cc("b.ns", Some(1))],
                vec![cc("c.ns", Some(1)), cc("d.ns", Some(1))],
            ),
            mesh(vec![cc("a.ns", Some(1))], vec![cc("c.ns", Some(1))]),
        ] {
            assert_ne!(digest(&changed, all), d);
        }
        // A duplicate whose newer copy is on the other replica moves the
        // owner; an older duplicate does not.
        let newer = mesh(
            vec![cc("a.ns", Some(1)), cc("b.ns", Some(1))],
            vec![cc("c.ns", Some(1)), cc("b.ns", Some(9))],
        );
        let older = mesh(
            vec![cc("a.ns", Some(1)), cc("b.ns", Some(9))],
            vec![cc("c.ns", Some(1)), cc("b.ns", Some(1))],
        );
        assert_ne!(digest(&newer, all), d);
        assert_eq!(digest(&older, all), d);
        // A caller who sees fewer rows kept another set; one who sees them
        // all, the same.
        assert_eq!(digest(&base, &Visibility::Namespace("ns".into())), d);
        assert_ne!(digest(&base, &Visibility::Namespace("other".into())), d);
    }

    #[test]
    fn no_dedupe_flaw_keeps_duplicates() {
        let answers = [
            answer("istiod-1", "1.30.0", vec![cc("dup.ns", Some(10))]),
            answer("istiod-2", "1.30.0", vec![cc("dup.ns", Some(20))]),
        ];
        let flaws = MergeFlaws {
            no_dedupe: true,
            ..Default::default()
        };
        let (resp, _) = merged(
            type_url::SYNCZ,
            &answers,
            FailurePolicy::Fail,
            &Visibility::All,
            &Remembered::default(),
            flaws,
        )
        .unwrap();
        assert_eq!(ids(&resp), ["dup.ns", "dup.ns"]);
    }

    #[test]
    fn fail_policy_names_every_failed_replica() {
        let answers = [
            answer("istiod-1", "1.30.0", vec![cc("a.ns", None)]),
            ReplicaAnswer {
                replica: replica("istiod-2"),
                result: Err(ReplicaError::Timeout(std::time::Duration::from_secs(5))),
                prepared: None,
            },
            ReplicaAnswer {
                replica: replica("istiod-3"),
                result: Err(ReplicaError::Connect("Connection refused".into())),
                prepared: None,
            },
        ];
        let err = run(&answers, FailurePolicy::Fail).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        assert_eq!(
            err.message(),
            "2 of 3 istiod replicas failed: istiod-2 (istiod-2:15010): deadline exceeded after 5s; istiod-3 (istiod-3:15010): connection failed: Connection refused"
        );
    }

    #[test]
    fn key_decoding_matches_full_decoding() {
        for any in [cc("a.ns", Some(7)), cc("b.ns", None)] {
            let full = ClientConfig::decode(any.value.as_slice()).unwrap();
            let key = wire::client_config_key(&any.value).unwrap();
            assert_eq!(
                key,
                (full.node.as_ref().unwrap().id.as_str(), last_updated(&full))
            );
        }
        assert!(
            wire::client_config_key(&[0x0a, 0xff][..]).is_err(),
            "malformed bytes fail"
        );
    }

    #[test]
    fn kept_resources_are_the_replicas_bytes_not_copies() {
        let answers = [answer("istiod-1", "1.30.0", vec![cc("a.ns", Some(1))])];
        let (shared, _) = merge(
            type_url::SYNCZ,
            &answers,
            FailurePolicy::Fail,
            &Visibility::All,
            &Remembered::default(),
            MergeFlaws::default(),
        )
        .unwrap();
        let Ok(received) = &answers[0].result else {
            panic!("an answer")
        };
        let (Some(buffer), [Piece::Encoded(run)]) = (&received.buffer, &shared.pieces[..]) else {
            panic!("one slice of the replica's buffer: {:?}", shared.pieces)
        };
        let inside = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
        assert!(inside.contains(&(run.as_ptr() as usize)));
        assert_eq!(
            run.as_ptr() as usize + run.len(),
            received.resources[0].as_ptr() as usize + received.resources[0].len()
        );
    }

    #[test]
    fn every_replica_refusing_the_caller_keeps_the_code() {
        let refused = |name: &str| ReplicaAnswer {
            replica: replica(name),
            result: Err(ReplicaError::Status {
                code: tonic::Code::Unauthenticated,
                message: "authentication failure".into(),
            }),
            prepared: None,
        };
        let err = run(
            &[refused("istiod-1"), refused("istiod-2")],
            FailurePolicy::Fail,
        )
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let mixed = [refused("istiod-1"), answer("istiod-2", "1.30.0", vec![])];
        let err = run(&mixed, FailurePolicy::Fail).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn annotate_policy_adds_marker_rows() {
        let answers = [
            answer("istiod-1", "1.30.0", vec![cc("a.ns", None)]),
            ReplicaAnswer {
                replica: replica("istiod-2"),
                result: Err(ReplicaError::Timeout(std::time::Duration::from_secs(5))),
                prepared: None,
            },
        ];
        let (resp, _) = run(&answers, FailurePolicy::Annotate).unwrap();
        assert_eq!(
            ids(&resp),
            ["a.ns", "istiod-2 (unreachable: deadline exceeded after 5s)"]
        );
    }

    #[test]
    fn garbage_answers_count_as_failures() {
        let mut bad = answer("istiod-2", "1.30.0", vec![]);
        if let Ok(r) = &mut bad.result {
            r.response.resources.push(wire::encode_any(&Any {
                type_url: "type.googleapis.com/wrong".into(),
                value: vec![1, 2, 3],
            }));
        }
        let answers = [answer("istiod-1", "1.30.0", vec![cc("a.ns", None)]), bad];
        let err = run(&answers, FailurePolicy::Fail).unwrap_err();
        assert!(
            err.message().contains("istiod-2") && err.message().contains("invalid answer"),
            "{}",
            err.message()
        );
        let mut bad_cp = answer("istiod-3", "1.30.0", vec![]);
        if let Ok(r) = &mut bad_cp.result {
            r.response.control_plane = Some(ControlPlane {
                identifier: "{not json".into(),
            });
        }
        let (resp, _) = run(&[bad_cp], FailurePolicy::Annotate).unwrap();
        assert_eq!(ids(&resp).len(), 1);
        assert!(ids(&resp)[0].starts_with("istiod-3 (unreachable: invalid answer"));
    }

    #[test]
    fn mixed_versions_report_the_lowest() {
        let answers = [
            answer("istiod-1", "1.30.0", vec![]),
            answer("istiod-2", "1.12.1", vec![]),
            answer("istiod-3", "1.9.0", vec![]),
        ];
        let (resp, _) = run(&answers, FailurePolicy::Fail).unwrap();
        assert_eq!(cp(&resp).info.version, "1.9.0");
    }

    #[test]
    fn keep_replica_id_flaw() {
        let answers = [answer("istiod-1", "1.30.0", vec![])];
        let flaws = MergeFlaws {
            keep_replica_id: true,
            ..Default::default()
        };
        let (resp, _) = merged(
            type_url::SYNCZ,
            &answers,
            FailurePolicy::Fail,
            &Visibility::All,
            &Remembered::default(),
            flaws,
        )
        .unwrap();
        assert_eq!(cp(&resp).id, "istiod-1");
    }

    #[test]
    fn drop_last_replica_flaw_is_silent() {
        let answers = [
            answer("istiod-1", "1.30.0", vec![cc("a.ns", None)]),
            answer("istiod-2", "1.30.0", vec![cc("b.ns", None)]),
        ];
        let flaws = MergeFlaws {
            drop_last_replica: true,
            ..Default::default()
        };
        let (resp, _) = merged(
            type_url::SYNCZ,
            &answers,
            FailurePolicy::Fail,
            &Visibility::All,
            &Remembered::default(),
            flaws,
        )
        .unwrap();
        assert_eq!(ids(&resp), ["a.ns"]);
    }

    #[test]
    fn namespace_visibility_filters_rows() {
        let answers = [answer(
            "istiod-1",
            "1.30.0",
            vec![cc("a.team-a", None), cc("b.team-b", None)],
        )];
        let vis = Visibility::Namespace("team-a".into());
        let (resp, _) = merged(
            type_url::SYNCZ,
            &answers,
            FailurePolicy::Fail,
            &vis,
            &Remembered::default(),
            MergeFlaws::default(),
        )
        .unwrap();
        assert_eq!(ids(&resp), ["a.team-a"]);
    }

    #[test]
    fn connections_concatenate_and_use_remembered_info() {
        let mut a = answer("istiod-1", "1.30.0", vec![]);
        if let Ok(r) = &mut a.result {
            r.response.type_url = type_url::CONNECTIONS.into();
            r.response.control_plane = None;
        }
        let mut known = Remembered::default();
        known.control_planes.insert(
            "istiod-1".to_string(),
            IstioControlPlaneInstance::istiod("istiod-1", BuildInfo::release("1.30.0")),
        );
        let (resp, _) = merged(
            type_url::CONNECTIONS,
            &[a],
            FailurePolicy::Fail,
            &Visibility::All,
            &known,
            MergeFlaws::default(),
        )
        .unwrap();
        assert_eq!(resp.type_url, type_url::CONNECTIONS);
        assert_eq!(cp(&resp).info.version, "1.30.0");
    }

    #[test]
    fn bad_rows_are_counted_with_the_first_shown() {
        let mut rows: Vec<Any> = (0..5).map(|i| cc(&format!("p{i}.ns"), Some(1))).collect();
        for i in [1, 3, 4] {
            // The shape: a node, then garbage where generic_xds_configs starts.
            rows[i].value.extend_from_slice(&[0x1a, 0x01, 0xff]);
        }
        let a = answer("istiod-1", "1.30.0", rows);
        let Ok(resp) = &a.result else { panic!() };
        let Err(ReplicaError::Invalid(why)) = prepare_syncz(resp, Checks::Full) else {
            panic!("bad rows accepted")
        };
        assert!(
            why.starts_with("3 of 5 resources do not decode as istioctl decodes them; first: row 1 (node p1.ns): ClientConfig does not decode"),
            "{why}"
        );
        // The framing-only checks (forward-unchecked) let them through.
        assert!(prepare_syncz(resp, Checks::Framing).is_ok());
    }
}
