//! Bounded resources against hostile or broken clients: how many connections
//! and streams, how big a request, how long a connection may stay silent, how
//! many answers may wait for a client that does not read them, and an accept
//! loop that backs off (and logs once per interval) when accepting fails.

use futures::Stream;
use futures::task::AtomicWaker;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Limits of one proxy instance (flags in `cli.rs`, documented in README.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open client connections at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
    /// Largest request message accepted (istioctl's are a few hundred bytes).
    pub max_request_bytes: usize,
    /// Answers being computed or waiting to be read by their client, at once.
    pub max_inflight_answers: usize,
    /// Largest answer read from one replica (its buffer grows with what
    /// arrived, never to a length only announced).
    pub max_replica_answer_bytes: usize,
    /// A connection from which nothing was read for this long is closed
    /// (HTTP/2 keepalive pings make live clients send something every
    /// `keepalive_interval`).
    pub idle_timeout: Duration,
    /// HTTP/2 keepalive ping interval; a peer that does not answer a ping
    /// within `keepalive_timeout` is dropped.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_streams_per_connection: 100,
            max_request_bytes: 64 * 1024,
            max_inflight_answers: 4,
            max_replica_answer_bytes: crate::upstream::DEFAULT_MAX_ANSWER_BYTES,
            idle_timeout: Duration::from_secs(90),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// How the listener serves, beyond [`Limits`] (set up at start; the
/// `serving` seam of `crate::defects` may change it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Serving {
    /// Largest request message read.
    pub max_request_bytes: usize,
    /// Largest answer message sent.
    pub max_answer_bytes: usize,
    /// HTTP/2 receive windows for clients: per stream, per connection.
    pub client_windows: (u32, u32),
    /// Whether answer chunks are held back while the client has not read
    /// what it was handed (see `crate::ads`).
    pub bounded_answers: bool,
    /// `Some(tls)`: a connection whose first bytes are not a handshake ends
    /// the accept loop (the `die-on-garbage` defect; see [`incoming`]).
    pub die_on_garbage: Option<bool>,
}

/// Raises this process's soft open-file limit to its hard limit (so that
/// `max_connections` is reachable); returns the soft limit in force.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc_rlimit::RLimit { cur: 0, max: 0 };
        // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
        unsafe {
            if libc_rlimit::getrlimit(libc_rlimit::RLIMIT_NOFILE, &mut lim) != 0 {
                return None;
            }
            if lim.cur < lim.max {
                let want = libc_rlimit::RLimit {
                    cur: lim.max,
                    max: lim.max,
                };
                if libc_rlimit::setrlimit(libc_rlimit::RLIMIT_NOFILE, &want) == 0 {
                    return Some(lim.max);
                }
            }
        }
        Some(lim.cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// glibc's malloc raises its mmap threshold to the size of the largest
/// block freed so far (up to 32 MiB), so after one big answer every replica's
/// answer buffer comes from the heap, whose freed memory the process keeps and
/// which fragments across threads: resident memory creeps up request after
/// request (measured: 1.7× the answer after one request, 3× after six). A
/// fixed threshold keeps buffers of 256 KiB and more in their own mappings,
/// given back to the kernel when freed (glibc `mallopt(M_MMAP_THRESHOLD)`;
/// it also fixes the trim threshold). The arenas are capped at the number of
/// cores (`M_ARENA_MAX`; glibc's default is 8 per core): every blocking
/// thread that merges or writes answers otherwise gets an arena of its own,
/// whose freed memory the others cannot reuse (50 concurrent clients at
/// R=20, 100,000 proxies: growth 1.94-2.02× the answer without the cap,
/// 1.82-1.95× with it; no change in speed). Other allocators: nothing to do.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_ARENA_MAX: i32 = -8;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        let arenas = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 64));
        for (param, value, name) in [
            (M_MMAP_THRESHOLD, 256 * 1024, "M_MMAP_THRESHOLD"),
            (M_ARENA_MAX, arenas as i32, "M_ARENA_MAX"),
        ] {
            // SAFETY: mallopt only changes malloc's tuning; any value is accepted or refused (0).
            if unsafe { mallopt(param, value) } == 0 {
                tracing::debug!("mallopt({name}) refused");
            }
        }
    }
}

#[cfg(unix)]
#[allow(non_camel_case_types)]
mod libc_rlimit {
    //! The two libc calls needed, declared here to avoid a dependency.
    #[repr(C)]
    pub struct RLimit {
        pub cur: u64,
        pub max: u64,
    }
    #[cfg(target_os = "linux")]
    pub const RLIMIT_NOFILE: i32 = 7;
    #[cfg(not(target_os = "linux"))]
    pub const RLIMIT_NOFILE: i32 = 8;
    unsafe extern "C" {
        pub fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
        pub fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
    }
}

/// A handle that closes one client connection (its reads and writes fail).
#[derive(Debug, Clone, Default)]
pub struct Kill {
    killed: Arc<AtomicBool>,
    waker: Arc<AtomicWaker>,
}

impl Kill {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// Bytes written to one client connection (TLS included), and answer
/// bytes handed to it: an answer counts as read once the connection has
/// written as many bytes as all answers handed to it so far. HTTP/2 flow
/// control lets the proxy write only what the client's window allows, so a
/// client that does not read stops this count at its window.
#[derive(Debug, Default)]
pub struct Written {
    bytes: AtomicU64,
    owed: AtomicU64,
    more: tokio::sync::Notify,
}

impl Written {
    fn add(&self, n: usize) {
        if n > 0 {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
            self.more.notify_waiters();
        }
    }
    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Records an answer of `size` bytes handed over; returns the count
    /// [`Self::bytes`] must reach for it to be out. (Frame and TLS overhead
    /// make the count run a little ahead: an answer counts as out when all but
    /// the overhead of earlier answers is written. Streams sharing a
    /// connection share the count.)
    pub fn owe(&self, size: u64) -> u64 {
        self.owed.fetch_add(size, Ordering::Relaxed) + size
    }
    /// Waits until [`Self::bytes`] reaches `target`.
    pub async fn reach(&self, target: u64) {
        loop {
            let more = self.more.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            if self.bytes() >= target {
                return;
            }
            more.await;
        }
    }
}

/// What the server knows about a connection (a request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub tcp: TcpConnectInfo,
    pub kill: Kill,
    pub written: Arc<Written>,
}

/// A client connection: holds a connection permit, closes itself after
/// `idle` without a byte read, and can be killed.
pub struct LimitedConn {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    kill: Kill,
    written: Arc<Written>,
    garbage: Option<GarbageTrap>,
}

/// The `DieOnGarbage` test defect's trap (checked once, on the first bytes).
struct GarbageTrap {
    tls: bool,
    dead: Arc<tokio::sync::Notify>,
    dead_flag: Arc<AtomicBool>,
}

impl LimitedConn {
    fn check(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.kill.waker.register(cx.waker());
        if self.kill.is_killed() {
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed by istioctl-proxy: an answer was not read in time",
            ));
        }
        None
    }
}

impl Connected for LimitedConn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        ConnInfo {
            tcp: self.inner.connect_info(),
            kill: self.kill.clone(),
            written: self.written.clone(),
        }
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before
                    && let Some(trap) = self.garbage.take()
                {
                    let first = &buf.filled()[before..];
                    // A TLS record, or the HTTP/2 preface (also on a TLS
                    // port: that is the `tls` check's probe, not garbage).
                    let preface = b"PRI * HTTP/2.0".starts_with(&first[..first.len().min(14)]);
                    let ok = preface || (trap.tls && first[0] == 0x16);
                    if !ok {
                        tracing::error!(
                            "defect die-on-garbage: not a handshake; no longer accepting"
                        );
                        trap.dead_flag.store(true, Ordering::SeqCst);
                        trap.dead.notify_waiters();
                    }
                }
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle;
                    self.idle_timer.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.idle_timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "closed by istioctl-proxy: idle connection",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.written.add(*n);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.check(cx) {
            return Poll::Ready(Err(e));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            self.written.add(*n);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Backoff after a failed accept (e.g. EMFILE): doubles from `MIN` to `MAX`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept errors are logged at most once per interval (with a count).
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Accepted connections, at most `max_connections` open at once; accept
/// errors back off instead of spinning and are logged once per interval.
///
/// `die_on_garbage` (`Some(tls)`) is the `DieOnGarbage` test defect: a
/// connection whose first bytes are not a TLS record (`tls`) or the HTTP/2
/// preface ends the accept loop.
pub fn incoming(
    listener: TcpListener,
    limits: &Limits,
    die_on_garbage: Option<bool>,
) -> impl Stream<Item = Result<LimitedConn, io::Error>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let dead = Arc::new(tokio::sync::Notify::new());
    let dead_flag = Arc::new(AtomicBool::new(false));
    let idle = limits.idle_timeout;
    let errors = Arc::new(AtomicU64::new(0));
    futures::stream::unfold(
        (listener, slots, None::<Instant>, ACCEPT_BACKOFF_MIN),
        move |(listener, slots, mut last_log, mut backoff)| {
            let errors = errors.clone();
            let dead = dead.clone();
            let dead_flag = dead_flag.clone();
            async move {
                // Wait for a free slot first: beyond the cap, clients wait in the backlog.
                let permit = slots.clone().acquire_owned().await.ok()?;
                loop {
                    if dead_flag.load(Ordering::SeqCst) {
                        return None;
                    }
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = dead.notified() => return None,
                    };
                    match accepted {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let conn = LimitedConn {
                                inner: stream,
                                _permit: permit,
                                idle,
                                idle_timer: Box::pin(tokio::time::sleep(idle)),
                                kill: Kill::default(),
                                written: Default::default(),
                                garbage: die_on_garbage.map(|tls| GarbageTrap {
                                    tls,
                                    dead: dead.clone(),
                                    dead_flag: dead_flag.clone(),
                                }),
                            };
                            return Some((
                                Ok(conn),
                                (listener, slots, last_log, ACCEPT_BACKOFF_MIN),
                            ));
                        }
                        Err(e) => {
                            let n = errors.fetch_add(1, Ordering::Relaxed) + 1;
                            let now = Instant::now();
                            if last_log.is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_INTERVAL)
                            {
                                tracing::error!(error = %e, failures_so_far = n, retry_in = ?backoff,
                                    "accepting a connection failed (logged once per {ACCEPT_LOG_INTERVAL:?})");
                                last_log = Some(now);
                            }
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        }
                    }
                }
            }
        },
    )
}

/// Answers in flight across all clients: a permit is taken before a request
/// is answered and given back once the client has read the answer (its
/// connection wrote it out, see [`Written`]) or went away. An answer whose
/// client stalls while others wait for a slot gives way (see [`AnswerSlots::contended`]).
#[derive(Debug, Clone)]
pub struct AnswerSlots {
    slots: Arc<Semaphore>,
    /// Requests waiting for a slot now.
    waiting: Arc<AtomicU64>,
}

impl AnswerSlots {
    pub fn new(n: usize) -> Self {
        AnswerSlots {
            slots: Arc::new(Semaphore::new(n.max(1))),
            waiting: Default::default(),
        }
    }
    /// Waits until `deadline` for a slot.
    pub async fn acquire(&self, deadline: Instant) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Some(p);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let got = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        got.ok()?.ok()
    }
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
    /// Whether a request is waiting for a slot.
    pub fn contended(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }
}

/// A response stream whose items carry a permit, released when the consumer
/// asks for the next item (hyper does so once the previous one was handed to
/// the connection within the client's flow-control window) or drops the stream.
pub struct PermitStream<S> {
    inner: S,
    held: Option<OwnedSemaphorePermit>,
    /// Told when the held permit is released (the answer was taken).
    taken: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<S> PermitStream<S> {
    pub fn new(inner: S) -> Self {
        PermitStream {
            inner,
            held: None,
            taken: None,
        }
    }
}

/// One answer with what keeps it accounted for.
pub struct Tracked<T> {
    pub item: T,
    pub permit: Option<OwnedSemaphorePermit>,
    pub taken: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<T> Tracked<Result<T, tonic::Status>> {
    /// A refusal: holds no answer slot and nobody waits for it to be taken.
    pub fn error(status: tonic::Status) -> Self {
        Tracked {
            item: Err(status),
            permit: None,
            taken: None,
        }
    }
}

impl<S, T> Stream for PermitStream<S>
where
    S: Stream<Item = Tracked<T>> + Unpin,
{
    type Item = T;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.held = None;
        if let Some(tx) = self.taken.take() {
            let _ = tx.send(());
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(t)) => {
                self.held = t.permit;
                self.taken = t.taken;
                Poll::Ready(Some(t.item))
            }
            other => other.map(|o| o.map(|t| t.item)),
        }
    }
}

/// A string for a log line or an error message: at most `max` bytes (on a
/// char boundary), with how much was cut.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_cuts_on_char_boundaries() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("abcdef", 3), "abc… (6 bytes in all)");
        assert_eq!(bounded("ééé", 3), "é… (6 bytes in all)");
    }

    #[tokio::test]
    async fn permit_is_released_when_the_next_item_is_asked_for() {
        use futures::StreamExt;
        let slots = AnswerSlots::new(1);
        let p = slots.acquire(Instant::now() + Duration::from_secs(1)).await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let items = futures::stream::iter(vec![Tracked {
            item: 1,
            permit: p,
            taken: Some(tx),
        }]);
        let mut s = PermitStream::new(items);
        assert_eq!(s.next().await, Some(1));
        assert_eq!(slots.available(), 0, "held while the answer is out");
        assert_eq!(s.next().await, None);
        assert_eq!(slots.available(), 1);
        assert!(rx.await.is_ok());
    }

    #[tokio::test]
    async fn accept_errors_back_off() {
        // Not provoking EMFILE here; the backoff bounds are what matter.
        assert!(ACCEPT_BACKOFF_MIN < ACCEPT_BACKOFF_MAX);
        assert!(raise_fd_limit().is_some_and(|n| n > 0));
    }
}
