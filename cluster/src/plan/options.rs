//! What the plan is built from: which proxy, which provider and Istio line, how
//! many istiod replicas, where files go.
use crate::istio::IstioVersion;
use crate::provider::Provider;

/// Which aggregating proxy is deployed next to the external istiod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyChoice {
    /// The image built from `istioctl-proxy/` (`istioctl-proxy/build-image.sh`), loaded into the cluster.
    Reference { image: String },
    /// The seed's istioctl-proxy-sample manifest, applied as the blog applies it.
    Sample,
    /// The user's manifest and image.
    Manifest { file: String, image: String },
}

/// The reference image tag: never `:latest` (that implies imagePullPolicy Always; clusters.md).
pub const REFERENCE_IMAGE: &str = "istioctl-proxy:conformance";

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub provider: Provider,
    pub istio: IstioVersion,
    pub proxy: ProxyChoice,
    pub replicas: u32,
    /// Where files, the istioctl download and logs go (default `target/cluster`).
    pub work_dir: String,
    /// How many times workloads are re-rolled until at least two istiod replicas own proxies.
    pub max_rerolls: u32,
}

impl PlanOptions {
    pub fn new(provider: Provider, istio: IstioVersion) -> Self {
        Self {
            provider,
            istio,
            proxy: ProxyChoice::Reference {
                image: REFERENCE_IMAGE.into(),
            },
            replicas: 3,
            work_dir: "target/cluster".into(),
            max_rerolls: 5,
        }
    }
}
