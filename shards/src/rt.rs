//! The glommio glue: everything that lets hyper, h2 and rustls run on a
//! glommio executor, in one place.
//!
//! hyper hides its runtime behind three small traits (`rt::Read`/`rt::Write`,
//! `rt::Executor`, `rt::Timer`); glommio speaks futures-io and runs `!Send`
//! tasks on the current thread. [`HyperIo`] bridges the IO traits,
//! [`LocalExec`] spawns hyper's background tasks on the shard's executor,
//! and [`GlommioTimer`] gives hyper a timer. h2 wants tokio's IO traits
//! instead: [`H2Io`] provides them without a tokio runtime (and without
//! zeroing h2's read buffer per read); [`TurnBuffered`] gathers an h2
//! connection's writes. [`connect`], [`executor_builder`] and
//! [`probe_io_uring`] are the small start-up helpers every part shares.

use std::cell::RefCell;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_lite::{ready, AsyncRead, AsyncWrite};

/// Adapts a futures-io stream (a glommio `TcpStream`, a futures-rustls
/// stream) to hyper's `rt::Read` + `rt::Write`.
#[derive(Debug)]
pub struct HyperIo<T>(pub T);

/// Bytes copied through the stack per `poll_read` when hyper's buffer is
/// uninitialised: reading straight into it would need `unsafe`, which the
/// workspace denies; HTTP/1.1 responses here are small.
const READ_CHUNK: usize = 8 * 1024;

impl<T: AsyncRead + Unpin> hyper::rt::Read for HyperIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut chunk = [0u8; READ_CHUNK];
        let want = buf.remaining().min(READ_CHUNK);
        match Pin::new(&mut self.0).poll_read(cx, &mut chunk[..want]) {
            Poll::Ready(Ok(n)) => {
                buf.put_slice(&chunk[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

/// The write side of an HTTP/2 connection, gathered. h2 flushes its
/// transport after every large DATA frame it queues (its encoder holds one
/// at a time), and glommio's sockets have no vectored write: unbuffered,
/// each DATA frame header and payload was a `send` of its own, and buffered
/// but flushed when asked, still one `send` per frame — each waking the peer
/// (on loopback, running its receive path on this core). Here a flush only
/// queues a small task behind the connection's task; when it runs (the
/// connection's turn is over) it writes everything h2 produced in that turn
/// at once, and flushes the layer below. If the socket is full it leaves
/// the rest to the connection's next flush (the socket wakes that task when
/// it has room); a flush with nothing gathered goes straight through. Writes larger
/// than the buffer go straight through, after what is buffered; close
/// flushes. Must run on a glommio executor (it spawns the turn's writer).
///
/// Without copying bodies: over a plain TCP socket ([`SendVectored`]), a
/// write whose bytes lie inside a body registered in [`Bodies`] (a request
/// body h2 is sending) is gathered as a reference to that body, and the
/// turn leaves in one `sendmsg` of every gathered piece. Only h2's frame
/// heads (and the first KiB of each DATA frame, which h2 copies next to its
/// head) are copied. Copying each 16 KiB frame cost about 620 instructions
/// per batched json record, 5 % of the shard's.
#[derive(Debug)]
pub struct TurnBuffered<T> {
    io: Rc<RefCell<Gathered<T>>>,
    cap: usize,
    bodies: Option<Bodies>,
}

#[derive(Debug)]
struct Gathered<T> {
    inner: T,
    /// Copied bytes; `parts` says where they go among the referenced ones.
    buf: Vec<u8>,
    /// What to write, in order.
    parts: Vec<Part>,
    /// Bytes at the front of `parts[0]` already written.
    sent: usize,
    /// Bytes in `parts` not written yet.
    pending: usize,
    /// A turn's writer is queued.
    queued: bool,
    /// The turn's writer could not write everything: the next flush must.
    behind: bool,
}

#[derive(Debug)]
enum Part {
    /// `buf[range]`.
    Copied(std::ops::Range<usize>),
    /// Bytes of a registered body.
    Shared(bytes::Bytes),
}

/// The most pieces one `sendmsg` carries (a 64 KiB turn is about a dozen).
const MAX_PIECES: usize = 64;

/// A stream that can send several buffers at once without waiting:
/// `Some(result)` of one non-blocking `sendmsg`, or `None` when it cannot
/// (TLS: its records are built and copied anyway).
pub trait SendVectored {
    fn send_vectored_now(&self, _bufs: &[io::IoSlice<'_>]) -> Option<io::Result<usize>> {
        None
    }

    /// `send_vectored_now` gives `Some`.
    fn sends_vectored(&self) -> bool {
        false
    }
}

impl SendVectored for glommio::net::TcpStream {
    fn sends_vectored(&self) -> bool {
        true
    }

    fn send_vectored_now(&self, bufs: &[io::IoSlice<'_>]) -> Option<io::Result<usize>> {
        // Like glommio's own first try at a send: straight to the socket,
        // never waiting; would-block falls back to glommio's poll_write,
        // which waits for room.
        Some(
            socket2::SockRef::from(self)
                .send_vectored_with_flags(bufs, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL),
        )
    }
}

impl<T> SendVectored for Box<futures_rustls::client::TlsStream<T>> {}

/// The request bodies an HTTP/2 connection is sending, shared by the
/// requests (which add and remove theirs) and the connection's
/// [`TurnBuffered`] (which recognises writes from them).
#[derive(Debug, Clone, Default)]
pub struct Bodies(Rc<RefCell<Vec<bytes::Bytes>>>);

/// Bodies shorter than this are not registered: one record per request
/// (hundreds per connection) made every write scan a longer list, to save
/// copying less than 1 KiB each. (h2 0.4's `FramedWrite` copies a DATA
/// payload under 256 bytes, and the first 256 bytes of a longer one, into
/// its own buffer, since [`H2Io`] reports vectored writes.)
const CHAINED_BODY: usize = 1024;

impl Bodies {
    pub fn add(&self, body: &bytes::Bytes) {
        if body.len() >= CHAINED_BODY {
            self.0.borrow_mut().push(body.clone());
        }
    }

    /// Forgets `body` (the same allocation and range as one added).
    pub fn remove(&self, body: &bytes::Bytes) {
        if body.len() < CHAINED_BODY {
            return;
        }
        let mut list = self.0.borrow_mut();
        if let Some(i) = list
            .iter()
            .position(|b| b.as_ptr() == body.as_ptr() && b.len() == body.len())
        {
            list.swap_remove(i);
        }
    }

    /// The registered bytes `data` is, as a counted reference to its body.
    fn find(&self, data: &[u8]) -> Option<bytes::Bytes> {
        let start = data.as_ptr() as usize;
        let end = start + data.len();
        self.0.borrow().iter().find_map(|b| {
            let b_start = b.as_ptr() as usize;
            (start >= b_start && end <= b_start + b.len())
                .then(|| b.slice(start - b_start..end - b_start))
        })
    }

    /// Bodies registered now.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }
}

impl<T> TurnBuffered<T> {
    pub fn new(inner: T, cap: usize) -> Self {
        TurnBuffered {
            io: Rc::new(RefCell::new(Gathered {
                inner,
                buf: Vec::with_capacity(cap),
                parts: Vec::new(),
                sent: 0,
                pending: 0,
                queued: false,
                behind: false,
            })),
            cap: cap.max(1),
            bodies: None,
        }
    }

    /// Writes from these bodies are referenced, not copied (`inner` must
    /// send vectored: [`SendVectored`] gives `Some`).
    pub fn with_bodies(mut self, bodies: Bodies) -> Self {
        self.bodies = Some(bodies);
        self
    }

    /// Bytes waiting to be written.
    pub fn buffered(&self) -> usize {
        let io = self.io.borrow();
        io.pending
    }
}

impl<T> TurnBuffered<T> {
    /// `data` as a reference to the registered body it lies in, if it is
    /// long enough to be one (a shorter write, such as a frame head, is
    /// copied without a look through the bodies).
    fn shared(&self, data: &[u8]) -> Option<bytes::Bytes> {
        if data.len() < CHAINED_BODY {
            return None;
        }
        self.bodies.as_ref()?.find(data)
    }
}

impl<T> Gathered<T> {
    fn copy(&mut self, data: &[u8]) {
        let from = self.buf.len();
        self.buf.extend_from_slice(data);
        match self.parts.last_mut() {
            Some(Part::Copied(r)) if r.end == from => r.end = self.buf.len(),
            _ => self.parts.push(Part::Copied(from..self.buf.len())),
        }
        self.pending += data.len();
    }

    fn share(&mut self, body: bytes::Bytes) {
        self.pending += body.len();
        self.parts.push(Part::Shared(body));
    }

    fn piece<'a>(&'a self, part: &'a Part) -> &'a [u8] {
        match part {
            Part::Copied(r) => &self.buf[r.clone()],
            Part::Shared(b) => b,
        }
    }

    /// Marks `n` more bytes written.
    fn advance(&mut self, n: usize) {
        let mut left = self.sent + n;
        let mut done = 0;
        for part in &self.parts {
            let len = self.piece(part).len();
            if left < len {
                break;
            }
            left -= len;
            done += 1;
        }
        self.parts.drain(..done);
        self.sent = left;
        self.pending -= n;
        if self.parts.is_empty() {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.parts.clear();
        self.sent = 0;
        self.pending = 0;
        self.behind = false;
    }
}

impl<T: AsyncWrite + SendVectored + Unpin> Gathered<T> {
    fn poll_write_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(first) = self.parts.first() {
            // Every piece at once while the socket takes them.
            if self.parts.len() > 1 {
                let mut slices = Vec::with_capacity(self.parts.len().min(MAX_PIECES));
                slices.push(io::IoSlice::new(&self.piece(first)[self.sent..]));
                for part in self.parts.iter().skip(1).take(MAX_PIECES - 1) {
                    slices.push(io::IoSlice::new(self.piece(part)));
                }
                match self.inner.send_vectored_now(&slices) {
                    Some(Ok(0)) => return Poll::Ready(Err(write_zero())),
                    Some(Ok(n)) => {
                        self.advance(n);
                        continue;
                    }
                    Some(Err(e)) if e.kind() != io::ErrorKind::WouldBlock => {
                        return Poll::Ready(Err(e))
                    }
                    // Would block: glommio's write waits for room.
                    _ => {}
                }
            }
            let first_len = self.piece(first).len() - self.sent;
            let n = match self.parts.first() {
                Some(Part::Copied(r)) => {
                    let r = r.start + self.sent..r.end;
                    ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[r]))?
                }
                Some(Part::Shared(b)) => {
                    let b = b.slice(self.sent..);
                    ready!(Pin::new(&mut self.inner).poll_write(cx, &b))?
                }
                None => 0,
            };
            if n == 0 && first_len > 0 {
                return Poll::Ready(Err(write_zero()));
            }
            self.advance(n);
        }
        self.clear();
        Poll::Ready(Ok(()))
    }
}

fn write_zero() -> io::Error {
    io::Error::new(io::ErrorKind::WriteZero, "connection accepts no more bytes")
}

impl<T: AsyncRead + Unpin> AsyncRead for TurnBuffered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io.borrow_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + SendVectored + Unpin + 'static> AsyncWrite for TurnBuffered<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut io = self.io.borrow_mut();
        if io.pending + data.len() > self.cap {
            ready!(io.poll_write_buffered(cx))?;
        }
        if data.len() >= self.cap {
            return Pin::new(&mut io.inner).poll_write(cx, data);
        }
        match self.shared(data) {
            Some(shared) => io.share(shared),
            None => io.copy(data),
        }
        Poll::Ready(Ok(data.len()))
    }

    /// The pieces of one write gathered together: h2 hands a DATA frame
    /// over as its head (with the first bytes of its payload) and the rest
    /// of the payload in one call, so a registered body's bytes are shared
    /// as they come.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        {
            let mut io = self.io.borrow_mut();
            if io.pending + total > self.cap {
                ready!(io.poll_write_buffered(cx))?;
            }
            if io.pending + total <= self.cap {
                for b in bufs.iter().filter(|b| !b.is_empty()) {
                    match self.shared(b) {
                        Some(shared) => io.share(shared),
                        None => io.copy(b),
                    }
                }
                return Poll::Ready(Ok(total));
            }
        }
        // Larger than the buffer: its first piece the way a plain write
        // goes (straight through).
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        self.poll_write(cx, first)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.io.borrow_mut();
        // Nothing gathered (or the turn's writer fell behind): flush through,
        // so that a layer below (TLS keeps records it could not write yet)
        // is flushed whenever h2 asks.
        if io.behind || io.parts.is_empty() {
            ready!(io.poll_write_buffered(cx))?;
            return Pin::new(&mut io.inner).poll_flush(cx);
        }
        if !io.queued {
            io.queued = true;
            let (shared, waker) = (self.io.clone(), cx.waker().clone());
            // glommio polls a spawned task at once: it yields first, to
            // run behind the task whose turn it ends.
            glommio::spawn_local(async move {
                futures_lite::future::yield_now().await;
                let mut io = shared.borrow_mut();
                io.queued = false;
                // Registers the connection's task with the socket if full.
                let mut cx = Context::from_waker(&waker);
                let done = match io.poll_write_buffered(&mut cx) {
                    Poll::Ready(Ok(())) => matches!(
                        Pin::new(&mut io.inner).poll_flush(&mut cx),
                        Poll::Ready(Ok(()))
                    ),
                    _ => false,
                };
                if !done {
                    io.behind = true;
                    waker.wake_by_ref();
                }
            })
            .detach();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.io.borrow_mut();
        ready!(io.poll_write_buffered(cx))?;
        Pin::new(&mut io.inner).poll_close(cx)
    }
}

/// h2's transport: tokio's IO traits over a futures-io stream. Unlike
/// tokio-util's `Compat`, a read does not zero the reader's free buffer
/// first: h2 (through tokio-util's framed reader) hands a fresh
/// uninitialised `ReadBuf` over its whole spare capacity to every read, and
/// `Compat` zeroed all of it to read a few dozen bytes of responses and
/// window updates (memset: 218 instructions per batched record, more than
/// h2's own reading). Reads land in a buffer initialised once and are
/// copied out: only the bytes read are touched.
#[derive(Debug)]
pub struct H2Io<T> {
    inner: T,
    scratch: Box<[u8]>,
}

/// A read's most bytes (h2 reads frames of up to 16 KiB).
const H2_READ: usize = 16 * 1024;

impl<T> H2Io<T> {
    pub fn new(inner: T) -> Self {
        H2Io {
            inner,
            scratch: vec![0u8; H2_READ].into_boxed_slice(),
        }
    }
}

/// Reads up to `want` bytes into `scratch` (initialised once by its owner,
/// so nothing is zeroed per read) and gives them back.
fn read_through<'a, T: AsyncRead + Unpin>(
    inner: &mut T,
    scratch: &'a mut [u8],
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<&'a [u8]>> {
    let want = want.min(scratch.len());
    let n = ready!(Pin::new(inner).poll_read(cx, &mut scratch[..want]))?;
    Poll::Ready(Ok(&scratch[..n]))
}

impl<T: AsyncRead + Unpin> tokio::io::AsyncRead for H2Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = ready!(read_through(
            &mut this.inner,
            &mut this.scratch,
            buf.remaining(),
            cx
        ))?;
        buf.put_slice(read);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> tokio::io::AsyncWrite for H2Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    /// Reported so that h2 copies only the first 256 bytes of a DATA
    /// payload next to its frame head (1 KiB without), and writes a frame
    /// as its head and its payload in one call instead of two.
    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
}

/// An HTTP/1.1 client connection's transport for hyper. Two copies that
/// [`HyperIo`] makes are avoided here:
/// - reads land in a buffer initialised once per connection (`HyperIo`
///   zeroes an 8 KiB stack buffer per read, pending ones included: hyper
///   polls an idle connection's read to notice a close);
/// - over plain TCP it reports vectored writes and sends them with one
///   `sendmsg`, so hyper queues a request's body behind its head instead of
///   copying the body into its write buffer (its strategy without vectored
///   I/O: one batch body, tens of KiB, copied per request).
#[derive(Debug)]
pub struct H1Io<T> {
    inner: T,
    scratch: Box<[u8]>,
}

impl<T> H1Io<T> {
    pub fn new(inner: T) -> Self {
        H1Io {
            inner,
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
        }
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for H1Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = ready!(read_through(
            &mut this.inner,
            &mut this.scratch,
            buf.remaining(),
            cx
        ))?;
        buf.put_slice(read);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + SendVectored + Unpin> hyper::rt::Write for H1Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.sends_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.inner.send_vectored_now(bufs) {
            Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Some(done) => return Poll::Ready(done),
            None => {}
        }
        // The socket is full (or cannot gather): the first piece through
        // the stream's own write, which waits for room.
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &**b);
        Pin::new(&mut this.inner).poll_write(cx, first)
    }
}

/// hyper's executor: background tasks run on the current shard.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        glommio::spawn_local(fut).detach();
    }
}

/// hyper's timer. hyper requires `Send + Sync` sleeps, which glommio's
/// `Rc`-based timers are not, so sleeps handed to hyper are served by one
/// process-wide timer thread. Only hyper's own timeouts (header reads on a
/// server, keep-alive) use it; the data plane's timers are glommio's.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlommioTimer;

impl hyper::rt::Timer for GlommioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ThreadSleep::new(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ThreadSleep::new(deadline))
    }
}

struct ThreadSleep {
    deadline: Instant,
}

impl ThreadSleep {
    fn new(deadline: Instant) -> Self {
        ThreadSleep { deadline }
    }
}

impl Future for ThreadSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        // Every pending poll registers its waker: a spurious wake costs one
        // heap entry, and the deadline check above makes extra wakes harmless.
        timer_thread().add(self.deadline, cx.waker().clone());
        Poll::Pending
    }
}

impl hyper::rt::Sleep for ThreadSleep {}

struct Wakeup {
    at: Instant,
    waker: Waker,
}

impl PartialEq for Wakeup {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Wakeup {}
impl PartialOrd for Wakeup {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Wakeup {
    // Reversed: the BinaryHeap pops the earliest deadline first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.at.cmp(&self.at)
    }
}

struct TimerThread {
    heap: Mutex<BinaryHeap<Wakeup>>,
    changed: Condvar,
}

impl TimerThread {
    fn add(&self, at: Instant, waker: Waker) {
        let mut heap = match self.heap.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        heap.push(Wakeup { at, waker });
        self.changed.notify_one();
    }

    fn run(&self) {
        let mut heap = match self.heap.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        loop {
            let now = Instant::now();
            while heap.peek().is_some_and(|w| w.at <= now) {
                if let Some(w) = heap.pop() {
                    w.waker.wake();
                }
            }
            let wait = heap
                .peek()
                .map(|w| w.at.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(3600));
            heap = match self.changed.wait_timeout(heap, wait) {
                Ok((h, _)) => h,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

fn timer_thread() -> &'static Arc<TimerThread> {
    static TIMER: OnceLock<Arc<TimerThread>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t = Arc::new(TimerThread {
            heap: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        });
        let runner = t.clone();
        // If the thread cannot start, sleeps still end on their next poll.
        let _ = std::thread::Builder::new()
            .name("sluice-hyper-timer".into())
            .spawn(move || runner.run());
        t
    })
}

/// Connects with a timeout and sets TCP_NODELAY (before any TLS handshake:
/// requests and acks are small and must not wait for Nagle).
///
/// The timeout is a glommio timer raced against a plain connect, not
/// glommio's `connect_timeout`: that one links an io_uring LINK_TIMEOUT to
/// the connect, and under a stream of refused connects the shard's reactor
/// stopped waking up (every timer late forever, `sluice run` deaf to
/// SIGTERM) — reproduced against a sink that stalled and then went away.
pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<glommio::net::TcpStream> {
    let timeout = timeout.max(Duration::from_millis(1));
    let connect = async {
        Some(
            glommio::net::TcpStream::connect(addr)
                .await
                .map_err(io::Error::from),
        )
    };
    let stream = futures_lite::future::or(connect, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await
    .unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {addr} timed out after {timeout:?}"),
        ))
    })?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
}

/// A glommio executor builder with a small io_memory (its registered buffers
/// serve only file I/O, and `ulimit -l` is often small), pinned to `cpu`
/// when given.
pub fn executor_builder(cpu: Option<usize>, name: &str) -> glommio::LocalExecutorBuilder {
    let placement = match cpu {
        Some(cpu) => glommio::Placement::Fixed(cpu),
        None => glommio::Placement::Unbound,
    };
    glommio::LocalExecutorBuilder::new(placement)
        .name(name)
        .io_memory(1 << 20)
}

/// Checks that io_uring can be used here, and says plainly what is missing
/// when it cannot (a container's seccomp profile, an old kernel, a sysctl).
pub fn probe_io_uring() -> Result<(), String> {
    use io_uring::opcode;
    let ring = io_uring::IoUring::new(8).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) => {
                "io_uring is blocked: a seccomp profile (Docker's default blocks io_uring_setup) \
                 or the sysctl kernel.io_uring_disabled forbids it; run with a seccomp profile \
                 that allows io_uring_setup, io_uring_enter and io_uring_register"
            }
            Some(libc::ENOSYS) => {
                "io_uring is not available: the kernel is older than 5.1 or was built without \
                 io_uring (sluice needs Linux 5.8 or later)"
            }
            Some(libc::ENOMEM) => {
                "io_uring could not lock memory: raise the memlock limit (ulimit -l)"
            }
            _ => "io_uring_setup failed",
        };
        format!("{hint} ({e})")
    })?;
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring probe failed: the kernel is too old for sluice ({e})"))?;
    let needed = [
        (opcode::Accept::CODE, "accept"),
        (opcode::Connect::CODE, "connect"),
        (opcode::Recv::CODE, "recv"),
        (opcode::Send::CODE, "send"),
        (opcode::Timeout::CODE, "timeout"),
        (opcode::LinkTimeout::CODE, "link-timeout"),
        (opcode::AsyncCancel::CODE, "async-cancel"),
    ];
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "io_uring lacks operations sluice needs: {} (Linux 5.8 or later is required)",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reports_ok_or_a_reason() {
        match probe_io_uring() {
            Ok(()) => {}
            Err(why) => assert!(why.contains("io_uring"), "{why}"),
        }
    }

    #[test]
    fn connect_and_hyper_io_roundtrip() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let ex = executor_builder(None, "rt-test").make().unwrap();
        let got = ex.run(async move {
            let stream = connect(addr, Duration::from_secs(2)).await.unwrap();
            let mut io = HyperIo(stream);
            std::future::poll_fn(|cx| {
                hyper::rt::Write::poll_write(Pin::new(&mut io), cx, b"hello")
            })
            .await
            .unwrap();
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
            let mut rb = hyper::rt::ReadBuf::uninit(&mut buf);
            let mut total = 0;
            while total < 5 {
                std::future::poll_fn(|cx| {
                    hyper::rt::Read::poll_read(Pin::new(&mut io), cx, rb.unfilled())
                })
                .await
                .unwrap();
                total = rb.filled().len();
            }
            rb.filled().to_vec()
        });
        server.join().unwrap();
        assert_eq!(got, b"hello");
    }

    /// h2's pattern: write a frame, flush, write the next, flush, then end
    /// the turn. Nothing leaves inside the turn; the turn's writer sends it
    /// all once the task yields, without polling the task again.
    #[test]
    fn turn_buffered_writes_a_turn_at_once() {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Read;
            let (mut s, _) = l.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got
        });
        let ex = executor_builder(None, "rt-turn").make().unwrap();
        let frames: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 100]).collect();
        let big = vec![7u8; 600];
        let expected: Vec<u8> = frames.iter().flatten().chain(&big).copied().collect();
        ex.run(async move {
            let stream = connect(addr, Duration::from_secs(2)).await.unwrap();
            let mut io = TurnBuffered::new(stream, 512);
            for f in &frames {
                io.write_all(f).await.unwrap();
                io.flush().await.unwrap();
            }
            assert_eq!(io.buffered(), 300, "flushes inside the turn wait");
            futures_lite::future::yield_now().await;
            assert_eq!(io.buffered(), 0, "the turn's writer wrote it all");
            // Larger than the buffer: straight through.
            io.write_all(&big).await.unwrap();
            assert_eq!(io.buffered(), 0);
            io.close().await.unwrap();
            let mut rest = Vec::new();
            let _ = io.read_to_end(&mut rest).await;
        });
        assert_eq!(server.join().unwrap(), expected);
    }

    /// Writes from a registered body are referenced, not copied, and leave
    /// with the copied ones in their order, whole even when the socket
    /// takes only part of a turn at a time.
    #[test]
    fn turn_buffered_references_registered_bodies() {
        use futures_lite::{AsyncReadExt, AsyncWriteExt};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Small buffers on both sides: the socket takes a turn in parts.
        socket2::SockRef::from(&l)
            .set_recv_buffer_size(4096)
            .unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::Read;
            let (s, _) = l.accept().unwrap();
            // Let the client fill the buffers first.
            std::thread::sleep(Duration::from_millis(200));
            // Bounded: a writer that repeats itself must fail the test, not
            // fill the memory.
            let mut got = Vec::new();
            s.take(1 << 20).read_to_end(&mut got).unwrap();
            got
        });
        let body = bytes::Bytes::from(
            (0..200_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
        );
        let other = bytes::Bytes::from(vec![9u8; 1000]);
        let mut expected = Vec::new();
        let ex = executor_builder(None, "rt-bodies").make().unwrap();
        let sent = ex.run({
            let body = body.clone();
            let expected = &mut expected;
            async move {
                let stream = connect(addr, Duration::from_secs(2)).await.unwrap();
                socket2::SockRef::from(&stream)
                    .set_send_buffer_size(4096)
                    .unwrap();
                let bodies = Bodies::default();
                bodies.add(&body);
                let mut io = TurnBuffered::new(stream, 64 * 1024).with_bodies(bodies.clone());
                // One turn: a head (copied), part of the body (referenced),
                // bytes of an unregistered buffer (copied), more body.
                io.write_all(b"head").await.unwrap();
                io.write_all(&body[..10_000]).await.unwrap();
                io.write_all(&other).await.unwrap();
                io.write_all(&body[10_000..30_000]).await.unwrap();
                // h2's vectored write of a DATA frame: its head (copied)
                // and its payload (referenced) in one call.
                let frame = [
                    std::io::IoSlice::new(b"vhead"),
                    std::io::IoSlice::new(&body[30_000..40_000]),
                ];
                assert_eq!(io.write_vectored(&frame).await.unwrap(), 5 + 10_000);
                io.flush().await.unwrap();
                assert_eq!(io.buffered(), 4 + 10_000 + 1000 + 20_000 + 5 + 10_000);
                assert_eq!(
                    io.io.borrow().buf.len(),
                    4 + 1000 + 5,
                    "only unregistered bytes copied"
                );
                expected.extend_from_slice(b"head");
                expected.extend_from_slice(&body[..10_000]);
                expected.extend_from_slice(&other);
                expected.extend_from_slice(&body[10_000..30_000]);
                expected.extend_from_slice(b"vhead");
                expected.extend_from_slice(&body[30_000..40_000]);
                // Then turns of frame-sized pieces, each behind a head, more
                // than the socket takes before the peer reads.
                for (i, piece) in body[40_000..].chunks(16_384).enumerate() {
                    io.write_all(&[i as u8; 9]).await.unwrap();
                    io.write_all(piece).await.unwrap();
                    io.flush().await.unwrap();
                    expected.extend_from_slice(&[i as u8; 9]);
                    expected.extend_from_slice(piece);
                    futures_lite::future::yield_now().await;
                }
                let until = Instant::now() + Duration::from_secs(10);
                while io.buffered() > 0 {
                    assert!(Instant::now() < until, "{} bytes never left", io.buffered());
                    io.flush().await.unwrap();
                    futures_lite::future::yield_now().await;
                }
                bodies.remove(&body);
                assert!(bodies.is_empty());
                io.close().await.unwrap();
                let mut rest = Vec::new();
                let _ = io.read_to_end(&mut rest).await;
                expected.len()
            }
        });
        let got = server.join().unwrap();
        assert_eq!(got.len(), sent);
        assert!(got == expected, "the bytes arrive whole and in order");
    }

    /// hyper's vectored writes over plain TCP leave whole and in order,
    /// also when the socket takes only part of them at a time; reads see
    /// what the peer sent.
    #[test]
    fn h1io_sends_vectored_writes_whole_and_in_order() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&l)
            .set_recv_buffer_size(4096)
            .unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let mut got = vec![0u8; 300_000 + 4];
            s.read_exact(&mut got).unwrap();
            s.write_all(b"done").unwrap();
            got
        });
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&body);
        let ex = executor_builder(None, "rt-h1io").make().unwrap();
        let answer = ex.run(async move {
            let stream = connect(addr, Duration::from_secs(2)).await.unwrap();
            socket2::SockRef::from(&stream)
                .set_send_buffer_size(4096)
                .unwrap();
            let mut io = H1Io::new(stream);
            assert!(hyper::rt::Write::is_write_vectored(&io));
            let mut pieces = [io::IoSlice::new(b"head"), io::IoSlice::new(&body)];
            let mut left: &mut [io::IoSlice<'_>] = &mut pieces;
            let mut writes = 0;
            while !left.is_empty() {
                let n = std::future::poll_fn(|cx| {
                    hyper::rt::Write::poll_write_vectored(Pin::new(&mut io), cx, left)
                })
                .await
                .unwrap();
                assert!(n > 0);
                io::IoSlice::advance_slices(&mut left, n);
                writes += 1;
            }
            assert!(writes > 1, "the socket took it in parts");
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
            let mut rb = hyper::rt::ReadBuf::uninit(&mut buf);
            while rb.filled().len() < 4 {
                std::future::poll_fn(|cx| {
                    hyper::rt::Read::poll_read(Pin::new(&mut io), cx, rb.unfilled())
                })
                .await
                .unwrap();
            }
            rb.filled().to_vec()
        });
        assert_eq!(answer, b"done");
        assert!(
            server.join().unwrap() == expected,
            "the bytes arrive whole and in order"
        );
    }

    /// Partial writes: what is left, and where the next write starts.
    #[test]
    fn gathered_pieces_advance_across_partial_writes() {
        let mut g = Gathered {
            inner: (),
            buf: Vec::new(),
            parts: Vec::new(),
            sent: 0,
            pending: 0,
            queued: false,
            behind: false,
        };
        let body = bytes::Bytes::from_static(b"0123456789");
        g.copy(b"abcde");
        g.copy(b"fghij");
        g.share(body.clone());
        g.copy(b"vwxyz");
        assert_eq!(g.parts.len(), 3, "adjacent copies are one piece");
        let rest = |g: &Gathered<()>| {
            let mut v = Vec::new();
            for (i, p) in g.parts.iter().enumerate() {
                let s = g.piece(p);
                v.extend_from_slice(if i == 0 { &s[g.sent..] } else { s });
            }
            v
        };
        g.advance(3);
        assert_eq!((g.pending, g.sent), (22, 3));
        assert_eq!(rest(&g), b"defghij0123456789vwxyz");
        g.advance(12);
        assert_eq!((g.pending, g.sent, g.parts.len()), (10, 5, 2));
        assert_eq!(rest(&g), b"56789vwxyz");
        g.advance(5);
        assert_eq!((g.pending, g.sent, g.parts.len()), (5, 0, 1));
        g.advance(5);
        assert_eq!((g.pending, g.sent), (0, 0));
        assert!(g.parts.is_empty() && g.buf.is_empty());
    }

    #[test]
    fn bodies_find_only_bytes_inside_a_registered_body() {
        let bodies = Bodies::default();
        let a = bytes::Bytes::from(vec![1u8; CHAINED_BODY]);
        let b = bytes::Bytes::from(vec![2u8; CHAINED_BODY + 100]);
        // A body h2 copies whole is not registered.
        let short = bytes::Bytes::from(vec![3u8; CHAINED_BODY - 1]);
        bodies.add(&short);
        assert!(bodies.is_empty());
        assert!(bodies.find(&short[..10]).is_none());
        bodies.remove(&short);
        bodies.add(&a);
        let inside = bodies.find(&a[10..20]).unwrap();
        assert_eq!(inside.as_ptr(), a[10..].as_ptr());
        assert_eq!(inside.len(), 10);
        assert!(bodies.find(&a[..]).is_some());
        assert!(bodies.find(&b[10..20]).is_none(), "not registered");
        bodies.add(&b);
        assert_eq!(bodies.len(), 2);
        bodies.remove(&a);
        assert!(bodies.find(&a[10..20]).is_none());
        assert!(bodies.find(&b[..1]).is_some());
    }

    #[test]
    fn timer_sleep_ends_after_deadline() {
        use hyper::rt::Timer;
        let ex = executor_builder(None, "rt-timer").make().unwrap();
        let start = Instant::now();
        ex.run(async { GlommioTimer.sleep(Duration::from_millis(20)).await });
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
