//! `IstioControlPlaneInstance`: the JSON istiod puts in `DiscoveryResponse.control_plane.identifier`
//! (pilot/pkg/xds, `istioversion.BuildInfo`), and how istioctl reads it back (`multixds.CpInfo`).

use serde::{Deserialize, Serialize};

/// The ID every aggregating proxy must answer with.
pub const EXTERNAL_ID: &str = "<external>";
/// What istioctl shows when a response has no ControlPlane.
pub const MISSING_ID: &str = "MISSING";
/// What istioctl shows when the identifier is not valid JSON.
pub const INVALID_ID: &str = "INVALID";

/// Field order and names are exactly Go's `json.Marshal` of istiod's struct, so
/// [`IstioControlPlaneInstance::to_json`] is byte-equal to what istiod sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IstioControlPlaneInstance {
    // Go's json.Unmarshal leaves absent fields empty: so do we.
    #[serde(rename = "Component", default)]
    pub component: String,
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Info", default)]
    pub info: BuildInfo,
}

/// istio's `version.BuildInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BuildInfo {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub revision: String,
    #[serde(default)]
    pub golang_version: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub tag: String,
}

impl BuildInfo {
    /// Build info as a released istiod of `version` reports it.
    pub fn release(version: &str) -> Self {
        BuildInfo {
            version: version.to_string(),
            revision: format!("{:0<40}", fake_revision(version)),
            golang_version: "go1.22.0".to_string(),
            status: "Clean".to_string(),
            tag: version.to_string(),
        }
    }
}

/// A stable, version-derived stand-in for a git revision (hex digits only).
fn fake_revision(version: &str) -> String {
    version
        .bytes()
        .map(|b| format!("{:x}", b % 16))
        .collect::<String>()
}

impl IstioControlPlaneInstance {
    /// The identity of an istiod pod.
    pub fn istiod(pod_name: &str, info: BuildInfo) -> Self {
        IstioControlPlaneInstance {
            component: "istiod".to_string(),
            id: pod_name.to_string(),
            info,
        }
    }

    /// JSON exactly as istiod writes it.
    pub fn to_json(&self) -> String {
        // Serialising plain strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The ControlPlane ID istioctl would show for a response's `control_plane`
    /// (`None` = no ControlPlane → `MISSING`, unparsable → `INVALID`).
    pub fn istioctl_id(identifier: Option<&str>) -> String {
        match identifier {
            None => MISSING_ID.to_string(),
            Some(json) => match serde_json::from_str::<IstioControlPlaneInstance>(json) {
                Ok(cp) => cp.id,
                Err(_) => INVALID_ID.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_istiod_field_order() {
        let cp = IstioControlPlaneInstance::istiod(
            "istiod-666fb6694d-jklkt",
            BuildInfo {
                version: "1.12.1".into(),
                revision: "abc".into(),
                golang_version: "go1.17.5".into(),
                status: "Clean".into(),
                tag: "1.12.1".into(),
            },
        );
        assert_eq!(
            cp.to_json(),
            r#"{"Component":"istiod","ID":"istiod-666fb6694d-jklkt","Info":{"version":"1.12.1","revision":"abc","golang_version":"go1.17.5","status":"Clean","tag":"1.12.1"}}"#
        );
    }

    #[test]
    fn istioctl_ids() {
        assert_eq!(IstioControlPlaneInstance::istioctl_id(None), "MISSING");
        assert_eq!(
            IstioControlPlaneInstance::istioctl_id(Some("{nope")),
            "INVALID"
        );
        let cp = IstioControlPlaneInstance::istiod(EXTERNAL_ID, BuildInfo::release("1.30.0"));
        assert_eq!(
            IstioControlPlaneInstance::istioctl_id(Some(&cp.to_json())),
            "<external>"
        );
    }
}
