//! `version`: `istio.io/connections` (istioctl x version up to 1.20) and the syncz-based
//! version (since 1.21) work through the proxy.

use crate::suite::prelude::*;
use proto::IstioControlPlaneInstance;

crate::check! {
    id: "version",
    profile: Profile::Core,
    description: "istioctl x version works: connections and syncz answers carry a replica's version",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas", "mixed-versions"],
}

async fn run(ctx: &Ctx) -> Checked {
    let versions: Vec<String> = ctx.replicas().iter().map(|r| r.version_text()).collect();
    let mut problems = Vec::new();
    // Does any replica attach a ControlPlane to connections (istiod < 1.25 does)?
    let mut replicas_attach = false;
    for r in ctx.replicas() {
        if let Ok(resp) = ctx
            .replica_fetch(&r, proto::type_url::CONNECTIONS, &[])
            .await
        {
            replicas_attach |= resp.control_plane.is_some();
        }
    }
    for (type_url, needs_cp) in [
        (proto::type_url::CONNECTIONS, replicas_attach),
        (proto::type_url::SYNCZ, true),
    ] {
        match ctx.fetch(type_url, &[]).await {
            Err(e) => problems.push(format!("{type_url}: {e}")),
            Ok(resp) => match resp.control_plane.as_ref() {
                None if needs_cp => problems.push(format!(
                    "{type_url}: no ControlPlane in the answer: istioctl x version shows no control plane version"
                )),
                None => {}
                Some(cp) => match serde_json::from_str::<IstioControlPlaneInstance>(&cp.identifier) {
                    Ok(id) if versions.contains(&id.info.version) => {}
                    Ok(id) => problems.push(format!(
                        "{type_url}: version {:?} is not a replica's ({})",
                        id.info.version,
                        versions.join(", ")
                    )),
                    Err(e) => problems.push(format!("{type_url}: identifier is not JSON: {e}")),
                },
            },
        }
    }
    verdict(problems)
}
