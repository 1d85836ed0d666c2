//! `external-identity`: the merged answer's ControlPlane is valid JSON with ID `<external>`,
//! Component `istiod` and a version one of the replicas runs.

use crate::suite::prelude::*;
use proto::control_plane::{EXTERNAL_ID, IstioControlPlaneInstance};

crate::check! {
    id: "external-identity",
    profile: Profile::Core,
    description: "the ControlPlane identifier is JSON with ID <external>, Component istiod and a replica's version",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas", "mixed-versions"],
}

async fn run(ctx: &Ctx) -> Checked {
    let resp = ctx
        .syncz()
        .await
        .map_err(|e| format!("syncz through the proxy failed: {e}"))?;
    let Some(cp) = resp.control_plane.as_ref() else {
        return Err(fail(
            "the answer has no control_plane: istioctl shows ISTIOD as MISSING",
        ));
    };
    let id: IstioControlPlaneInstance = match serde_json::from_str(&cp.identifier) {
        Ok(i) => i,
        Err(e) => {
            return Err(fail(format!(
                "control_plane.identifier is not IstioControlPlaneInstance JSON ({e}): istioctl shows INVALID; got {:?}",
                cp.identifier
            )));
        }
    };
    let mut problems = Vec::new();
    if id.id != EXTERNAL_ID {
        problems.push(format!(
            "ID is {:?}, expected {EXTERNAL_ID:?} (istioctl keys answers by this ID and shows it as ISTIOD)",
            id.id
        ));
    }
    if id.component != "istiod" {
        problems.push(format!(
            "Component is {:?}, expected \"istiod\"",
            id.component
        ));
    }
    let versions: Vec<String> = ctx.replicas().iter().map(|r| r.version_text()).collect();
    if !versions.contains(&id.info.version) {
        problems.push(format!(
            "Info.version is {:?}, not the version of any replica ({})",
            id.info.version,
            versions.join(", ")
        ));
    }
    verdict(problems)
}
