//! Where the real binaries are: `target/real-istio/bin`, as
//! `ci/real-istio-build.sh` leaves them (or `$REAL_ISTIO_BIN`).

use super::RealIstioError;
use std::path::PathBuf;

/// The command that builds them.
pub const BUILD: &str = "bash ci/real-istio-build.sh";

/// Every binary the topology runs.
pub const ALL: [&str; 6] = [
    "etcd",
    "kube-apiserver",
    "pilot-discovery",
    "pilot-agent",
    "istioctl",
    "envoy",
];

/// The folder of the real binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
}

impl Binaries {
    /// `$REAL_ISTIO_BIN`, else this checkout's `target/real-istio/bin`;
    /// an error naming the missing binaries and the build command.
    pub fn find(needed: &[&str]) -> Result<Binaries, RealIstioError> {
        let dir = std::env::var_os("REAL_ISTIO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/real-istio/bin")
            });
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .filter(|b| !dir.join(b).is_file())
            .collect();
        if missing.is_empty() {
            let dir = dir.canonicalize().unwrap_or(dir);
            Ok(Binaries { dir })
        } else {
            Err(RealIstioError::Missing {
                dir: dir.display().to_string(),
                missing: missing.join(", "),
            })
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
