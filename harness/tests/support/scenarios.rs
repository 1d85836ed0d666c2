//! The bundled scenarios (the workspace's `scenarios/` folder).

use fake_istiod::Scenario;
use std::path::PathBuf;

/// The bundled scenario file `name` (e.g. `three-replicas.yaml`), loaded.
pub fn scenario(name: &str) -> Scenario {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"))
}
