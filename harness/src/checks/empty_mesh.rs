//! `empty-mesh`: zero proxies give a valid, empty answer with a ControlPlane.

use super::common::*;
use proto::IstioControlPlaneInstance;

pub static CHECK: Check = Check {
    id: "empty-mesh",
    profile: Profile::Core,
    description: "with no proxies connected, syncz answers OK: zero resources, ControlPlane <external>",
    features: &[],
    needs: &[Capability::ScriptedMesh],
    scenarios: &["empty-mesh"],
    run: |ctx| Box::pin(run(ctx)),
};

async fn run(ctx: &Ctx) -> Outcome {
    let resp = match ctx.syncz().await {
        Ok(r) => r,
        Err(e) => return Outcome::fail(format!("an empty mesh gave an error: {e}")),
    };
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
    Outcome::from_problems(problems)
}
