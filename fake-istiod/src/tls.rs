//! Serving certificates for the replicas' TLS ports, signed by a CA generated
//! at start (its PEM written to a file clients can trust).

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::net::IpAddr;

/// A generated CA able to sign serving certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate chain and key, PEM.
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn generate() -> Result<Ca, rcgen::Error> {
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
        let key = KeyPair::generate()?;
        Ok(Ca {
            issuer: CertifiedIssuer::self_signed(params, key)?,
        })
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for istiod names and the replica's address.
    pub fn serving_cert(&self, namespace: &str, ip: IpAddr) -> Result<ServingCert, rcgen::Error> {
        let mut params = CertificateParams::new(vec![
            format!("istiod.{namespace}.svc"),
            format!("istiod.{namespace}.svc.cluster.local"),
            "istiod".to_string(),
            "localhost".to_string(),
        ])?;
        params.subject_alt_names.push(SanType::IpAddress(ip));
        params.distinguished_name.push(DnType::CommonName, "istiod");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
