//! The client ACKs like the istioctl it emulates: 1.8-1.15 send adsc's ACK on
//! the same stream after the answer (`1.12.0:pkg/adsc/adsc.go` `ack`), 1.16+
//! do not for `istio.io/debug*` (`1.16.0:pkg/adsc/adsc.go`). A local plaintext
//! ADS server records every request of a stream until the stream ends.

use harness::client::{self, ClientOptions};
use proto::IstioctlRules;
use proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

/// What the server saw: each request, then `None` when the stream ended.
type Seen = mpsc::UnboundedSender<Option<DiscoveryRequest>>;

struct Recorder(Seen);

type Out = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaOut = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Recorder {
    type StreamAggregatedResourcesStream = Out;
    type DeltaAggregatedResourcesStream = DeltaOut;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Out>, Status> {
        let seen = self.0.clone();
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut n = 0;
            while let Some(Ok(r)) = inbound.next().await {
                n += 1;
                let resp = DiscoveryResponse {
                    type_url: r.type_url.clone(),
                    nonce: format!("nonce-{n}"),
                    version_info: "v1".into(),
                    ..Default::default()
                };
                let _ = seen.send(Some(r));
                let _ = tx.send(Ok(resp)).await;
            }
            let _ = seen.send(None);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        _req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaOut>, Status> {
        Err(Status::unimplemented("delta"))
    }
}

async fn serve() -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<Option<DiscoveryRequest>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, rx) = mpsc::unbounded_channel();
    tokio::spawn(
        Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(Recorder(seen)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, rx)
}

/// The requests of one stream, once it ended (bounded).
async fn one_stream(
    rx: &mut mpsc::UnboundedReceiver<Option<DiscoveryRequest>>,
) -> Vec<DiscoveryRequest> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Some(r))) => got.push(r),
            Ok(Some(None)) | Ok(None) => return got,
            Err(_) => panic!(
                "the stream did not end within 10s; saw {} requests",
                got.len()
            ),
        }
    }
}

fn as_istioctl(addr: std::net::SocketAddr, version: &str) -> ClientOptions {
    let mut o = ClientOptions::plaintext(addr.to_string());
    o.node_ip = Some("10.0.0.7".parse().unwrap());
    o.istioctl = IstioctlRules::new(version.parse().unwrap());
    o
}

#[tokio::test]
async fn istioctl_1_8_to_1_15_ack_the_debug_answer_1_16_do_not() {
    let (addr, mut rx) = serve().await;
    for (version, acks) in [
        ("1.8.0", true),
        ("1.15.7", true),
        ("1.16.0", false),
        ("1.30.0", false),
    ] {
        let resp = client::fetch(&as_istioctl(addr, version), proto::type_url::SYNCZ, &[])
            .await
            .unwrap();
        let reqs = one_stream(&mut rx).await;
        if acks {
            assert_eq!(
                reqs.len(),
                2,
                "istioctl {version} sends the request and its ACK"
            );
            let ack = &reqs[1];
            assert_eq!(ack.response_nonce, resp.nonce, "istioctl {version}");
            assert_eq!(ack.version_info, "v1");
            assert_eq!(ack.type_url, proto::type_url::SYNCZ);
            assert!(ack.node.is_some());
        } else {
            assert_eq!(
                reqs.len(),
                1,
                "istioctl {version} sends no ACK for debug types"
            );
        }
    }
    // `istio.io/connections` does not start with `istio.io/debug`: 1.16+ still ACK it.
    client::fetch(
        &as_istioctl(addr, "1.20.0"),
        proto::type_url::CONNECTIONS,
        &[],
    )
    .await
    .unwrap();
    assert_eq!(one_stream(&mut rx).await.len(), 2);
}
