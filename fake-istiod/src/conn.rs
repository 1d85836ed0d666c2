//! Accepted connections and the connection-level faults: down (nothing
//! listening), flap, reset (accept then RST) and truncated (the answer is cut
//! in the middle of its first HTTP/2 DATA frame).

use crate::mesh::FaultState;
use crate::scenario::Fault;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// A connection handed to tonic: a socket, or a pipe when a fault sits in between.
pub enum Conn {
    Tcp(TcpStream),
    Piped {
        io: DuplexStream,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    },
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Conn::Tcp(s) => s.connect_info(),
            Conn::Piped { local, remote, .. } => TcpConnectInfo {
                local_addr: *local,
                remote_addr: *remote,
            },
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Piped { io, .. } => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Piped { io, .. } => Pin::new(io).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Piped { io, .. } => Pin::new(io).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Piped { io, .. } => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// Whether the listener should be closed now, and when that may change (flap).
pub fn down_now(state: &FaultState, now: Instant) -> (bool, Option<Instant>) {
    match &state.fault {
        Some(Fault::Down) => (true, None),
        Some(Fault::Flap { period }) => {
            let period = (*period).max(std::time::Duration::from_millis(1));
            let since: Instant = state.since.into();
            let elapsed = now.saturating_duration_since(since);
            let n = elapsed.as_nanos() / period.as_nanos();
            let next = since + period * (n as u32 + 1);
            // Even phases up, odd phases down: starts up.
            (n % 2 == 1, Some(next))
        }
        _ => (false, None),
    }
}

/// Accepts connections on `addr`, applying the replica's connection-level faults.
pub async fn accept_loop(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    mut fault: watch::Receiver<FaultState>,
    conns: mpsc::Sender<io::Result<Conn>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        let state = fault.borrow().clone();
        let (down, next_flip) = down_now(&state, Instant::now());
        if down {
            listener = None;
        } else if listener.is_none() {
            match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot listen again; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
            }
        }
        let flip = async {
            match next_flip {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = shutdown.changed() => { if r.is_err() { break } }
            r = fault.changed() => { if r.is_err() { break } }
            _ = flip => {}
            r = accept => match r {
                Ok((stream, _peer)) => match state.fault {
                    Some(Fault::Reset) => {
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    }
                    Some(Fault::Truncated) => {
                        let (ours, theirs) = tokio::io::duplex(64 * 1024);
                        let local = stream.local_addr().ok();
                        let remote = stream.peer_addr().ok();
                        tokio::spawn(truncating_pump(stream, ours));
                        if conns.send(Ok(Conn::Piped { io: theirs, local, remote })).await.is_err() {
                            break;
                        }
                    }
                    _ => {
                        if conns.send(Ok(Conn::Tcp(stream))).await.is_err() {
                            break;
                        }
                    }
                },
                Err(e) => tracing::warn!(%addr, error = %e, "accept failed"),
            }
        }
    }
}

/// Copies client → server unchanged, and server → client frame by frame until
/// the first non-empty DATA frame on a stream: half of it is sent, then the
/// connection is reset.
async fn truncating_pump(mut client: TcpStream, server: DuplexStream) {
    let (mut sr, mut sw) = tokio::io::split(server);
    {
        let (mut cr, mut cw) = client.split();
        let upstream = async {
            let _ = tokio::io::copy(&mut cr, &mut sw).await;
        };
        let downstream = async {
            let mut header = [0u8; 9];
            loop {
                if sr.read_exact(&mut header).await.is_err() {
                    return;
                }
                let len =
                    ((header[0] as usize) << 16) | ((header[1] as usize) << 8) | header[2] as usize;
                let kind = header[3];
                let stream_id =
                    u32::from_be_bytes([header[5] & 0x7f, header[6], header[7], header[8]]);
                let mut payload = vec![0u8; len];
                if sr.read_exact(&mut payload).await.is_err() {
                    return;
                }
                let cut = kind == 0 && stream_id != 0 && len > 0;
                let mut out = header.to_vec();
                out.extend_from_slice(if cut { &payload[..len / 2] } else { &payload });
                if cw.write_all(&out).await.is_err() || cut {
                    let _ = cw.flush().await;
                    return;
                }
            }
        };
        tokio::select! {
            _ = upstream => {}
            _ = downstream => {}
        }
    }
    let _ = client.set_zero_linger();
}
