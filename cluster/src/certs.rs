//! The shared CA of the trust pitfall (clusters.md) in the `cacerts` layout of
//! istio/istio `samples/certs` (root-cert.pem, cert-chain.pem, ca-cert.pem,
//! ca-key.pem), and the proxy's own TLS pair. Generated in process at `up`.
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

fn ca_params(cn: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::OrganizationName, "proxy-conformance");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// In the order of the plan's variables: CACERTS_ROOT_CERT, CACERTS_CERT_CHAIN, CACERTS_CA_CERT,
/// CACERTS_CA_KEY, PROXY_TLS_CERT, PROXY_TLS_KEY.
pub fn generate() -> Result<Vec<String>, String> {
    let go = || -> Result<Vec<String>, rcgen::Error> {
        let root = CertifiedIssuer::self_signed(
            ca_params("proxy-conformance root CA")?,
            KeyPair::generate()?,
        )?;
        let inter_key = KeyPair::generate()?;
        let inter = ca_params("proxy-conformance intermediate CA")?.signed_by(&inter_key, &root)?;
        let proxy = rcgen::generate_simple_self_signed(vec![
            "istioctl-proxy.external-istiod.svc".to_string(),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])?;
        Ok(vec![
            root.pem(),
            format!("{}{}", inter.pem(), root.pem()),
            inter.pem(),
            inter_key.serialize_pem(),
            proxy.cert.pem(),
            proxy.signing_key.serialize_pem(),
        ])
    };
    go().map_err(|e| format!("generating certificates: {e}"))
}
