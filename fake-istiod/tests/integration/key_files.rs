//! Key material is written for its owner only. Found: the CA key and the
//! token-signing key were 0644 under /tmp/fake-istiod, so any local user could
//! mint tokens the replicas (and a proxy trusting them) accept.

use fake_istiod::scenario::Scenario;
use fake_istiod::testing;
use fake_istiod::{CA_KEY_FILE, ClientCert, SIGNING_KEY_FILE, StartOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn private_keys_are_owner_only_also_when_they_existed() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = tmp.path().join("state");
    let opts = || StartOptions {
        state_dir: Some(state.clone()),
        ..StartOptions::ephemeral()
    };
    let empty = || Scenario::empty(proto::IstioVersion::new(1, 30, 0));
    // No replicas: nothing binds a port.
    let fake = testing::start_scenario(empty())
        .options(opts())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    fake.shutdown().await;
    assert_eq!(mode(&state), 0o700, "the state folder it created");
    for f in [CA_KEY_FILE, SIGNING_KEY_FILE] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }

    // Keys left world-readable by an older version are tightened on reuse.
    for f in [CA_KEY_FILE, SIGNING_KEY_FILE] {
        std::fs::set_permissions(state.join(f), std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let fake = testing::start_scenario(empty())
        .options(opts())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for f in [CA_KEY_FILE, SIGNING_KEY_FILE] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f} reused");
    }

    // `fake-istiod cert` writes istioctl's --cert-dir layout: key.pem owner-only.
    let cert = fake
        .issue_client_cert("istio-system", "default")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = tmp.path().join("certs");
    ClientCert::write_cert_dir(&cert, &out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mode(&out.join("key.pem")), 0o600);
    assert_eq!(mode(&out), 0o700);
    fake.shutdown().await;
}

/// Without a state folder: a temporary one, owner-only (it was 0755).
#[tokio::test]
async fn the_temporary_state_folder_is_owner_only() {
    let fake = testing::start_scenario(Scenario::empty(proto::IstioVersion::new(1, 30, 0)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = fake.ca_file().parent().unwrap_or(Path::new("/"));
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for f in [CA_KEY_FILE, SIGNING_KEY_FILE] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn a_symlink_in_place_of_a_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap_or_else(|e| panic!("{e}"));
    let target = tmp.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, state.join(SIGNING_KEY_FILE))
        .unwrap_or_else(|e| panic!("{e}"));
    let started = testing::start_scenario(Scenario::empty(proto::IstioVersion::new(1, 30, 0)))
        .options(StartOptions {
            state_dir: Some(state),
            ..StartOptions::ephemeral()
        })
        .await;
    assert!(started.is_err(), "wrote the key through a symlink");
    assert!(!target.exists(), "the symlink's target was written");
}
