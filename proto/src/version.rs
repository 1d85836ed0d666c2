//! Istio versions and the behaviour families of istiod and istioctl (protocol.md).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// `major.minor[.patch][-suffix]`, e.g. `1.12.1`, `1.30.0`, `1.29`, `1.30.0-beta.1`.
/// Ordering ignores the suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IstioVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// Anything after `-` (pre-release, distribution tag), kept for display.
    pub suffix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Istio version {input:?}: expected MAJOR.MINOR[.PATCH] such as 1.12.1")]
pub struct VersionError {
    pub input: String,
}

impl IstioVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        IstioVersion {
            major,
            minor,
            patch,
            suffix: None,
        }
    }

    fn triple(&self) -> (u32, u32, u32) {
        (self.major, self.minor, self.patch)
    }

    /// At least `major.minor.patch`.
    pub fn at_least(&self, major: u32, minor: u32, patch: u32) -> bool {
        self.triple() >= (major, minor, patch)
    }

    /// How istiod of this version shapes a syncz `ClientConfig`.
    pub fn syncz_shape(&self) -> SynczShape {
        match (self.major, self.minor) {
            (0, _) | (1, 0..=11) => SynczShape::LegacyXdsConfig,
            (1, 12..=13) => SynczShape::GenericFixedTypes,
            (1, 14..=15) => SynczShape::WithEcds,
            (1, 16..=18) => SynczShape::ClusterIdMetadata,
            (1, 19..=22) => SynczShape::ThreeKeyMetadata,
            _ => SynczShape::WatchedTypes,
        }
    }

    /// istiod ≤1.19 sends NO response at all to a config_dump request for a
    /// proxy not connected to it (`debugConfigDump` fails, `Generate` returns
    /// nil resources and `pushXds` sends nothing: `1.19.0:pilot/pkg/xds/statusgen.go`,
    /// `1.19.0:pilot/pkg/xds/xdsgen.go`); from 1.20 it answers with zero
    /// resources (`1.20.0:pilot/pkg/xds/statusgen.go`, `res = dumpRes` only on success).
    pub fn config_dump_silent_for_unknown_proxy(&self) -> bool {
        !self.at_least(1, 20, 0)
    }

    /// syncz puts the proxy's FULL node metadata in the ClientConfig only in
    /// 1.14.0–1.14.4 and 1.15.0 (`1.14.0:pilot/pkg/xds/statusgen.go`,
    /// `Metadata: con.proxy.Metadata.ToStruct()`); 1.14.5 and 1.15.1 went back
    /// to `CLUSTER_ID` only (`1.14.5:pilot/pkg/xds/statusgen.go`, `1.15.1:…`).
    pub fn syncz_full_node_metadata(&self) -> bool {
        match (self.major, self.minor) {
            (1, 14) => self.patch <= 4,
            (1, 15) => self.patch == 0,
            _ => false,
        }
    }

    /// ztunnel connections are listed in syncz from 1.18 (`isZtunnel`,
    /// `1.18.0:pilot/pkg/xds/statusgen.go`); before, only connections with
    /// `PROXY_CONFIG` metadata (`isProxy`, `1.17.0:…`).
    pub fn syncz_lists_ztunnels(&self) -> bool {
        self.at_least(1, 18, 0)
    }

    /// The nonce is the push version followed by a UUID from 1.23
    /// (`nonce(req.Push.PushVersion)`, `1.23.0:pilot/pkg/xds/xdsgen.go`);
    /// before, the config ledger's version (`nonce(push.LedgerVersion)`,
    /// `1.22.0:pilot/pkg/xds/xdsgen.go`).
    pub fn nonce_has_push_version(&self) -> bool {
        self.at_least(1, 23, 0)
    }

    /// The config_dump answer carries an ECDS section (7 sections instead of
    /// 6) from 1.17 (`extentionsAny`, `1.17.0:pilot/pkg/xds/debug.go`).
    pub fn config_dump_has_ecds(&self) -> bool {
        self.at_least(1, 17, 0)
    }

    /// Dynamic listener/route entries of a config dump carry the push
    /// version from 1.15 (`VersionInfo: version`, `1.15.0:pilot/pkg/xds/debug.go`;
    /// none in `1.14.0:…`).
    pub fn config_dump_entry_versions(&self) -> bool {
        self.at_least(1, 15, 0)
    }

    /// A node the server cannot parse (no valid IP) is rejected with
    /// `InvalidArgument` from 1.16 (`initProxyMetadata`,
    /// `1.16.0:pilot/pkg/xds/ads.go`); before, with the plain error (code Unknown).
    pub fn node_errors_invalid_argument(&self) -> bool {
        self.at_least(1, 16, 0)
    }

    /// How istiod's `istio.io/debug` generator (DebugGen) reports errors.
    pub fn debug_gen_errors(&self) -> DebugGenErrors {
        if self.at_least(1, 21, 0) {
            // `1.21.0:pilot/pkg/xds/debuggen.go`
            DebugGenErrors::GrpcCodesExactlyOne
        } else if self.at_least(1, 18, 1) {
            // `1.18.1:pilot/pkg/xds/debuggen.go`
            DebugGenErrors::GrpcCodes
        } else if self.at_least(1, 14, 0) {
            // `1.14.0:pilot/pkg/xds/debuggen.go`: `authentication required` added
            DebugGenErrors::PlainWithAuth
        } else {
            // `1.12.0:pilot/pkg/xds/debuggen.go`: no authentication check
            DebugGenErrors::Plain
        }
    }

    /// Since 1.25 istiod attaches `control_plane` only to syncz responses.
    pub fn control_plane_only_on_syncz(&self) -> bool {
        self.at_least(1, 25, 0)
    }

    /// Since 1.23 istiod reports `ERROR` (last NACK) in syncz.
    pub fn reports_error_status(&self) -> bool {
        self.at_least(1, 23, 0)
    }

    /// `ENABLE_DEBUG_ENDPOINT_AUTH` on by default: 1.27.8+, 1.28.5+, 1.29.1+, 1.30+.
    pub fn debug_endpoint_auth_default(&self) -> bool {
        match (self.major, self.minor) {
            (1, 27) => self.patch >= 8,
            (1, 28) => self.patch >= 5,
            (1, 29) => self.patch >= 1,
            _ => self.at_least(1, 30, 0),
        }
    }

    /// Callers outside the system namespace see only their own namespace's
    /// proxies: 1.28.7+, 1.29.3+, 1.30+.
    pub fn namespace_scoped_debug(&self) -> bool {
        match (self.major, self.minor) {
            (1, 28) => self.patch >= 7,
            (1, 29) => self.patch >= 3,
            _ => self.at_least(1, 30, 0),
        }
    }
}

impl PartialOrd for IstioVersion {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for IstioVersion {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.triple()
            .cmp(&other.triple())
            .then_with(|| self.suffix.cmp(&other.suffix))
    }
}

impl FromStr for IstioVersion {
    type Err = VersionError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || VersionError {
            input: input.to_string(),
        };
        let s = input.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let (core, suffix) = match s.split_once('-') {
            Some((c, rest)) if !rest.is_empty() => (c, Some(rest.to_string())),
            Some(_) => return Err(err()),
            None => (s, None),
        };
        let mut parts = core.split('.');
        let mut num = |required: bool| -> Result<u32, VersionError> {
            match parts.next() {
                Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    p.parse().map_err(|_| err())
                }
                None if !required => Ok(0),
                _ => Err(err()),
            }
        };
        let major = num(true)?;
        let minor = num(true)?;
        let patch = num(false)?;
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(IstioVersion {
            major,
            minor,
            patch,
            suffix,
        })
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(s) = &self.suffix {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

impl Serialize for IstioVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for IstioVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The errors of istiod's DebugGen (`istio.io/debug`) by version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DebugGenErrors {
    /// ≤1.13: plain Go errors (gRPC code Unknown), no authentication check.
    Plain,
    /// 1.14–1.18.0: plain errors, `authentication required` among them.
    PlainWithAuth,
    /// 1.18.1–1.20: Unauthenticated, InvalidArgument (`debug type is required`,
    /// `only one debug request is allowed`), PermissionDenied.
    GrpcCodes,
    /// 1.21+: InvalidArgument `exactly one debug request is required`.
    GrpcCodesExactlyOne,
}

/// How an istiod version shapes each syncz `ClientConfig` (protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SynczShape {
    /// ≤1.11: deprecated `xds_config` (PerXdsConfig with status) for LDS, RDS, EDS, CDS.
    LegacyXdsConfig,
    /// 1.12–1.13: `generic_xds_configs` for LDS, RDS, EDS, CDS; unwatched = NOT_SENT.
    GenericFixedTypes,
    /// 1.14–1.15: + ECDS; node metadata = the proxy's full metadata.
    WithEcds,
    /// 1.16–1.18: node metadata = CLUSTER_ID only.
    ClusterIdMetadata,
    /// 1.19–1.22: node metadata = CLUSTER_ID, NAMESPACE, ISTIO_VERSION.
    ThreeKeyMetadata,
    /// 1.23+: one entry per watched type, sorted by type URL, with last_updated and error_state.
    WatchedTypes,
}

/// Named groups of istioctl versions for snapshot names and CLI listing
/// (protocol.md table). Behaviour never keys off a family: it keys off the
/// exact version through [`IstioctlRules`]; the runner renders each group as
/// its [`IstioctlFamily::representative`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IstioctlFamily {
    /// 1.8–1.13: `NAME CDS LDS EDS RDS ISTIOD VERSION`, VERSION = istiod's
    /// (1.8–1.11 read only the legacy `xds_config`: see [`IstioctlRules`]).
    #[serde(rename = "1.12")]
    V1_12,
    /// 1.14–1.18: + CLUSTER and ECDS columns.
    #[serde(rename = "1.14")]
    V1_14,
    /// 1.19–1.21: VERSION = the proxy's ISTIO_VERSION, `--namespace`, UNKNOWN = IGNORED.
    #[serde(rename = "1.19")]
    V1_19,
    /// 1.22: `NOT SENT`, header always.
    #[serde(rename = "1.22")]
    V1_22,
    /// 1.23–1.26: statuses with age, missing types IGNORED.
    #[serde(rename = "1.23")]
    V1_23,
    /// 1.27–1.29: `NAME CLUSTER ISTIOD VERSION SUBSCRIBED TYPES`.
    #[serde(rename = "1.27")]
    V1_27,
    /// 1.30+: as 1.27, plus `-o json|yaml`.
    #[serde(rename = "1.30")]
    V1_30,
}

impl IstioctlFamily {
    pub const ALL: [IstioctlFamily; 7] = [
        IstioctlFamily::V1_12,
        IstioctlFamily::V1_14,
        IstioctlFamily::V1_19,
        IstioctlFamily::V1_22,
        IstioctlFamily::V1_23,
        IstioctlFamily::V1_27,
        IstioctlFamily::V1_30,
    ];

    /// The family an istioctl version belongs to.
    pub fn of(v: &IstioVersion) -> IstioctlFamily {
        match (v.major, v.minor) {
            (0, _) | (1, 0..=13) => IstioctlFamily::V1_12,
            (1, 14..=18) => IstioctlFamily::V1_14,
            (1, 19..=21) => IstioctlFamily::V1_19,
            (1, 22) => IstioctlFamily::V1_22,
            (1, 23..=26) => IstioctlFamily::V1_23,
            (1, 27..=29) => IstioctlFamily::V1_27,
            _ => IstioctlFamily::V1_30,
        }
    }

    /// The version the runner renders the group as. 1.27's is 1.27.1: 1.27.0
    /// alone fails on an empty mesh (see [`IstioctlRules::empty_mesh`]).
    pub fn representative(self) -> IstioVersion {
        if self == IstioctlFamily::V1_27 {
            return IstioVersion::new(1, 27, 1);
        }
        let minor = match self {
            IstioctlFamily::V1_12 => 12,
            IstioctlFamily::V1_14 => 14,
            IstioctlFamily::V1_19 => 19,
            IstioctlFamily::V1_22 => 22,
            IstioctlFamily::V1_23 => 23,
            IstioctlFamily::V1_27 => 27,
            IstioctlFamily::V1_30 => 30,
        };
        IstioVersion::new(1, minor, 0)
    }

    /// The istioctl versions covered, for humans (`1.8–1.13`).
    pub fn covers(self) -> &'static str {
        match self {
            IstioctlFamily::V1_12 => "1.8-1.13",
            IstioctlFamily::V1_14 => "1.14-1.18",
            IstioctlFamily::V1_19 => "1.19-1.21",
            IstioctlFamily::V1_22 => "1.22",
            IstioctlFamily::V1_23 => "1.23-1.26",
            IstioctlFamily::V1_27 => "1.27-1.29",
            IstioctlFamily::V1_30 => "1.30+",
        }
    }

    /// `1.12`, `1.30`: the short label used in flags and snapshot names.
    pub fn label(self) -> String {
        let v = self.representative();
        format!("{}.{}", v.major, v.minor)
    }
}

impl FromStr for IstioctlFamily {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(IstioctlFamily::of(&s.parse()?))
    }
}

impl fmt::Display for IstioctlFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

// ---------------------------------------------------------------------------
// istioctl: what `istioctl proxy-status` of one EXACT version does.
//
// Every rule below holds for a version range and cites the Istio source it was
// read from (`tag:path`, in istio/istio). The families above are only named
// groups (snapshot names, CLI listing); behaviour keys off [`IstioctlRules`].
// ---------------------------------------------------------------------------

/// Columns of the status table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusLayout {
    /// `NAME CDS LDS EDS RDS ISTIOD VERSION` (1.8-1.13).
    Fixed4,
    /// `NAME CLUSTER CDS LDS EDS RDS ECDS ISTIOD VERSION` (1.14-1.26).
    Fixed5,
    /// `NAME CLUSTER ISTIOD VERSION SUBSCRIBED TYPES`, `-v 1` a column per type (1.27+).
    Subscribed,
}

/// Where the VERSION column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionColumn {
    /// The ControlPlane's `Info.version` (the istiod that answered).
    Istiod,
    /// The proxy's node metadata `ISTIO_VERSION`.
    Proxy,
}

/// What istioctl does when no proxy is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmptyMesh {
    /// Fails with `no proxies found (checked N istiods)`.
    NoProxiesError,
    /// Prints nothing: the header is written only once a ClientConfig was seen.
    Nothing,
    /// Prints the header only.
    Header,
    /// Fails with `failed to setup status print: no proxies found (checked N istiods)`.
    SetupNoProxiesError,
}

/// What istioctl does with a syncz resource that is not a ClientConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForeignResource {
    /// Fails with `/debug/syncz unexpected resource type "<type URL>"`.
    UnexpectedTypeError,
    /// Writes every resource's raw bytes of that response, and forgets the rows
    /// gathered so far; `newline` after each resource or not.
    RawDump { newline: bool },
    /// `UnmarshalTo` fails: `could not unmarshal ClientConfig: proto: mismatched message type: ...`.
    UnmarshalError,
}

/// How a flag of proxy-status exists in that version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagSupport {
    /// Not a flag of that istioctl: cobra rejects it.
    Unknown,
    /// Accepted and ignored.
    Ignored,
    /// Honoured.
    Honoured,
}

/// The rules of one exact istioctl version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IstioctlRules {
    pub version: IstioVersion,
}

impl IstioctlRules {
    pub fn new(version: IstioVersion) -> Self {
        IstioctlRules { version }
    }

    fn at_least(&self, minor: u32, patch: u32) -> bool {
        self.version.major > 1 || self.version.at_least(1, minor, patch)
    }

    /// The named group this version belongs to.
    pub fn family(&self) -> IstioctlFamily {
        IstioctlFamily::of(&self.version)
    }

    /// Header layout.
    /// - 1.8-1.13 four types: `1.8.0:istioctl/pkg/writer/pilot/status.go` (`setupStatusPrint`, XdsStatusWriter).
    /// - CLUSTER and ECDS from 1.14: `1.14.0:istioctl/pkg/writer/pilot/status.go`
    ///   (the HTTP writer got CLUSTER in 1.13, the xDS writer only in 1.14).
    /// - SUBSCRIBED TYPES from 1.27: `1.27.0:istioctl/pkg/writer/pilot/status.go` (`PrintAll`).
    pub fn layout(&self) -> StatusLayout {
        if self.at_least(27, 0) {
            StatusLayout::Subscribed
        } else if self.at_least(14, 0) {
            StatusLayout::Fixed5
        } else {
            StatusLayout::Fixed4
        }
    }

    /// 1.8-1.11 read only the deprecated `xds_config` (`getSyncStatus(clientConfig.GetXdsConfig())`,
    /// `1.11.0:istioctl/pkg/writer/pilot/status.go`): against istiod 1.12+, which fills only
    /// `generic_xds_configs`, every status cell is EMPTY. From 1.12 `handleAndGetXdsConfigs` reads
    /// `generic_xds_configs` and falls back to `xds_config` (`1.12.0:istioctl/pkg/writer/pilot/status.go`).
    pub fn reads_generic_xds_configs(&self) -> bool {
        self.at_least(12, 0)
    }

    /// `model.ParseMetadata` on every ClientConfig (an error fails the command):
    /// from 1.14 (`1.14.0:istioctl/pkg/writer/pilot/status.go`).
    pub fn parses_node_metadata(&self) -> bool {
        self.at_least(14, 0)
    }

    /// VERSION = istiod's `cp.Info.Version` up to 1.18, the proxy's
    /// `meta.IstioVersion` from 1.19 (`1.19.0:istioctl/pkg/writer/pilot/status.go`).
    pub fn version_column(&self) -> VersionColumn {
        if self.at_least(19, 0) {
            VersionColumn::Proxy
        } else {
            VersionColumn::Istiod
        }
    }

    /// The word for `ConfigStatus` UNKNOWN: the enum name up to 1.17, `IGNORED` from
    /// 1.18 (`1.18.0:istioctl/pkg/writer/pilot/status.go` `getSyncStatus`; kept by
    /// `formatStatus` in `1.22.0:...` and later).
    pub fn unknown_word(&self) -> &'static str {
        if self.at_least(18, 0) {
            "IGNORED"
        } else {
            "UNKNOWN"
        }
    }

    /// The word for NOT_SENT: the enum name up to 1.21, `NOT SENT` from 1.22
    /// (`1.22.0:istioctl/pkg/writer/pilot/status.go` `formatStatus`).
    pub fn not_sent_word(&self) -> &'static str {
        if self.at_least(22, 0) {
            "NOT SENT"
        } else {
            "NOT_SENT"
        }
    }

    /// The cell of a fixed type column the proxy does not report: empty up to
    /// 1.22, `IGNORED` from 1.23 (`1.23.0:istioctl/pkg/writer/pilot/status.go`
    /// `getSyncStatus` presets every column).
    pub fn missing_type_cell(&self) -> &'static str {
        if self.at_least(23, 0) { "IGNORED" } else { "" }
    }

    /// ` (<age>)` after a status with `last_updated`, from 1.23
    /// (`1.23.0:istioctl/pkg/writer/pilot/status.go` `formatStatus`, `duration.HumanDuration`).
    pub fn shows_age(&self) -> bool {
        self.at_least(23, 0)
    }

    /// `--namespace` filters rows on the proxy's `NAMESPACE` metadata from 1.19
    /// (`1.19.0:istioctl/pkg/writer/pilot/status.go`, `XdsStatusWriter.Namespace`);
    /// before, `-n` is istioctl's global flag and proxy-status ignores it.
    pub fn namespace_filter(&self) -> bool {
        self.at_least(19, 0)
    }

    /// `-v/--verbosity` exists from 1.27 (`1.27.0:istioctl/pkg/proxystatus/proxystatus.go`).
    pub fn verbosity_flag(&self) -> FlagSupport {
        if self.at_least(27, 0) {
            FlagSupport::Honoured
        } else {
            FlagSupport::Unknown
        }
    }

    /// `-o/--output`: added in 1.27 but not read by the writer until 1.30
    /// (`1.27.0:istioctl/pkg/proxystatus/proxystatus.go` passes it,
    /// `1.27.0:istioctl/pkg/writer/pilot/status.go` never looks at it;
    /// `1.30.0:istioctl/pkg/writer/pilot/status.go` `PrintAll` switches on it).
    pub fn output_flag(&self) -> FlagSupport {
        if self.at_least(30, 0) {
            FlagSupport::Honoured
        } else if self.at_least(27, 0) {
            FlagSupport::Ignored
        } else {
            FlagSupport::Unknown
        }
    }

    /// Zero proxies (after the namespace filter):
    /// - 1.8-1.9: error (`1.8.0:istioctl/pkg/writer/pilot/status.go`, check after the loop);
    /// - 1.10-1.21: nothing, the check moved inside the loop where it can never fire and the
    ///   header is written per ClientConfig (`1.10.0:...status.go`);
    /// - 1.22-1.26: the header (`1.22.0:...status.go` writes it before the loop);
    /// - 1.27.0: error, wrapped (`1.27.0:...status.go` `PrintAll`: `failed to setup status print: %w`);
    /// - 1.27.1+: the header (`1.27.1:...status.go` dropped the check).
    pub fn empty_mesh(&self) -> EmptyMesh {
        let v = &self.version;
        if (v.major, v.minor, v.patch) == (1, 27, 0) {
            EmptyMesh::SetupNoProxiesError
        } else if self.at_least(22, 0) {
            EmptyMesh::Header
        } else if self.at_least(10, 0) {
            EmptyMesh::Nothing
        } else {
            EmptyMesh::NoProxiesError
        }
    }

    /// A resource that is not a ClientConfig:
    /// - 1.8-1.9: error (`1.8.0:istioctl/pkg/writer/pilot/status.go` `default:` case);
    /// - 1.10: raw bytes, no newline (`1.10.0:...status.go`);
    /// - 1.11-1.21: raw bytes plus `\n` each (`1.11.0:...status.go`);
    /// - 1.22+: every resource goes through `UnmarshalTo` (`1.22.0:...status.go`).
    pub fn foreign_resource(&self) -> ForeignResource {
        if self.at_least(22, 0) {
            ForeignResource::UnmarshalError
        } else if self.at_least(11, 0) {
            ForeignResource::RawDump { newline: true }
        } else if self.at_least(10, 0) {
            ForeignResource::RawDump { newline: false }
        } else {
            ForeignResource::UnexpectedTypeError
        }
    }

    /// Errors of `setupStatusPrint` are wrapped in `failed to setup status print: `
    /// from 1.27 (`1.27.0:istioctl/pkg/writer/pilot/status.go` `PrintAll`).
    pub fn wraps_setup_errors(&self) -> bool {
        self.at_least(27, 0)
    }

    /// Does istioctl ACK a response of this type on the same stream? adsc's
    /// `handleRecv` ACKs every response (`1.12.0:pkg/adsc/adsc.go` `ack`); from
    /// 1.16 `ack` returns early for type URLs starting with `istio.io/debug`
    /// (`1.16.0:pkg/adsc/adsc.go`; 1.15.x never got it). `istio.io/connections`
    /// does not start with that prefix: it is still ACKed.
    pub fn acks(&self, type_url: &str) -> bool {
        !(self.at_least(16, 0) && type_url.starts_with("istio.io/debug"))
    }
}

impl fmt::Display for IstioctlRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "istioctl {}", self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn v(s: &str) -> IstioVersion {
        s.parse().unwrap()
    }

    #[rstest]
    #[case("1.12.1", 1, 12, 1, None)]
    #[case("1.30", 1, 30, 0, None)]
    #[case("v1.29.3", 1, 29, 3, None)]
    #[case("1.30.0-beta.1", 1, 30, 0, Some("beta.1"))]
    fn parses(
        #[case] s: &str,
        #[case] major: u32,
        #[case] minor: u32,
        #[case] patch: u32,
        #[case] suffix: Option<&str>,
    ) {
        let got = v(s);
        assert_eq!((got.major, got.minor, got.patch), (major, minor, patch));
        assert_eq!(got.suffix.as_deref(), suffix);
    }

    #[rstest]
    #[case("")]
    #[case("1")]
    #[case("1.x.3")]
    #[case("1.2.3.4")]
    #[case("1.2.3-")]
    #[case("1..3")]
    fn rejects(#[case] s: &str) {
        assert!(s.parse::<IstioVersion>().is_err(), "{s:?} should not parse");
    }

    #[rstest]
    #[case("1.11.8", SynczShape::LegacyXdsConfig)]
    #[case("1.12.1", SynczShape::GenericFixedTypes)]
    #[case("1.13.9", SynczShape::GenericFixedTypes)]
    #[case("1.14.0", SynczShape::WithEcds)]
    #[case("1.16.0", SynczShape::ClusterIdMetadata)]
    #[case("1.18.2", SynczShape::ClusterIdMetadata)]
    #[case("1.19.0", SynczShape::ThreeKeyMetadata)]
    #[case("1.22.9", SynczShape::ThreeKeyMetadata)]
    #[case("1.23.0", SynczShape::WatchedTypes)]
    #[case("1.30.0", SynczShape::WatchedTypes)]
    fn syncz_shapes(#[case] s: &str, #[case] shape: SynczShape) {
        assert_eq!(v(s).syncz_shape(), shape);
    }

    #[rstest]
    #[case("1.27.7", false, false)]
    #[case("1.27.8", true, false)]
    #[case("1.28.4", false, false)]
    #[case("1.28.5", true, false)]
    #[case("1.28.7", true, true)]
    #[case("1.29.0", false, false)]
    #[case("1.29.1", true, false)]
    #[case("1.29.3", true, true)]
    #[case("1.30.0", true, true)]
    #[case("1.12.1", false, false)]
    fn debug_auth_rules(#[case] s: &str, #[case] auth: bool, #[case] scoped: bool) {
        assert_eq!(v(s).debug_endpoint_auth_default(), auth, "auth {s}");
        assert_eq!(v(s).namespace_scoped_debug(), scoped, "scoped {s}");
    }

    #[rstest]
    #[case("1.12.1", true)]
    #[case("1.19.10", true)]
    #[case("1.20.0", false)]
    #[case("1.30.0", false)]
    fn config_dump_silence(#[case] s: &str, #[case] silent: bool) {
        assert_eq!(v(s).config_dump_silent_for_unknown_proxy(), silent, "{s}");
    }

    #[rstest]
    #[case("1.13.9", false)]
    #[case("1.14.0", true)]
    #[case("1.14.4", true)]
    #[case("1.14.5", false)]
    #[case("1.15.0", true)]
    #[case("1.15.1", false)]
    #[case("1.16.0", false)]
    fn full_metadata_window(#[case] s: &str, #[case] full: bool) {
        assert_eq!(v(s).syncz_full_node_metadata(), full, "{s}");
    }

    #[rstest]
    #[case("1.17.8", false, false, true, true)]
    #[case("1.18.0", true, false, true, true)]
    #[case("1.22.9", true, false, true, true)]
    #[case("1.23.0", true, true, true, true)]
    #[case("1.16.0", false, false, false, true)]
    #[case("1.15.9", false, false, false, false)]
    fn boundaries(
        #[case] s: &str,
        #[case] ztunnels: bool,
        #[case] push_nonce: bool,
        #[case] ecds: bool,
        #[case] invalid_arg: bool,
    ) {
        let x = v(s);
        assert_eq!(x.syncz_lists_ztunnels(), ztunnels, "ztunnels {s}");
        assert_eq!(x.nonce_has_push_version(), push_nonce, "nonce {s}");
        assert_eq!(x.config_dump_has_ecds(), ecds, "ecds {s}");
        assert_eq!(x.node_errors_invalid_argument(), invalid_arg, "node {s}");
    }

    #[rstest]
    #[case("1.12.1", DebugGenErrors::Plain)]
    #[case("1.14.0", DebugGenErrors::PlainWithAuth)]
    #[case("1.18.0", DebugGenErrors::PlainWithAuth)]
    #[case("1.18.1", DebugGenErrors::GrpcCodes)]
    #[case("1.20.9", DebugGenErrors::GrpcCodes)]
    #[case("1.21.0", DebugGenErrors::GrpcCodesExactlyOne)]
    fn debug_gen_errors(#[case] s: &str, #[case] e: DebugGenErrors) {
        assert_eq!(v(s).debug_gen_errors(), e, "{s}");
    }

    #[test]
    fn families() {
        assert_eq!(IstioctlFamily::of(&v("1.8.0")), IstioctlFamily::V1_12);
        assert_eq!(IstioctlFamily::of(&v("1.18.3")), IstioctlFamily::V1_14);
        assert_eq!(IstioctlFamily::of(&v("1.26.1")), IstioctlFamily::V1_23);
        assert_eq!(IstioctlFamily::of(&v("1.31.0")), IstioctlFamily::V1_30);
        for f in IstioctlFamily::ALL {
            assert_eq!(f.label().parse::<IstioctlFamily>(), Ok(f));
        }
    }

    #[test]
    fn ordering_ignores_nothing_but_is_numeric() {
        assert!(v("1.9.0") < v("1.12.0"));
        assert!(v("1.30.0") > v("1.29.9"));
    }

    #[test]
    fn istioctl_rules_follow_the_exact_version() {
        let r = |s: &str| IstioctlRules::new(v(s));
        assert_eq!(r("1.13.9").layout(), StatusLayout::Fixed4);
        assert_eq!(r("1.14.0").layout(), StatusLayout::Fixed5);
        assert_eq!(r("1.26.3").layout(), StatusLayout::Fixed5);
        assert_eq!(r("1.27.0").layout(), StatusLayout::Subscribed);
        assert!(!r("1.11.9").reads_generic_xds_configs());
        assert!(r("1.12.0").reads_generic_xds_configs());
        assert_eq!(r("1.17.8").unknown_word(), "UNKNOWN");
        assert_eq!(r("1.18.0").unknown_word(), "IGNORED");
        assert_eq!(r("1.21.0").unknown_word(), "IGNORED");
        assert_eq!(r("1.21.6").not_sent_word(), "NOT_SENT");
        assert_eq!(r("1.22.0").not_sent_word(), "NOT SENT");
        assert!(!r("1.18.7").namespace_filter());
        assert!(r("1.19.0").namespace_filter());
        assert_eq!(r("1.18.7").version_column(), VersionColumn::Istiod);
        assert_eq!(r("1.19.0").version_column(), VersionColumn::Proxy);
        assert_eq!(r("1.22.0").missing_type_cell(), "");
        assert_eq!(r("1.23.0").missing_type_cell(), "IGNORED");
        assert_eq!(r("1.26.0").output_flag(), FlagSupport::Unknown);
        assert_eq!(r("1.29.2").output_flag(), FlagSupport::Ignored);
        assert_eq!(r("1.30.0").output_flag(), FlagSupport::Honoured);
        assert_eq!(r("1.9.9").empty_mesh(), EmptyMesh::NoProxiesError);
        assert_eq!(r("1.10.0").empty_mesh(), EmptyMesh::Nothing);
        assert_eq!(r("1.21.6").empty_mesh(), EmptyMesh::Nothing);
        assert_eq!(r("1.22.0").empty_mesh(), EmptyMesh::Header);
        assert_eq!(r("1.27.0").empty_mesh(), EmptyMesh::SetupNoProxiesError);
        assert_eq!(r("1.27.1").empty_mesh(), EmptyMesh::Header);
        assert_eq!(
            r("1.9.0").foreign_resource(),
            ForeignResource::UnexpectedTypeError
        );
        assert_eq!(
            r("1.10.6").foreign_resource(),
            ForeignResource::RawDump { newline: false }
        );
        assert_eq!(
            r("1.21.0").foreign_resource(),
            ForeignResource::RawDump { newline: true }
        );
        assert_eq!(
            r("1.22.0").foreign_resource(),
            ForeignResource::UnmarshalError
        );
        assert!(r("1.15.7").acks("istio.io/debug/syncz"));
        assert!(!r("1.16.0").acks("istio.io/debug/syncz"));
        assert!(!r("1.16.0").acks("istio.io/debug/config_dump"));
        assert!(r("1.20.0").acks("istio.io/connections"));
        assert!(r("2.0.0").shows_age());
    }
}
