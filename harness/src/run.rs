//! `proxy-conformance run` and `checks`: the conformance suite. (Being built: issue 5.)

/// Arguments of `proxy-conformance run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}

pub async fn main(_args: RunArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`run` is not implemented yet")
}

/// Arguments of `proxy-conformance checks`.
#[derive(Debug, clap::Args)]
pub struct ChecksArgs {}

pub async fn checks(_args: ChecksArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`checks` is not implemented yet")
}
