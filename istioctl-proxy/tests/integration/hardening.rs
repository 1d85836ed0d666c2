//! Hostile requests get a gRPC error (not a silent OK), and the proxy keeps
//! serving: undecodable bytes, invalid UTF-8, oversized messages and type
//! URLs, a request that outlives --request-timeout in the merge.
use crate::support::*;
use futures::StreamExt;
use istioctl_client::raw::Raw;
use proto::type_url;
use std::time::Duration;

/// Sends one raw message on an ADS stream: the first answer or the error.
async fn raw_ask(addr: std::net::SocketAddr, msg: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel(addr).await);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
    );
    let (_keep, rx) = tokio::sync::oneshot::channel::<()>();
    let out = futures::stream::once(async move { msg })
        .chain(futures::stream::once(rx).filter_map(|_| async { None }));
    let fut = async {
        let mut inbound = grpc
            .streaming(tonic::Request::new(out), path, Raw)
            .await?
            .into_inner();
        match inbound.message().await? {
            Some(m) => Ok(m),
            None => Err(tonic::Status::ok(
                "stream ended with status OK and no answer",
            )),
        }
    };
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("test patience exhausted")))
}

/// `DiscoveryRequest` with `type_url` (field 4) set to raw bytes.
fn with_type_url_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut m = vec![0x22];
    let mut n = bytes.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            m.push(b);
            break;
        }
        m.push(b | 0x80);
    }
    m.extend_from_slice(bytes);
    m
}

#[tokio::test]
async fn bad_requests_get_a_grpc_error_and_the_proxy_keeps_serving() {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let proxy = proxy(plaintext_config(&fake)).await;
    let addr = proxy.local_addr();
    let cases: Vec<(&str, Vec<u8>, tonic::Code)> = vec![
        (
            "undecodable bytes",
            vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x01],
            tonic::Code::InvalidArgument,
        ),
        (
            "invalid UTF-8 in the type URL",
            with_type_url_bytes(&[0x69, 0xff, 0xfe, 0x6f]),
            tonic::Code::InvalidArgument,
        ),
        (
            "a 10 KiB type URL",
            with_type_url_bytes(&vec![b'x'; 10 * 1024]),
            tonic::Code::InvalidArgument,
        ),
        (
            "a 2 MiB request",
            with_type_url_bytes(&vec![b'x'; 2 * 1024 * 1024]),
            tonic::Code::ResourceExhausted,
        ),
    ];
    for (what, msg, code) in cases {
        match raw_ask(addr, msg).await {
            Ok(m) => panic!("{what}: answered {} bytes", m.len()),
            Err(s) => {
                assert_eq!(s.code(), code, "{what}: {s:?}");
                assert!(s.message().len() < 1024, "{what}: unbounded message");
            }
        }
    }
    let ok = ask(addr, type_url::SYNCZ, &[], None).await;
    assert!(ok.is_ok(), "still serving: {ok:?}");
    proxy.shutdown().await;
    fake.shutdown().await;
}

/// A replica slower than the request deadline: the answer is an error within
/// about the deadline, not after the replica.
#[tokio::test]
async fn request_timeout_bounds_the_whole_request() {
    let fake = fake(open_scenario("fault-hang.yaml")).await;
    let mut c = plaintext_config(&fake);
    c.replica_timeout = Duration::from_secs(30);
    c.request_timeout = Duration::from_millis(800);
    let proxy = proxy(c).await;
    let started = std::time::Instant::now();
    let r = ask(proxy.local_addr(), type_url::SYNCZ, &[], None).await;
    let took = started.elapsed();
    assert!(r.is_err(), "{r:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    proxy.shutdown().await;
    fake.shutdown().await;
}

/// `max_streams_per_connection` is what the proxy advertises in its HTTP/2
/// SETTINGS (a client opens no more at once; hyper refuses extra ones).
#[tokio::test]
async fn the_stream_cap_per_connection_is_advertised() {
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let mut c = plaintext_config(&fake);
    c.limits.max_streams_per_connection = 2;
    let proxy = proxy(c).await;
    let tcp = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect to the proxy");
    let (h2, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let driver = tokio::spawn(connection);
    // Until the server's SETTINGS arrive the client assumes no limit;
    // bounded wait for them.
    let seen = tokio::time::timeout(PATIENCE, async {
        loop {
            let n = h2.current_max_send_streams();
            if n == 2 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(seen, Ok(2), "the proxy's SETTINGS_MAX_CONCURRENT_STREAMS");
    driver.abort();
    proxy.shutdown().await;
    fake.shutdown().await;
}

/// A connection that sends nothing is closed after `idle_timeout`, not before.
#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::AsyncReadExt;
    let fake = fake(open_scenario("three-replicas.yaml")).await;
    let mut c = plaintext_config(&fake);
    let idle = Duration::from_millis(300);
    c.limits.idle_timeout = idle;
    let proxy = proxy(c).await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect to the proxy");
    let opened = std::time::Instant::now();
    // The proxy sends its HTTP/2 SETTINGS; then, as the client says
    // nothing, the end of the connection.
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    let closed_after = opened.elapsed();
    assert!(
        read.is_ok(),
        "an idle connection was still open after {PATIENCE:?}"
    );
    assert!(
        closed_after >= idle,
        "closed after {closed_after:?}, before the idle timeout {idle:?}"
    );
    // And the proxy still serves.
    let ok = ask(proxy.local_addr(), type_url::SYNCZ, &[], None).await;
    assert!(ok.is_ok(), "still serving: {ok:?}");
    proxy.shutdown().await;
    fake.shutdown().await;
}

/// A client that asks and never reads cannot keep its answer (and the only
/// answer slot): once another request waits, its connection is closed and
/// the other request is answered.
#[tokio::test]
async fn a_client_that_does_not_read_gives_way() {
    use prost::Message;
    let fake = fake(open_scenario("medium-mesh.yaml")).await;
    let mut c = plaintext_config(&fake);
    c.limits.max_inflight_answers = 1;
    // Patience far beyond the test: only giving way can free the slot.
    c.request_timeout = Duration::from_secs(60);
    let proxy = proxy(c).await;
    let tcp = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect to the proxy");
    // 64 KiB windows, never opened again: the ~2.5 MB answer cannot get out.
    let (h2, connection) = h2::client::Builder::new()
        .initial_window_size(65_535)
        .initial_connection_window_size(65_535)
        .handshake::<_, prost::bytes::Bytes>(tcp)
        .await
        .expect("HTTP/2 handshake");
    let slow_conn = tokio::spawn(connection);
    let mut h2 = h2.ready().await.expect("ready");
    let req = http::Request::post(format!(
        "http://{}/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        proxy.local_addr()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .expect("request");
    let (answer, mut send) = h2.send_request(req, false).expect("send request");
    let msg = istioctl_request(type_url::SYNCZ, &[]).encode_to_vec();
    let mut frame = vec![0];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    send.send_data(frame.into(), false).expect("send data");
    let mut body = tokio::time::timeout(PATIENCE, answer)
        .await
        .expect("response headers in time")
        .expect("response headers")
        .into_body();
    // The answer starts (it holds the only slot now); read no further.
    let first = tokio::time::timeout(PATIENCE, body.data()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the answer should start: {first:?}"
    );
    // Another client is answered, well within the patience...
    let started = std::time::Instant::now();
    let other = tokio::time::timeout(
        PATIENCE,
        ask(proxy.local_addr(), type_url::SYNCZ, &[], None),
    )
    .await
    .expect("answered within the test's patience");
    assert!(other.is_ok(), "{other:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    // ...and the slow reader's connection was closed (its answer dropped).
    let closed = tokio::time::timeout(PATIENCE, slow_conn).await;
    assert!(closed.is_ok(), "the slow reader's connection is still open");
    drop(send);
    proxy.shutdown().await;
    fake.shutdown().await;
}
