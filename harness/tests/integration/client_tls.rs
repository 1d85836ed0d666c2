//! The client's TLS modes against a small local ADS server that requires
//! client certificates (`--cert-dir`) and whose certificate names only
//! `istiod.istio-system.svc` (so `--authority` matters).

use harness::client::{self, ClientOptions, Credentials};
use proto::envoy::envoy::config::core::v3::ControlPlane;
use proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::pin::Pin;
use std::time::Duration;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

const SAN: &str = "istiod.istio-system.svc";

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca.pem(),
        server: leaf(vec![SAN.to_string()]),
        client: leaf(vec!["client.istio-system".to_string()]),
    }
}

/// Answers every request with one response of its type.
struct Echo;

type Out = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaOut = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Echo {
    type StreamAggregatedResourcesStream = Out;
    type DeltaAggregatedResourcesStream = DeltaOut;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Out>, Status> {
        let peer_has_cert = req.peer_certs().is_some_and(|c| !c.is_empty());
        let out = req.into_inner().map(move |r| {
            let r = r?;
            Ok(DiscoveryResponse {
                type_url: r.type_url,
                control_plane: Some(ControlPlane {
                    identifier: format!(r#"{{"ID":"client-cert-{peer_has_cert}"}}"#),
                }),
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn delta_aggregated_resources(
        &self,
        _req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaOut>, Status> {
        Err(Status::unimplemented("delta"))
    }
}

async fn serve(
    pki: &Pki,
    require_client_cert: bool,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(&pki.server.0, &pki.server.1));
    if require_client_cert {
        tls = tls.client_ca_root(Certificate::from_pem(&pki.ca_pem));
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(AggregatedDiscoveryServiceServer::new(Echo))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            }),
    );
    (addr, tx)
}

fn opts(addr: std::net::SocketAddr, credentials: Credentials) -> ClientOptions {
    let mut o = ClientOptions::plaintext(addr.to_string());
    o.credentials = credentials;
    o.timeout = Duration::from_secs(10);
    o
}

#[tokio::test]
async fn cert_dir_is_mutual_tls() {
    let pki = pki();
    let (addr, stop) = serve(&pki, true).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root-cert.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("cert-chain.pem"), &pki.client.0).unwrap();
    std::fs::write(dir.path().join("key.pem"), &pki.client.1).unwrap();
    let mtls = Credentials::MutualTls {
        cert_dir: dir.path().to_path_buf(),
        insecure_skip_verify: false,
    };

    // The certificate names istiod's service, not 127.0.0.1: --authority (istioctl's
    // XDSSAN, `1.30.0:istioctl/pkg/clioptions/central.go`) says so.
    let mut o = opts(addr, mtls.clone());
    o.authority = Some(SAN.into());
    let resp = client::fetch(&o, proto::type_url::SYNCZ, &[])
        .await
        .unwrap();
    assert_eq!(
        resp.control_plane.unwrap().identifier,
        r#"{"ID":"client-cert-true"}"#
    );

    // Without it the name check fails; --insecure skips it.
    let err = client::fetch(&opts(addr, mtls), proto::type_url::SYNCZ, &[])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("authentication handshake failed"),
        "{err}"
    );
    let insecure = Credentials::MutualTls {
        cert_dir: dir.path().to_path_buf(),
        insecure_skip_verify: true,
    };
    assert!(
        client::fetch(&opts(addr, insecure), proto::type_url::SYNCZ, &[])
            .await
            .is_ok()
    );

    // No client certificate: the server refuses the handshake.
    let o = opts(addr, Credentials::InsecureTlsWithToken { token: None });
    assert!(
        client::fetch(&o, proto::type_url::SYNCZ, &[])
            .await
            .is_err()
    );
    let _ = stop.send(());
}

#[tokio::test]
async fn authority_sets_the_tls_server_name() {
    let pki = pki();
    let (addr, stop) = serve(&pki, false).await;
    let verified = Credentials::VerifiedTls {
        ca_pem: pki.ca_pem.clone().into_bytes(),
        token: Some("t".into()),
    };
    let err = client::fetch(&opts(addr, verified.clone()), proto::type_url::SYNCZ, &[])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("authentication handshake failed"),
        "{err}"
    );
    let mut o = opts(addr, verified);
    o.authority = Some(SAN.into());
    let resp = client::fetch(&o, proto::type_url::SYNCZ, &[])
        .await
        .unwrap();
    assert_eq!(resp.type_url, proto::type_url::SYNCZ);
    // istioctl's default mode does not check the certificate at all.
    let o = opts(
        addr,
        Credentials::InsecureTlsWithToken {
            token: Some("t".into()),
        },
    );
    assert!(client::fetch(&o, proto::type_url::SYNCZ, &[]).await.is_ok());
    let _ = stop.send(());
}
