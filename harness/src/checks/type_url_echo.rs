//! `type-url-echo`: each response carries the request's type URL, one response per request,
//! also with several requests on one stream.

use crate::suite::prelude::*;
use std::time::Duration;

crate::check! {
    id: "type-url-echo",
    profile: Profile::Core,
    description: "several debug requests on one stream get one response each, with the request's type URL",
    features: &[],
    needs: &[],
    scenarios: &["three-replicas"],
}

async fn run(ctx: &Ctx) -> Checked {
    let types = [
        (proto::type_url::SYNCZ, vec![]),
        (proto::type_url::CONNECTIONS, vec![]),
        (proto::type_url::SYNCZ, vec![]),
    ];
    let requests: Vec<_> = types
        .iter()
        .map(|(t, names)| ctx.request(t, names))
        .collect();
    // Then listen a little longer: an extra response is a defect too.
    let responses = ctx
        .stream(
            requests,
            types.len(),
            Duration::from_secs(10),
            Duration::from_millis(300),
        )
        .await
        .map_err(|e| format!("the stream failed: {e}"))?;
    let mut problems = Vec::new();
    if responses.len() != types.len() {
        problems.push(format!(
            "{} requests on one stream got {} responses (expected exactly one each)",
            types.len(),
            responses.len()
        ));
    }
    for (i, (resp, (want, _))) in responses.iter().zip(types.iter()).enumerate() {
        if resp.type_url != *want {
            problems.push(format!(
                "response {} has type URL {:?}, the request asked for {want:?}",
                i + 1,
                resp.type_url
            ));
        }
    }
    verdict(problems)
}
