//! Accepted connections and the connection-level faults: down (nothing
//! listening), flap, reset (accept then RST) and truncated (the answer is cut
//! in the middle of its first HTTP/2 DATA frame).

use crate::mesh::FaultState;
use crate::scenario::Fault;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The transport under a [`Conn`].
pub enum Io {
    Tcp(TcpStream),
    Piped {
        io: DuplexStream,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    },
}

/// A connection handed to tonic: a socket, or a pipe when a fault sits in
/// between. It fails (and the socket is reset) when the replica goes down, so
/// clients that keep connections open see the fault too.
pub struct Conn {
    io: Io,
    kill: Pin<Box<dyn Future<Output = ()> + Send>>,
    killed: bool,
}

impl Conn {
    /// A connection that dies when `kill` moves past its current generation.
    pub fn new(io: Io, kill: &watch::Receiver<u64>) -> Conn {
        let mut rx = kill.clone();
        let generation = *rx.borrow_and_update();
        Conn {
            io,
            kill: Box::pin(async move {
                let _ = rx.wait_for(|g| *g != generation).await;
            }),
            killed: false,
        }
    }

    /// Polls the kill switch; on kill, resets the socket.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.killed && self.kill.as_mut().poll(cx).is_ready() {
            self.killed = true;
            if let Io::Tcp(s) = &self.io {
                let _ = s.set_zero_linger();
            }
        }
        if self.killed {
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "replica went down",
            ))
        } else {
            Ok(())
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        match &self.io {
            Io::Tcp(s) => s.connect_info(),
            Io::Piped { local, remote, .. } => TcpConnectInfo {
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
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.io {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Piped { io, .. } => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.io {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Piped { io, .. } => Pin::new(io).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.io {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Piped { io, .. } => Pin::new(io).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Piped { io, .. } => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// Faults under which connections made before are cut.
fn cuts_connections(f: &Option<Fault>) -> bool {
    matches!(
        f,
        Some(Fault::Down | Fault::Reset | Fault::Truncated | Fault::Flap { .. })
    )
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
            // Phase boundaries from `since`, computed without overflow however
            // long the replica has been flapping.
            let next_phase = u32::try_from(n + 1).unwrap_or(u32::MAX);
            let next = period
                .checked_mul(next_phase)
                .and_then(|d| since.checked_add(d))
                .unwrap_or(now + period);
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
    let (kill, kill_rx) = watch::channel(0u64);
    let mut last_fault: Option<Fault> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let state = fault.borrow().clone();
        let (down, next_flip) = down_now(&state, Instant::now());
        if state.fault != last_fault && cuts_connections(&state.fault) {
            kill.send_modify(|g| *g += 1);
        }
        last_fault = state.fault.clone();
        if down {
            if listener.take().is_some() {
                kill.send_modify(|g| *g += 1);
            }
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
                Ok((stream, _peer)) => {
                    // Like istiod (Go sets TCP_NODELAY on every connection): small
                    // answers must not wait for a delayed ACK (~40 ms each).
                    let _ = stream.set_nodelay(true);
                    match state.fault {
                    Some(Fault::Reset) => {
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    }
                    Some(Fault::Truncated) => {
                        let (ours, theirs) = tokio::io::duplex(64 * 1024);
                        let local = stream.local_addr().ok();
                        let remote = stream.peer_addr().ok();
                        tokio::spawn(truncating_pump(stream, ours));
                        let conn = Conn::new(Io::Piped { io: theirs, local, remote }, &kill_rx);
                        if conns.send(Ok(conn)).await.is_err() {
                            break;
                        }
                    }
                    _ => {
                        if conns.send(Ok(Conn::new(Io::Tcp(stream), &kill_rx))).await.is_err() {
                            break;
                        }
                    }
                }},
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
