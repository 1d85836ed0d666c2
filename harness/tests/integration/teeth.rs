//! The suite has teeth: deliberately broken variants of the reference proxy
//! (test-only `test-defects` feature) each fail exactly the checks that target
//! their defect, and pass the rest.

use crate::support::run;

use harness::topology::Hooks;
use istioctl_proxy::Defect;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Each defect with the checks that must catch it. Checks beyond the one that
/// targets the defect are listed where the defect necessarily shows there too
/// (e.g. a dropped replica also changes the rendered table).
fn expectations() -> Vec<(Defect, &'static [&'static str])> {
    vec![
        // On istiod ≤1.19 (three-replicas-1-19) the first replica never
        // answers for a proxy it does not have: an unknown proxy hangs too.
        (
            Defect::ConfigDumpFirstReplicaOnly,
            &["config-dump-owner", "config-dump-unknown"],
        ),
        // Waiting for every replica is harmless on 1.20+ (empty answers) and
        // hangs on ≤1.19, whose non-owners send nothing: the owner's dump comes
        // only at the request deadline. (For an unknown proxy a short wait on
        // silent replicas is legitimate: config-dump-unknown allows 5 s.)
        // (fault-poison: the owner's dump does not decode, and waiting for
        // every replica answers empty instead of naming it.)
        (
            Defect::ConfigDumpWaitsForEveryReplica,
            &["config-dump-owner", "replica-poison-config-dump"],
        ),
        (Defect::CrashOnMissingToken, &["missing-token"]),
        // Failing fast with an error that names the broken replica is a legal
        // policy (the reference's default `fail` does it too); what the suite
        // must catch is the latency of asking one replica after the other.
        (Defect::SequentialFailFast, &["replica-slow"]),
        (Defect::NoDedupe, &["duplicate-proxy"]),
        // Every check that compares the answer with all replicas' proxies
        // notices; in fault-duplicate the newest report lived in the dropped one.
        (
            Defect::DropLastReplicaSilently,
            &[
                "syncz-union",
                "istioctl-ack",
                "table-snapshot",
                "concurrent-clients",
                "replica-churn",
                "replica-restart",
                "large-mesh",
                "replica-slow",
                "duplicate-proxy",
                // A poisoned replica dropped silently is not named.
                "replica-poison",
            ],
        ),
        (
            Defect::KeepReplicaControlPlaneId,
            &["external-identity", "table-snapshot", "empty-mesh"],
        ),
        (Defect::Cap4MiB, &["large-mesh"]),
        (Defect::FailOnAck, &["istioctl-ack"]),
        // The same exit path carries the oversized request's refusal.
        (
            Defect::SilentOnBadRequest,
            &["malformed-request", "oversized-request"],
        ),
        (Defect::UnboundedRequests, &["oversized-request"]),
        (Defect::DieOnGarbage, &["garbage-bytes"]),
        (Defect::TinyConnectionCap, &["idle-connections"]),
        (Defect::SerialStreams, &["stream-flood"]),
        // Forgetting a replica whose ask failed drops its proxies silently
        // from then on: every check with a replica that does not answer sees
        // a silent partial answer, and one that comes back (churn, restart) is
        // missed. (A garbage answer is an answer: the merge names it.)
        (
            Defect::ForgetFailedReplicas,
            &[
                "replica-down",
                "replica-hang",
                "replica-error",
                "replica-churn",
                "replica-restart",
            ],
        ),
        // Holding every answer for clients that do not read shows only under
        // slow readers: every other check's clients read their answers, and
        // without a limit on answers in flight 50 concurrent clients are
        // answered as well (or better).
        (Defect::UnboundedAnswers, &["slow-readers"]),
        // Rows and config_dump sections forwarded with only their framing
        // checked (the reference before issue 22): istioctl cannot decode them.
        (
            Defect::ForwardUnchecked,
            &["replica-poison", "replica-poison-config-dump"],
        ),
    ]
}

/// The poisoned-row checks alone: the reference passes them, the proxy
/// that checks only framing (its behaviour before issue 22) fails both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_rows_have_teeth() {
    let checks = ["replica-poison", "replica-poison-config-dump"];
    for (defects, expected) in [
        (vec![], vec![]),
        (vec![Defect::ForwardUnchecked], checks.to_vec()),
    ] {
        let config = run::config(harness::config::RunArgs {
            run_check: checks.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        });
        let d = defects.clone();
        let hooks = Hooks {
            customize_bundled: Some(Arc::new(move |c: &mut istioctl_proxy::ProxyConfig| {
                c.defects = d.clone();
            })),
            ..Hooks::default()
        };
        let report = match harness::runner::run(&config, &hooks, |_| {}).await {
            Ok(r) => r,
            Err(e) => panic!("{defects:?}: the run could not start: {e}"),
        };
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            run::failed(&report),
            expected,
            "{defects:?}: {}",
            run::explain(&report)
        );
    }
}

/// The bundled proxy switched to own-identity mode (the runner writes the
/// proxy's own token next to the token issuer key), for the checks that
/// only an own-identity proxy can fail by itself.
fn own_identity(c: &mut istioctl_proxy::ProxyConfig) {
    let Some(token) = c
        .token_verification
        .public_keys
        .first()
        .map(|k| k.with_file_name("token"))
    else {
        panic!("the bundled config has no token issuer key");
    };
    c.identity = istioctl_proxy::IdentityMode::OwnIdentity(istioctl_proxy::OwnIdentity {
        token_file: Some(token),
        namespace: "istio-system".into(),
        service_account: "istioctl-proxy".into(),
        system_namespace: "istio-system".into(),
        allowed_namespaces: vec![],
    });
}

/// Own-identity mode: the reference passes the authorization checks, and the
/// pre-audit authorization (syncz and config_dump filtered only) fails
/// `authz-matrix` (its scenario's system namespace is istio-system).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_identity_authorization_has_teeth() {
    let checks = ["authz-matrix", "no-privilege-escalation"];
    for (defects, expected) in [
        (vec![], vec![]),
        (vec![Defect::AuthzSynczOnly], vec!["authz-matrix"]),
    ] {
        let config = run::config(harness::config::RunArgs {
            run_check: checks.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        });
        let d = defects.clone();
        let hooks = Hooks {
            customize_bundled: Some(Arc::new(move |c: &mut istioctl_proxy::ProxyConfig| {
                own_identity(c);
                c.defects = d.clone();
            })),
            ..Hooks::default()
        };
        let report = match harness::runner::run(&config, &hooks, |_| {}).await {
            Ok(r) => r,
            Err(e) => panic!("{defects:?}: the run could not start: {e}"),
        };
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            run::failed(&report),
            expected,
            "{defects:?}: {}",
            run::explain(&report)
        );
        assert_eq!(
            report.results.len(),
            checks.len(),
            "{}",
            run::explain(&report)
        );
    }
}

async fn failures_with(defect: Defect) -> (BTreeSet<String>, String) {
    let config = run::config(Default::default());
    let hooks = Hooks {
        customize_bundled: Some(Arc::new(move |c: &mut istioctl_proxy::ProxyConfig| {
            c.defects = vec![defect];
        })),
        ..Hooks::default()
    };
    match harness::runner::run(&config, &hooks, |_| {}).await {
        Ok(report) => (run::failed(&report), run::explain(&report)),
        Err(e) => panic!("{defect:?}: the run could not start: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_variant_fails_exactly_its_checks() {
    let _alone = run::alone().await;
    use futures::StreamExt;
    // One variant at a time, its scenarios side by side: the runner keeps
    // the latency check (replica-slow) from running beside an attack, which
    // it could not do for two suites at once.
    let outcomes: Vec<_> = futures::stream::iter(expectations())
        .map(|(defect, expected)| async move {
            let (got, why) = failures_with(defect).await;
            (defect, expected, got, why)
        })
        .buffered(1)
        .collect()
        .await;
    let mut wrong = Vec::new();
    for (defect, expected, got, why) in outcomes {
        let expected: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
        if got != expected {
            wrong.push(format!(
                "{defect:?}\n  expected to fail: {expected:?}\n  failed:           {got:?}\n  details:\n{why}\n"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
