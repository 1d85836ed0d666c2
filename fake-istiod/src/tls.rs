//! Serving certificates for the replicas' TLS ports, signed by a CA generated
//! at start (its PEM written to a file clients can trust).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::Path;

/// Writes private key material (or a bearer token) readable by its owner
/// only: mode 0600, also when the file already exists with a wider mode (the
/// mode is fixed before the new content is written). A symbolic link in its
/// place is refused (`O_NOFOLLOW`): the default state folder is under /tmp.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents.as_bytes())
}

/// Creates a folder for key material (and its missing parents) with mode
/// 0700; an existing folder is left as it is.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// A generated CA able to sign serving certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate chain and key, PEM.
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "cluster.local");
    params
        .distinguished_name
        .push(DnType::CommonName, "fake-istiod root CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

impl Ca {
    /// A CA with a fresh key.
    pub fn generate() -> Result<Ca, rcgen::Error> {
        Ca::from_key(KeyPair::generate()?)
    }

    /// The CA for an existing key (PKCS#8 PEM): same name and key, so
    /// certificates it signs verify against any CA certificate made from
    /// that key.
    pub fn from_key_pem(pem: &str) -> Result<Ca, rcgen::Error> {
        Ca::from_key(KeyPair::from_pem(pem)?)
    }

    fn from_key(key: KeyPair) -> Result<Ca, rcgen::Error> {
        Ok(Ca {
            issuer: CertifiedIssuer::self_signed(ca_params()?, key)?,
        })
    }

    /// The CA's private key (PKCS#8 PEM).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A client certificate as istio-agent gets one: URI SAN
    /// `spiffe://cluster.local/ns/<ns>/sa/<sa>` (what istiod authenticates).
    pub fn client_cert(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<ServingCert, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names.push(SanType::URI(
            format!("spiffe://cluster.local/ns/{namespace}/sa/{service_account}").try_into()?,
        ));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for istiod names, `extra_names` (DNS) and the
    /// replica's address (left out when it is a wildcard like 0.0.0.0, which
    /// no client dials).
    pub fn serving_cert(
        &self,
        namespace: &str,
        ip: IpAddr,
        extra_names: &[String],
    ) -> Result<ServingCert, rcgen::Error> {
        let mut names = vec![
            format!("istiod.{namespace}.svc"),
            format!("istiod.{namespace}.svc.cluster.local"),
            "istiod".to_string(),
            "localhost".to_string(),
        ];
        for n in extra_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let mut params = CertificateParams::new(names)?;
        if !ip.is_unspecified() {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        params.distinguished_name.push(DnType::CommonName, "istiod");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The SPIFFE identity in a DER certificate's URI SAN
/// (`spiffe://<td>/ns/<ns>/sa/<sa>` → namespace, service account).
/// A minimal scan for the context-specific [6] IA5String istiod reads.
pub fn spiffe_identity(der: &[u8]) -> Option<(String, String)> {
    const PREFIX: &[u8] = b"spiffe://";
    let mut i = 0;
    while i + 2 + PREFIX.len() <= der.len() {
        if der[i] == 0x86 && der[i + 2..].starts_with(PREFIX) {
            let len = der[i + 1] as usize;
            let uri = der.get(i + 2..i + 2 + len)?;
            let uri = std::str::from_utf8(uri).ok()?;
            let path = uri.strip_prefix("spiffe://")?.split_once('/')?.1;
            let parts: Vec<&str> = path.split('/').collect();
            if let ["ns", ns, "sa", sa] = parts.as_slice() {
                return Some((ns.to_string(), sa.to_string()));
            }
            return None;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certs_carry_the_spiffe_identity() {
        let ca = Ca::generate().unwrap();
        let c = ca.client_cert("istio-system", "default").unwrap();
        let der = rustls_pki_der(&c.cert_pem);
        assert_eq!(
            spiffe_identity(&der),
            Some(("istio-system".to_string(), "default".to_string()))
        );
        let server = ca
            .serving_cert("istio-system", [127, 0, 0, 2].into(), &[])
            .unwrap();
        assert_eq!(spiffe_identity(&rustls_pki_der(&server.cert_pem)), None);
        // Same key, same issuer name.
        let again = Ca::from_key_pem(&ca.key_pem()).unwrap();
        assert_eq!(again.key_pem(), ca.key_pem());
    }

    fn rustls_pki_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64_decode(&body)
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let mut buf = 0u32;
        let mut bits = 0;
        for c in s.bytes().filter(|c| *c != b'=') {
            let v = T.iter().position(|t| *t == c).unwrap() as u32;
            buf = (buf << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buf >> bits) as u8);
                buf &= (1 << bits) - 1;
            }
        }
        out
    }
}
