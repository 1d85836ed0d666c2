//! Scenarios by name: `dir/<name>.yaml` when the run names a folder
//! (`--scenarios`), else the copies embedded in the binary.

use crate::suite::snapshots::EMBEDDED_SCENARIOS;
use fake_istiod::scenario::Scenario;
use std::path::Path;

/// A scenario's YAML text and the name its errors cite.
pub fn text(dir: Option<&Path>, name: &str) -> Result<(String, String), String> {
    match dir {
        Some(d) => {
            let p = d.join(format!("{name}.yaml"));
            let text = std::fs::read_to_string(&p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            Ok((text, p.display().to_string()))
        }
        None => EMBEDDED_SCENARIOS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| (t.to_string(), format!("scenarios/{name}.yaml")))
            .ok_or_else(|| "not among the embedded scenarios".to_string()),
    }
}

/// A scenario, parsed and validated.
pub fn load(dir: Option<&Path>, name: &str) -> Result<Scenario, String> {
    match dir {
        // Scenario::load says which file and line.
        Some(d) => Scenario::load(d.join(format!("{name}.yaml"))).map_err(|e| e.to_string()),
        None => {
            let (text, source) = text(None, name)?;
            Scenario::parse(&text, &source).map_err(|e| e.to_string())
        }
    }
}
