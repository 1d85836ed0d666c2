//! `proxy-conformance ps`: istioctl proxy-status, faithfully. (Being built: issue 3.)

/// Arguments of `proxy-conformance ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {}

pub async fn main(_args: PsArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`ps` is not implemented yet")
}
