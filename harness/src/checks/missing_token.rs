//! `missing-token`: a request without a bearer token gets a clear Unauthenticated, and
//! the proxy keeps serving (the sample crashed: index out of range).

use crate::suite::prelude::*;

crate::check! {
    id: "missing-token",
    profile: Profile::Security,
    description: "a request without a bearer token gets Unauthenticated, and the proxy keeps serving",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
}

async fn run(ctx: &Ctx) -> Checked {
    let mut problems = Vec::new();
    match crate::client::fetch(&ctx.istioctl_with(None), proto::type_url::SYNCZ, &[]).await {
        Ok(r) => problems.push(format!(
            "answered {} proxies to a caller with no token",
            r.resources.len()
        )),
        Err(e) if e.code() == Some(tonic::Code::Unauthenticated) => {}
        Err(e) => problems.push(format!("expected Unauthenticated, got: {e}")),
    }
    if let Err(e) = ctx.syncz().await {
        problems.push(format!(
            "after the tokenless request, a valid caller fails (did the proxy crash?): {e}"
        ));
    }
    verdict(problems)
}
