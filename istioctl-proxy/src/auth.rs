//! Caller authentication: the `authorization: Bearer <token>` istioctl sends (a
//! Kubernetes service-account JWT, audience `istio-ca`), and the identity it names.

use crate::config::TokenVerification;
use crate::error::{Error, read_file};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashSet;

/// Why a caller is not authenticated (sent as `Unauthenticated`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: missing `authorization: Bearer <token>` header")]
    Missing,
    #[error("authentication failed: the authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("authentication failed: invalid token: {0}")]
    Invalid(String),
}

/// The identity a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    pub namespace: String,
    pub service_account: String,
}

/// The bearer token of a request's metadata: `Ok(None)` when there is no
/// `authorization` header at all.
pub fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>, AuthError> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(Some(token.trim().to_string()))
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(rename = "kubernetes.io", default)]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct KubernetesClaims {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    serviceaccount: Option<NamedRef>,
}

#[derive(Debug, Deserialize)]
struct NamedRef {
    #[serde(default)]
    name: Option<String>,
}

/// Verifies callers' tokens.
pub struct TokenVerifier {
    keys: Vec<DecodingKey>,
    audience: String,
    issuer: Option<String>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("keys", &self.keys.len())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl TokenVerifier {
    /// Reads the public keys (PEM: RSA, EC or Ed25519), with a clear error for
    /// each file that cannot be read or used.
    pub fn new(cfg: &TokenVerification) -> Result<Self, Error> {
        let mut keys = Vec::new();
        for path in &cfg.public_keys {
            let pem = read_file("token public key", path)?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .or_else(|_| DecodingKey::from_ec_pem(&pem))
                .or_else(|_| DecodingKey::from_ed_pem(&pem))
                .map_err(|e| Error::TokenKey {
                    path: path.clone(),
                    reason: format!("not an RSA, EC or Ed25519 public key in PEM: {e}"),
                })?;
            keys.push(key);
        }
        Ok(TokenVerifier {
            keys,
            audience: cfg.audience.clone(),
            issuer: cfg.issuer.clone(),
        })
    }

    /// Whether signatures are checked (a key was given).
    pub fn checks_signatures(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks a token: signature (when keys are configured), expiry, audience,
    /// issuer; returns the service account it names.
    pub fn verify(&self, token: &str) -> Result<CallerIdentity, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("not a JWT: {e}")))?;
        let claims: Claims = if self.keys.is_empty() {
            let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token)
                .map_err(|e| AuthError::Invalid(format!("not a JWT: {e}")))?;
            self.check_claims(&claims)?;
            claims
        } else {
            if !ALGORITHMS.contains(&header.alg) {
                return Err(AuthError::Invalid(format!(
                    "signature algorithm {:?} is not accepted",
                    header.alg
                )));
            }
            let mut validation = Validation::new(header.alg);
            validation.set_audience(&[self.audience.as_str()]);
            validation.set_required_spec_claims(&["exp", "aud"]);
            validation.leeway = 0;
            if let Some(iss) = &self.issuer {
                validation.set_issuer(&[iss.as_str()]);
            }
            let mut last = String::from("no key matches");
            let mut verified = None;
            for key in &self.keys {
                if key.family() != header.alg.family() {
                    continue;
                }
                match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                    Ok(data) => {
                        verified = Some(data.claims);
                        break;
                    }
                    Err(e) => last = describe_jwt_error(&e),
                }
            }
            verified.ok_or(AuthError::Invalid(last))?
        };
        identity(&claims)
    }

    fn check_claims(&self, claims: &Claims) -> Result<(), AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        match claims.exp {
            None => return Err(AuthError::Invalid("no expiry (exp)".into())),
            Some(exp) if exp <= now => return Err(AuthError::Invalid("expired".into())),
            Some(_) => {}
        }
        let ok_aud = match &claims.aud {
            Some(Audience::One(a)) => *a == self.audience,
            Some(Audience::Many(list)) => list.contains(&self.audience),
            None => false,
        };
        if !ok_aud {
            return Err(AuthError::Invalid(format!(
                "wrong audience: expected {:?}",
                self.audience
            )));
        }
        if let Some(iss) = &self.issuer
            && claims.iss.as_deref() != Some(iss.as_str())
        {
            return Err(AuthError::Invalid(format!(
                "wrong issuer: expected {iss:?}"
            )));
        }
        Ok(())
    }
}

fn describe_jwt_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c}"),
        _ => e.to_string(),
    }
}

/// The service account a token names, WITHOUT verifying it: only for the
/// proxy's own token (to claim the matching identity in node metadata).
pub fn unverified_identity(token: &str) -> Option<CallerIdentity> {
    let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    identity(&claims).ok()
}

/// `system:serviceaccount:<ns>:<sa>`, or the `kubernetes.io` claims.
fn identity(claims: &Claims) -> Result<CallerIdentity, AuthError> {
    if let Some(k) = &claims.kubernetes
        && let (Some(ns), Some(sa)) = (
            k.namespace.as_ref(),
            k.serviceaccount.as_ref().and_then(|s| s.name.as_ref()),
        )
    {
        return Ok(CallerIdentity {
            namespace: ns.clone(),
            service_account: sa.clone(),
        });
    }
    let mut parts = claims.sub.split(':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("system"), Some("serviceaccount"), Some(ns), Some(sa), None)
            if !ns.is_empty() && !sa.is_empty() =>
        {
            Ok(CallerIdentity {
                namespace: ns.to_string(),
                service_account: sa.to_string(),
            })
        }
        _ => Err(AuthError::Invalid(format!(
            "subject {:?} is not a service account (system:serviceaccount:<namespace>:<name>)",
            claims.sub
        ))),
    }
}

/// Which proxies a caller may see (own-identity mode): all, or one namespace's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Visibility {
    All,
    Namespace(String),
}

impl Visibility {
    /// istiod's rule: callers from the system namespace or an allowed one see
    /// everything; others only proxies of their own namespace.
    pub fn of(caller: &CallerIdentity, system_namespace: &str, allowed: &[String]) -> Self {
        let privileged: HashSet<&str> = std::iter::once(system_namespace)
            .chain(allowed.iter().map(String::as_str))
            .collect();
        if privileged.contains(caller.namespace.as_str()) {
            Visibility::All
        } else {
            Visibility::Namespace(caller.namespace.clone())
        }
    }

    /// Whether a proxy id (`pod.namespace`) is visible.
    pub fn sees(&self, proxy_id: &str) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Namespace(ns) => proxy_id
                .rsplit_once('.')
                .is_some_and(|(_, proxy_ns)| proxy_ns == ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn md(v: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", v.parse().unwrap());
        m
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(&MetadataMap::new()), Ok(None));
        assert_eq!(bearer_token(&md("Bearer abc")), Ok(Some("abc".into())));
        assert_eq!(bearer_token(&md("bearer  abc ")), Ok(Some("abc".into())));
        assert_eq!(bearer_token(&md("Basic abc")), Err(AuthError::NotBearer));
        assert_eq!(bearer_token(&md("Bearer")), Err(AuthError::NotBearer));
    }

    fn unsigned(claims: serde_json::Value) -> String {
        use base64_url as b;
        format!(
            "{}.{}.sig",
            b(br#"{"alg":"RS256","typ":"JWT"}"#),
            b(claims.to_string().as_bytes())
        )
    }

    /// Tiny base64url (no padding) for test tokens.
    fn base64_url(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&TokenVerification::default()).unwrap()
    }

    #[test]
    fn unsigned_mode_checks_form_expiry_and_audience() {
        let far = jsonwebtoken::get_current_timestamp() + 3600;
        let ok = unsigned(
            serde_json::json!({"sub":"system:serviceaccount:istio-system:default","aud":["istio-ca"],"exp":far}),
        );
        assert_eq!(
            verifier().verify(&ok),
            Ok(CallerIdentity {
                namespace: "istio-system".into(),
                service_account: "default".into()
            })
        );
        let expired = unsigned(
            serde_json::json!({"sub":"system:serviceaccount:a:b","aud":"istio-ca","exp":1}),
        );
        assert_eq!(
            verifier().verify(&expired),
            Err(AuthError::Invalid("expired".into()))
        );
        let wrong_aud = unsigned(
            serde_json::json!({"sub":"system:serviceaccount:a:b","aud":"other","exp":far}),
        );
        assert!(
            matches!(verifier().verify(&wrong_aud), Err(AuthError::Invalid(m)) if m.contains("audience"))
        );
        assert!(verifier().verify("garbage").is_err());
        let not_sa = unsigned(serde_json::json!({"sub":"alice","aud":"istio-ca","exp":far}));
        assert!(verifier().verify(&not_sa).is_err());
    }

    #[test]
    fn visibility_rules() {
        let caller = |ns: &str| CallerIdentity {
            namespace: ns.into(),
            service_account: "default".into(),
        };
        let v = Visibility::of(&caller("istio-system"), "istio-system", &[]);
        assert_eq!(v, Visibility::All);
        let v = Visibility::of(&caller("ops"), "istio-system", &["ops".into()]);
        assert_eq!(v, Visibility::All);
        let v = Visibility::of(&caller("team-a"), "istio-system", &[]);
        assert!(v.sees("web-1.team-a"));
        assert!(v.sees("my.dotted.pod.team-a"));
        assert!(!v.sees("web-1.team-b"));
        assert!(!v.sees("team-a"));
    }
}
