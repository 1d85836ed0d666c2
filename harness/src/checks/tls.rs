//! `tls`: the proxy serves TLS, and does not also answer plaintext on the same port.

use crate::suite::prelude::*;
use std::time::Duration;

crate::check! {
    id: "tls",
    profile: Profile::Security,
    description: "the proxy serves TLS and refuses plaintext HTTP/2 on its port",
    features: &[Feature::Tls],
    needs: &[],
    scenarios: &["three-replicas"],
}

async fn run(ctx: &Ctx) -> Checked {
    let mut problems = Vec::new();
    if let Err(e) = ctx.syncz().await {
        problems.push(format!("a TLS client (istioctl's default mode) fails: {e}"));
    }
    let mut plain = ctx.istioctl();
    plain.credentials = crate::client::Credentials::PlaintextWithToken {
        token: ctx.istioctl_token(),
    };
    plain.timeout = Duration::from_secs(3);
    if let Ok(r) = crate::client::fetch(&plain, proto::type_url::SYNCZ, &[]).await {
        problems.push(format!(
            "a plaintext client got an answer ({} proxies): the port is not TLS-only",
            r.resources.len()
        ));
    }
    verdict(problems)
}
