//! istiod's authentication of debug callers, with a signing key the test side
//! owns standing in for Kubernetes TokenReview: ES256 JWTs with audience
//! `istio-ca`, subject `system:serviceaccount:<ns>:<sa>`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The audience istiod requires (`istio-ca`).
pub const ISTIO_CA_AUDIENCE: &str = "istio-ca";
/// The issuer written into minted tokens.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// What to put in a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    pub namespace: String,
    pub service_account: String,
    pub audience: String,
    /// Lifetime from now; ignored when `expired`.
    pub ttl: Duration,
    /// Already expired (exp an hour in the past).
    pub expired: bool,
    /// Signed with a key nobody trusts.
    pub bad_signature: bool,
    /// A different subject than `system:serviceaccount:<ns>:<sa>`.
    pub subject: Option<String>,
}

impl TokenSpec {
    /// A valid 1h token for `namespace`/`service_account`, audience `istio-ca`.
    pub fn new(namespace: impl Into<String>, service_account: impl Into<String>) -> Self {
        TokenSpec {
            namespace: namespace.into(),
            service_account: service_account.into(),
            audience: ISTIO_CA_AUDIENCE.to_string(),
            ttl: Duration::from_secs(3600),
            expired: false,
            bad_signature: false,
            subject: None,
        }
    }
    /// What istioctl requests: ServiceAccount `default` of the istio namespace.
    pub fn istioctl(istio_namespace: impl Into<String>) -> Self {
        TokenSpec::new(istio_namespace, "default")
    }
    pub fn expired(mut self) -> Self {
        self.expired = true;
        self
    }
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    pub fn bad_signature(mut self) -> Self {
        self.bad_signature = true;
        self
    }
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: u64,
    iat: u64,
    nbf: u64,
}

/// A verified caller: what TokenReview would return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
}

impl Identity {
    /// istiod's form: `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
    pub fn spiffe(&self) -> String {
        format!(
            "spiffe://cluster.local/ns/{}/sa/{}",
            self.namespace, self.service_account
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token")]
    NoToken,
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("subject {0:?} is not system:serviceaccount:<namespace>:<name>")]
    BadSubject(String),
}

/// Errors creating keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("generating a key: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("loading a key: {0}")]
    Load(#[from] jsonwebtoken::errors::Error),
}

/// The trusted signing key and a decoy for bad-signature tokens.
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    decoy: EncodingKey,
    public_pem: String,
    private_pem: String,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority").finish_non_exhaustive()
    }
}

fn es256_pair() -> Result<(String, String), KeyError> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok((kp.serialize_pem(), kp.public_key_pem()))
}

impl TokenAuthority {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        let (private_pem, public_pem) = es256_pair()?;
        Self::from_private_pem(&private_pem, &public_pem)
    }

    /// From PEM (PKCS#8 private key, SPKI public key).
    pub fn from_private_pem(private_pem: &str, public_pem: &str) -> Result<Self, KeyError> {
        let (decoy_pem, _) = es256_pair()?;
        Ok(TokenAuthority {
            encoding: EncodingKey::from_ec_pem(private_pem.as_bytes())?,
            decoding: DecodingKey::from_ec_pem(public_pem.as_bytes())?,
            decoy: EncodingKey::from_ec_pem(decoy_pem.as_bytes())?,
            public_pem: public_pem.to_string(),
            private_pem: private_pem.to_string(),
        })
    }

    /// From a PKCS#8 private key PEM alone (the public key is derived).
    pub fn from_private_key_pem(private_pem: &str) -> Result<Self, KeyError> {
        let kp = rcgen::KeyPair::from_pem(private_pem)?;
        Self::from_private_pem(private_pem, &kp.public_key_pem())
    }

    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }
    pub fn private_pem(&self) -> &str {
        &self.private_pem
    }

    /// A signed token for `spec`.
    pub fn mint(&self, spec: &TokenSpec) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (iat, exp) = if spec.expired {
            (now.saturating_sub(7200), now.saturating_sub(3600))
        } else {
            (now, now.saturating_add(spec.ttl.as_secs().max(1)))
        };
        let claims = Claims {
            iss: ISSUER.to_string(),
            sub: spec.subject.clone().unwrap_or_else(|| {
                format!(
                    "system:serviceaccount:{}:{}",
                    spec.namespace, spec.service_account
                )
            }),
            aud: vec![spec.audience.clone()],
            exp,
            iat,
            nbf: iat,
        };
        let key = if spec.bad_signature {
            &self.decoy
        } else {
            &self.encoding
        };
        // Encoding our own claims with a key of the right family cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, key).unwrap_or_default()
    }

    /// TokenReview: signature, expiry, audience `istio-ca`, service-account subject.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[ISTIO_CA_AUDIENCE]);
        v.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let sub = data.claims.sub;
        let parts: Vec<&str> = sub.split(':').collect();
        match parts.as_slice() {
            ["system", "serviceaccount", ns, sa] if !ns.is_empty() && !sa.is_empty() => {
                Ok(Identity {
                    namespace: ns.to_string(),
                    service_account: sa.to_string(),
                })
            }
            _ => Err(AuthError::BadSubject(sub)),
        }
    }

    /// Verifies an `authorization` header value (`Bearer <jwt>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Identity, AuthError> {
        let h = header.ok_or(AuthError::NoToken)?;
        let token = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
            .ok_or(AuthError::NoToken)?;
        self.verify(token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mint_and_verify() {
        let a = TokenAuthority::generate().unwrap();
        let id = a
            .verify(&a.mint(&TokenSpec::new("istio-system", "default")))
            .unwrap();
        assert_eq!(
            id.spiffe(),
            "spiffe://cluster.local/ns/istio-system/sa/default"
        );
        assert!(
            a.verify(&a.mint(&TokenSpec::new("a", "b").expired()))
                .is_err()
        );
        assert!(
            a.verify(&a.mint(&TokenSpec::new("a", "b").with_audience("x")))
                .is_err()
        );
        assert!(
            a.verify(&a.mint(&TokenSpec::new("a", "b").bad_signature()))
                .is_err()
        );
        assert!(matches!(
            a.verify(&a.mint(&TokenSpec::new("a", "b").with_subject("alice"))),
            Err(AuthError::BadSubject(_))
        ));
        assert_eq!(a.verify_header(None), Err(AuthError::NoToken));
    }
}
