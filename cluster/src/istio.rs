//! Istio versions and the version switches of the external-control-plane install.
//!
//! Every switch cites where it comes from: `tag:path` in istio/istio, or a seed
//! file of this project (`seeds/install-external-controlplane.md`, the guide as
//! of the blog's Istio 1.12; `seeds/blog-istioctl-remote-cluster.md`).
use std::fmt;
use std::str::FromStr;

/// The oldest Istio line the bench installs: the blog's (seeds/blog-istioctl-remote-cluster.md, 1.12.1 in its table).
pub const OLDEST: IstioVersion = IstioVersion {
    major: 1,
    minor: 12,
    patch: 0,
};
/// The newest Istio line in the node-image table below (1.30.3 is the newest tag on the mirror).
pub const NEWEST: IstioVersion = IstioVersion {
    major: 1,
    minor: 30,
    patch: 99,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IstioVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VersionError {
    #[error("--istio-version {0:?}: expected X.Y.Z (a release tag such as 1.12.9)")]
    Syntax(String),
    #[error(
        "--istio-version {0}: outside the versions this bench knows how to install (1.12.0 to 1.30.x); \
         the node-image table in cluster/src/istio.rs needs a row for it"
    )]
    Unsupported(IstioVersion),
}

impl FromStr for IstioVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VersionError::Syntax(s.to_string());
        let mut it = s.trim().trim_start_matches('v').split('.');
        let mut next = || -> Result<u32, VersionError> {
            it.next().ok_or_else(bad)?.parse::<u32>().map_err(|_| bad())
        };
        let v = IstioVersion {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        if it.next().is_some() {
            return Err(bad());
        }
        if v < OLDEST || v > NEWEST {
            return Err(VersionError::Unsupported(v));
        }
        Ok(v)
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl IstioVersion {
    fn at_least(&self, minor: u32) -> bool {
        self.major > 1 || self.minor >= minor
    }

    /// The release tarball with istioctl and `samples/` (clusters.md; the guide's `@samples/...@` links).
    pub fn release_url(&self) -> String {
        format!(
            "https://github.com/istio/istio/releases/download/{self}/istio-{self}-linux-amd64.tar.gz"
        )
    }

    /// Every version switch for this version, each with its source.
    pub fn switches(&self) -> Switches {
        let node = NodeImages::for_version(*self);
        Switches {
            // 1.16.0:manifests/profiles/remote.yaml is the remote-cluster profile; in
            // 1.12.9:manifests/profiles/remote.yaml `remote` is a deprecated alias of `default`
            // (it would install a full istiod) and 1.15.7:manifests/profiles/ has no remote.yaml,
            // so 1.12–1.15 use 1.12.9:manifests/profiles/external.yaml.
            remote_profile: if self.at_least(16) {
                "remote"
            } else {
                "external"
            },
            // 1.15.7:manifests/charts/istiod-remote/templates/services.yaml gives the Service made
            // from global.remotePilotAddress a webhook port (443 -> 15017); 1.14.6's has 15012 only
            // (1.14.6:manifests/charts/istiod-remote/templates/services.yaml), and 1.12.9 renders no
            // such Service at all: there the guide's injectionURL / validationURL by address are used
            // (seeds/install-external-controlplane.md, "Set up the remote config cluster").
            webhooks_by_url: !self.at_least(15),
            // LOCAL_CLUSTER_SECRET_WATCHER first in 1.15.7:pilot/pkg/features/pilot.go (absent in 1.14.6).
            local_cluster_secret_watcher: self.at_least(15),
            // values.global.configValidation first in 1.22.0:manifests/charts/istio-control/istio-discovery/values.yaml;
            // older istioctl rejects unknown values.
            config_validation_value: self.at_least(22),
            // ISTIOCTL_INSECURE is registered from 1.12.9:istioctl/cmd/config.go:37 to
            // 1.30.3:istioctl/pkg/config/config.go:38 (the --insecure override).
            istioctl_insecure: true,
            node,
        }
    }
}

/// The version switches of clusters.md for one Istio version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Switches {
    /// IstioOperator profile of the remote (config) cluster.
    pub remote_profile: &'static str,
    /// Webhooks of the remote cluster point at `https://<addr>:15017/...` instead of the istiod Service.
    pub webhooks_by_url: bool,
    /// External istiod gets `LOCAL_CLUSTER_SECRET_WATCHER=true` (its remote secret lives on its own cluster).
    pub local_cluster_secret_watcher: bool,
    /// `values.global.configValidation: false` is accepted by this istioctl.
    pub config_validation_value: bool,
    /// istioctl knows `ISTIOCTL_INSECURE`.
    pub istioctl_insecure: bool,
    pub node: NodeImages,
}

/// The Kubernetes version a given Istio line is installed on, per provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeImages {
    /// Kubernetes minor version (1.x).
    pub kubernetes: &'static str,
    /// kind release whose release notes list `kind_image` (node images are supported with the kind
    /// release they were built for, kind.sigs.k8s.io/docs/design/node-image).
    pub kind_version: &'static str,
    pub kind_image: &'static str,
    /// k3s image for k3d.
    pub k3s_image: &'static str,
    /// Why this Kubernetes version.
    pub reason: &'static str,
}

impl NodeImages {
    /// Lower bounds: `MinK8SVersion` in `<tag>:istioctl/pkg/install/k8sversion/version.go`
    /// (1.12: 1.17, 1.16: 1.22, 1.18: 1.24, 1.19: 1.25, 1.21: 1.26, 1.24: 1.28, 1.25: 1.29,
    /// 1.28: 1.30, 1.30: 1.32). Upper bounds: the APIs an Istio line renders.
    pub fn for_version(v: IstioVersion) -> NodeImages {
        match v.minor {
            12..=13 => NodeImages {
                kubernetes: "1.22",
                kind_version: "v0.20.0",
                kind_image: "kindest/node:v1.22.17",
                k3s_image: "rancher/k3s:v1.22.17-k3s1",
                reason: "1.12.9:manifests/charts/istio-control/istio-discovery/templates/poddisruptionbudget.yaml renders \
                         policy/v1beta1 and .../autoscale.yaml autoscaling/v2beta1, both removed in Kubernetes 1.25",
            },
            14..=17 => NodeImages {
                kubernetes: "1.24",
                kind_version: "v0.20.0",
                kind_image: "kindest/node:v1.24.15",
                k3s_image: "rancher/k3s:v1.24.17-k3s1",
                reason: "1.14.6:manifests/charts/istio-control/istio-discovery/templates/poddisruptionbudget.yaml still \
                         falls back to policy/v1beta1; 1.17 needs >= 1.23",
            },
            18..=21 => NodeImages {
                kubernetes: "1.26",
                kind_version: "v0.20.0",
                kind_image: "kindest/node:v1.26.6",
                k3s_image: "rancher/k3s:v1.26.15-k3s1",
                reason: "1.21 needs >= 1.26 (1.21.6:istioctl/pkg/install/k8sversion/version.go)",
            },
            22..=24 => NodeImages {
                kubernetes: "1.29",
                kind_version: "v0.23.0",
                kind_image: "kindest/node:v1.29.4",
                k3s_image: "rancher/k3s:v1.29.15-k3s1",
                reason: "1.24 needs >= 1.28 (1.24.6:istioctl/pkg/install/k8sversion/version.go)",
            },
            25..=29 => NodeImages {
                kubernetes: "1.31",
                kind_version: "v0.27.0",
                kind_image: "kindest/node:v1.31.6",
                k3s_image: "rancher/k3s:v1.31.9-k3s1",
                reason: "1.28 needs >= 1.30 (1.28.10:istioctl/pkg/install/k8sversion/version.go)",
            },
            _ => NodeImages {
                kubernetes: "1.33",
                kind_version: "v0.29.0",
                kind_image: "kindest/node:v1.33.1",
                k3s_image: "rancher/k3s:v1.33.1-k3s1",
                reason: "1.30 needs >= 1.32 (1.30.3:istioctl/pkg/install/k8sversion/version.go)",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> IstioVersion {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_bounds() {
        assert_eq!(v("1.12.9").to_string(), "1.12.9");
        assert_eq!(v("v1.30.3").minor, 30);
        assert!(matches!(
            "1.12".parse::<IstioVersion>(),
            Err(VersionError::Syntax(_))
        ));
        assert!(matches!(
            "1.12.9.1".parse::<IstioVersion>(),
            Err(VersionError::Syntax(_))
        ));
        assert!(matches!(
            "1.11.8".parse::<IstioVersion>(),
            Err(VersionError::Unsupported(_))
        ));
        assert!(matches!(
            "1.31.0".parse::<IstioVersion>(),
            Err(VersionError::Unsupported(_))
        ));
    }

    #[test]
    fn switch_boundaries() {
        assert_eq!(v("1.15.7").switches().remote_profile, "external");
        assert_eq!(v("1.16.0").switches().remote_profile, "remote");
        assert!(v("1.14.6").switches().webhooks_by_url);
        assert!(!v("1.15.0").switches().webhooks_by_url);
        assert!(!v("1.14.6").switches().local_cluster_secret_watcher);
        assert!(v("1.15.0").switches().local_cluster_secret_watcher);
        assert!(!v("1.21.6").switches().config_validation_value);
        assert!(v("1.22.0").switches().config_validation_value);
        assert_eq!(v("1.12.9").switches().node.kubernetes, "1.22");
        assert_eq!(v("1.30.3").switches().node.kubernetes, "1.33");
    }
}
