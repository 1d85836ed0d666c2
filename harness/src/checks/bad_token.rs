//! `bad-token`: expired tokens, tokens for another audience and tokens with a bad
//! signature get a clear Unauthenticated; the proxy keeps serving.

use crate::suite::prelude::*;
use fake_istiod::TokenSpec;

crate::check! {
    id: "bad-token",
    profile: Profile::Security,
    description: "expired, wrong-audience and badly signed tokens get Unauthenticated; the proxy keeps serving",
    features: &[],
    needs: &[Capability::ForgedTokens],
    scenarios: &["three-replicas"],
}

async fn run(ctx: &Ctx) -> Checked {
    let ns = ctx.istio_namespace().to_string();
    let valid = TokenSpec::new(&ns, "default");
    let cases = [
        ("expired", valid.clone().expired()),
        (
            "wrong audience",
            valid.clone().with_audience("not-istio-ca"),
        ),
        ("bad signature", valid.clone().bad_signature()),
    ];
    let mut problems = Vec::new();
    for (what, spec) in cases {
        let token = match ctx.token(&spec) {
            Ok(t) => t,
            Err(e) => return Err(skip(e)),
        };
        let opts = ctx.istioctl_with(Some(token));
        match crate::client::fetch(&opts, proto::type_url::SYNCZ, &[]).await {
            Ok(r) => problems.push(format!(
                "{what} token: answered with {} proxies",
                r.resources.len()
            )),
            Err(e) if e.code() == Some(tonic::Code::Unauthenticated) => {}
            Err(e) => problems.push(format!("{what} token: expected Unauthenticated, got: {e}")),
        }
    }
    let garbage = ctx.istioctl_with(Some("not.a.jwt".to_string()));
    match crate::client::fetch(&garbage, proto::type_url::SYNCZ, &[]).await {
        Err(e) if e.code() == Some(tonic::Code::Unauthenticated) => {}
        Err(e) => problems.push(format!(
            "malformed token: expected Unauthenticated, got: {e}"
        )),
        Ok(_) => problems.push("malformed token: answered".to_string()),
    }
    if let Err(e) = ctx.syncz().await {
        problems.push(format!("after the bad tokens, a valid caller fails: {e}"));
    }
    verdict(problems)
}
