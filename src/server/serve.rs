//! Serving the router on a TCP listener: the accept loop, HTTP/1 connections, their timeouts
//! and the connection limit, and the graceful stop.
//!
//! Owns what a client that sends nothing, or sends slowly, can hold: a connection is closed
//! when its request's headers have not arrived within `header_timeout` (counted from when it
//! connects or from its previous answer, so an idle kept-alive connection is closed then too),
//! and a request whose body has not arrived within `body_timeout` of its headers fails with
//! 408. At `max_connections` open, the connection idle the longest (not inside a handler) is
//! closed to make room, so connections held open without requests cannot lock others out; a
//! handler running is never cut.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower_service::Service as _;

use super::LogLimiter;
use crate::runtime::metrics;

/// What a client may hold, from [`crate::runtime::Settings`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// Accept errors other than a client's own (out of file descriptors, say) repeat for every
/// attempt: one line per this long, with the count left out.
static ACCEPT_LOG: LazyLock<LogLimiter> = LazyLock::new(|| LogLimiter::new(Duration::from_secs(5)));

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to close after its current request, and returns once all have.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let conns = Arc::new(Conns::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Room is made before the connection is served: the one waiting here is the only one
        // over the limit, and the listener's backlog holds the rest.
        tokio::select! {
            () = conns.make_room(limits.max_connections) => {}
            () = &mut shutdown => break,
        }
        let slot = conns.open();
        tokio::spawn(connection(
            stream,
            router.clone(),
            limits,
            slot,
            stop_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Kept-alive idle connections close at once (hyper's graceful shutdown), the others after
    // their current request; one that has not sent a whole request yet is closed here, or the
    // stop would wait for its header timeout.
    while conns.len() > 0 {
        conns.close_unserved();
        let _ = tokio::time::timeout(Duration::from_millis(50), conns.freed.notified()).await;
    }
}

async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    if let Some(suppressed) = ACCEPT_LOG.admit("accept", Instant::now()) {
        tracing::error!(error = %e, suppressed, "Cannot accept a connection");
    }
    // As hyper's own server did: the likely cause (no file descriptor left) passes when
    // connections close, and retrying at once would only spin.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
) {
    let slot = Arc::new(slot);
    let close = slot.close.clone();
    let in_service = slot.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let busy = in_service.busy();
        let mut router = router.clone();
        let request = request.map(|body| Body::new(TimedBody::new(body, limits.body_timeout)));
        async move {
            let response = router.call(request).await;
            drop(busy);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    if e.is_timeout() {
                        metrics::connection_closed("header_timeout");
                    } else {
                        tracing::debug!(error = %e, "Connection ended with an error");
                    }
                }
                return;
            }
            () = close.notified() => {
                // A request may have reached a handler since this one was picked: it finishes,
                // and the connection is picked again later if it is still the idlest.
                if slot.is_busy() {
                    continue;
                }
                metrics::connection_closed("evicted");
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The open connections, for the limit: which are idle (none of their requests in a handler),
/// since when, and how to close one.
#[derive(Default)]
struct Conns {
    next: AtomicU64,
    open: Mutex<HashMap<u64, SlotState>>,
    /// Notified when a connection closes.
    freed: Notify,
}

struct SlotState {
    /// Requests of the connection in a handler (HTTP/1: at most one).
    busy: u32,
    /// Whether a request of it has reached a handler yet.
    served: bool,
    /// When it last left a handler, or connected.
    idle_since: Instant,
    close: Arc<Notify>,
}

impl Conns {
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SlotState>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(self: &Arc<Self>) -> Slot {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        self.lock().insert(
            id,
            SlotState {
                busy: 0,
                served: false,
                idle_since: Instant::now(),
                close: close.clone(),
            },
        );
        metrics::connections_open(self.len());
        Slot {
            id,
            conns: self.clone(),
            close,
        }
    }

    /// Closes the connections that have not yet sent a whole request.
    fn close_unserved(&self) {
        for s in self.lock().values().filter(|s| !s.served && s.busy == 0) {
            s.close.notify_one();
        }
    }

    /// Returns once fewer than `max` are open, closing the longest idle ones meanwhile. When
    /// every one is in a handler, waits for one to finish (bounded by the body timeout and the
    /// handler's own work).
    async fn make_room(&self, max: usize) {
        loop {
            {
                let open = self.lock();
                if open.len() < max {
                    return;
                }
                let victim = open
                    .values()
                    .filter(|s| s.busy == 0)
                    .min_by_key(|s| s.idle_since);
                if let Some(victim) = victim {
                    victim.close.notify_one();
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), self.freed.notified()).await;
        }
    }
}

/// One connection's place in [`Conns`], given up when the connection ends.
struct Slot {
    id: u64,
    conns: Arc<Conns>,
    close: Arc<Notify>,
}

impl Slot {
    /// Marks the connection busy until the guard is dropped.
    fn busy(&self) -> Busy {
        if let Some(s) = self.conns.lock().get_mut(&self.id) {
            s.busy += 1;
            s.served = true;
        }
        Busy {
            id: self.id,
            conns: self.conns.clone(),
        }
    }
}

impl Slot {
    fn is_busy(&self) -> bool {
        self.conns.lock().get(&self.id).is_some_and(|s| s.busy > 0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let left = {
            let mut open = self.conns.lock();
            open.remove(&self.id);
            open.len()
        };
        metrics::connections_open(left);
        self.conns.freed.notify_one();
    }
}

struct Busy {
    id: u64,
    conns: Arc<Conns>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(s) = self.conns.lock().get_mut(&self.id) {
            s.busy = s.busy.saturating_sub(1);
            s.idle_since = Instant::now();
        }
    }
}

/// A request body that fails with [`BodyTimedOut`] once its deadline has passed, so that a
/// client sending a byte now and then cannot hold a handler (and its connection) for long.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> TimedBody {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

/// The error a body gives when it did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(axum::BoxError::from)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body error is [`BodyTimedOut`], however deep the layers above wrapped it.
pub(crate) fn timed_out<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimedOut> {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(t) = e.downcast_ref::<BodyTimedOut>() {
            return Some(t);
        }
        at = e.source();
    }
    None
}
