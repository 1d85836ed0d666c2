//! `config-dump-unknown`: config_dump for a proxy no replica knows gives an empty answer
//! or NotFound, promptly. On istiod ≤1.19 (three-replicas-1-19) no replica
//! answers such a request at all (`1.19.0:pilot/pkg/xds/statusgen.go`): the
//! proxy must not wait for them.

use crate::suite::prelude::*;
use std::time::Duration;

crate::check! {
    id: "config-dump-unknown",
    profile: Profile::Core,
    description: "config_dump for an unknown proxy answers empty or NotFound within 5s",
    features: &[Feature::ConfigDump],
    needs: &[],
    scenarios: &["three-replicas", "three-replicas-1-19"],
}

const PROMPT: Duration = Duration::from_secs(5);

async fn run(ctx: &Ctx) -> Checked {
    let names = vec!["no-such-pod-5f7c9.nowhere".to_string()];
    let (answer, took) = timed(ctx.fetch(proto::type_url::CONFIG_DUMP, &names)).await;
    if took > PROMPT {
        return Err(fail(format!(
            "answered after {took:.1?} (more than {PROMPT:?})"
        )));
    }
    match answer {
        Ok(r) if r.resources.is_empty() => Ok(()),
        Ok(r) => Err(fail(format!(
            "{} resources returned for a proxy no replica knows",
            r.resources.len()
        ))),
        Err(e) if e.code() == Some(tonic::Code::NotFound) => Ok(()),
        Err(e) => Err(fail(format!(
            "expected an empty answer or NotFound, got: {e}"
        ))),
    }
}
