//! `empty-mesh`: zero proxies give a valid, empty answer with a ControlPlane.

use crate::suite::prelude::*;
use proto::IstioControlPlaneInstance;

crate::check! {
    id: "empty-mesh",
    profile: Profile::Core,
    description: "with no proxies connected, syncz answers OK: zero resources, ControlPlane <external>",
    features: &[],
    needs: &[Capability::ScriptedMesh],
    scenarios: &["empty-mesh"],
}

async fn run(ctx: &Ctx) -> Checked {
    let resp = ctx
        .syncz()
        .await
        .map_err(|e| format!("an empty mesh gave an error: {e}"))?;
    let mut problems = Vec::new();
    if !resp.resources.is_empty() {
        problems.push(format!(
            "{} resources in an empty mesh",
            resp.resources.len()
        ));
    }
    if resp.type_url != proto::type_url::SYNCZ {
        problems.push(format!("type URL {:?}", resp.type_url));
    }
    let id = IstioControlPlaneInstance::istioctl_id(
        resp.control_plane.as_ref().map(|c| c.identifier.as_str()),
    );
    if id != proto::control_plane::EXTERNAL_ID {
        problems.push(format!(
            "istioctl would show ISTIOD {id}, expected <external>"
        ));
    }
    verdict(problems)
}
