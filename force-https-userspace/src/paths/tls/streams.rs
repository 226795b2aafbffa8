//! What the TLS path adds to hyper's HTTP/2 streams: a response body handed over a TLS
//! record at a time, and a stream stalled by its client's flow control reset.
//!
//! **A record at a time.** h2 writes each DATA frame with its 9-byte header in one write,
//! which rustls seals into records of at most 2^14 bytes of plaintext: a full 16,384-byte
//! frame took a full record and a 9-byte one (two seals here, two opens at the client, and a
//! short TCP segment). [`Watched`] hands data to hyper in pieces of [`DATA_PER_RECORD`]
//! bytes, so that a frame and its header fill one record.
//!
//! **Stalled streams** (RFC 9113 §5.2): a response that waits `[limits] idle_timeout_ms`
//! for room in its stream's (or the connection's) window is reset with `RST_STREAM`
//! `CANCEL`, which drops its backend connection; the connection and its other streams go on.
//! nginx bounds the same wait with `send_timeout`.
//!
//! hyper's server has no such timeout: while a stream waits for window, hyper does not poll
//! its response body, so neither the body nor anything it awaits can notice. What does run is
//! the stream's task, which hyper hands to its executor. So:
//! - [`Watched`] wraps each response body and, whenever hyper polls it, notes on the polling
//!   thread whether it has just handed over data with more to come (hyper's next step is to
//!   wait for window) or is waiting for its backend (not the client's doing);
//! - [`GuardedStreams`], the connection's executor, spawns each stream's future inside a
//!   [`StallGuard`], which reads that note after each poll of the stream. While the body waits
//!   for window, it keeps one timer, armed for `idle` after the wait began, and ends the
//!   stream's future when the wait reaches it: h2 then resets the stream.
//!
//! A body that makes progress restarts the wait (the timer is moved lazily, when it fires),
//! so a slow but steady client is never cut, nor a slow backend. The note costs a
//! thread-local write per body poll and a read per stream poll; a timer exists only for
//! streams whose body had to wait for window.

use std::{
    cell::Cell,
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use hyper::{
    Response,
    body::{Body as HttpBody, Frame, SizeHint},
};
use tokio::time::{Instant, Sleep};

use crate::{
    metrics::Metrics,
    proxy::{Body, BoxError},
};

/// What the response body last did in the current poll of a stream (`Note`), read by the
/// stream's [`StallGuard`] after the poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Note {
    /// The body was not polled.
    None,
    /// Polled: it produced nothing yet, or ended, or produced its last frame.
    Polled,
    /// It handed over data and more is to come: hyper waits for window before polling it
    /// again.
    Handed,
}

thread_local! {
    static NOTE: Cell<Note> = const { Cell::new(Note::None) };
}

/// The most response data handed to hyper at a time, bytes: a TLS record's plaintext
/// (2^14, RFC 8446 §5.1) less an HTTP/2 frame header (9 bytes, RFC 9113 §4.1). h2 writes
/// each DATA frame with its header in one write, which rustls seals into records of at most
/// 2^14 bytes: a full 16,384-byte frame took a full record and a 9-byte one. A frame of this
/// size fits one record: half the records (and their seals, and the client's opens) of a
/// large response.
pub const DATA_PER_RECORD: usize = (1 << 14) - 9;

/// A response body that notes each poll for its stream's [`StallGuard`] (see the module
/// docs), and, with `pieces`, hands its data over in pieces of at most [`DATA_PER_RECORD`]
/// bytes (no copy: they share the frame's buffer). Polled elsewhere (HTTP/1.1 through hyper),
/// the note is never read.
pub struct Watched {
    body: Body,
    /// What is left of a data frame larger than [`DATA_PER_RECORD`].
    rest: Bytes,
    /// Whether to hand data over a record at a time: on connections that may be HTTP/2.
    /// HTTP/1.1 through hyper gets the frames whole (a piece would be a chunk of its own in
    /// a chunked body).
    pieces: bool,
}

impl Watched {
    /// Wraps `body`; `pieces`: see the field.
    pub fn new(body: Body, pieces: bool) -> Watched {
        Watched {
            body,
            rest: Bytes::new(),
            pieces,
        }
    }

    /// The next piece of `data` (all of it when small enough, or without `pieces`); the rest
    /// is kept.
    fn piece(&mut self, mut data: Bytes) -> Bytes {
        if self.pieces && data.len() > DATA_PER_RECORD {
            self.rest = data.split_off(DATA_PER_RECORD);
        }
        data
    }
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = if this.rest.is_empty() {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(Frame::data(this.piece(data))))),
                    Err(frame) => Poll::Ready(Some(Ok(frame))),
                },
                other => other,
            }
        } else {
            let rest = std::mem::take(&mut this.rest);
            Poll::Ready(Some(Ok(Frame::data(this.piece(rest)))))
        };
        let handed =
            matches!(&polled, Poll::Ready(Some(Ok(f))) if f.is_data()) && !this.is_end_stream();
        NOTE.set(if handed { Note::Handed } else { Note::Polled });
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.body.size_hint();
        let rest = self.rest.len() as u64;
        if rest == 0 {
            return hint;
        }
        // Upper after lower: each setter checks `lower <= upper`.
        let mut with_rest = SizeHint::new();
        with_rest.set_lower(hint.lower().saturating_add(rest));
        if let Some(upper) = hint.upper() {
            with_rest.set_upper(upper.saturating_add(rest));
        }
        with_rest
    }
}

pin_project_lite::pin_project! {
    /// The proxy service's response future with its body wrapped in [`Watched`].
    pub struct WatchResponse<F> {
        #[pin]
        inner: F,
        pieces: bool,
    }
}

impl<F> WatchResponse<F> {
    /// Wraps `inner`; `pieces`: [`Watched::new`]'s.
    pub fn new(inner: F, pieces: bool) -> WatchResponse<F> {
        WatchResponse { inner, pieces }
    }
}

impl<F> Future for WatchResponse<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Watched>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let r = ready!(this.inner.poll(cx));
        let pieces = *this.pieces;
        Poll::Ready(r.map(|resp| resp.map(|body| Watched::new(body, pieces))))
    }
}

/// hyper's executor for the HTTP/2 streams of a connection: tokio spawns each stream's future
/// inside a [`StallGuard`]. The proxy's request future (several KB: about 7 KB when first
/// measured, 4.2 KB since) reaches it already boxed (`paths/tls/mod.rs`), so what is moved
/// here is a few hundred bytes; spawned unboxed, it was copied seven times on its way into
/// tokio's task cell (callgrind, `BENCHMARKS.md` runs N and Y). HTTP/1.1 connections spawn
/// nothing per request.
#[derive(Clone)]
pub struct GuardedStreams {
    /// How long a response may wait for window (`[limits] idle_timeout_ms`).
    pub idle: Duration,
    /// Where `h2_stalled_streams` is counted.
    pub metrics: Arc<Metrics>,
}

impl<F> hyper::rt::Executor<F> for GuardedStreams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(StallGuard {
            stream: fut,
            idle: self.idle,
            metrics: self.metrics.clone(),
            waiting_since: None,
            timer: None,
        });
    }
}

pin_project_lite::pin_project! {
    /// A stream's future, ended when its response has waited `idle` for window (module docs).
    pub struct StallGuard<F> {
        #[pin]
        stream: F,
        idle: Duration,
        metrics: Arc<Metrics>,
        // When the body last handed over data with more to come, if it has not been polled
        // since.
        waiting_since: Option<Instant>,
        // Armed at the first wait; moved forward, when it fires, to the current wait's end.
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future<Output = ()>> Future for StallGuard<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        NOTE.set(Note::None);
        let polled = this.stream.poll(cx);
        let note = NOTE.replace(Note::None);
        if polled.is_ready() {
            return Poll::Ready(());
        }
        match note {
            Note::None => {}
            Note::Polled => *this.waiting_since = None,
            Note::Handed => *this.waiting_since = Some(Instant::now()),
        }
        let Some(since) = *this.waiting_since else {
            // Waiting for the backend (or for hyper): a timer armed earlier may still wake
            // the task once; it then finds no wait and is left alone.
            return Poll::Pending;
        };
        let deadline = since + *this.idle;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                // Dropping the stream's future resets the stream (`CANCEL`) and drops its
                // body, and with it the backend connection.
                Metrics::inc(&this.metrics.h2_stalled_streams);
                tracing::debug!(idle = ?this.idle, "HTTP/2 stream reset: its client kept its window closed");
                return Poll::Ready(());
            }
            timer.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::{
        sync::{
            Mutex,
            atomic::{AtomicBool, Ordering::Relaxed},
        },
        task::Waker,
    };

    /// A body of the given data frames: the first `ready` are ready at once, the rest never.
    struct Frames {
        frames: std::collections::VecDeque<Bytes>,
        ready: usize,
    }

    impl Frames {
        /// `n` frames of 4 bytes, `ready` of them ready.
        fn small(n: usize, ready: usize) -> Frames {
            let frames = (0..n).map(|_| Bytes::from_static(b"data")).collect();
            Frames { frames, ready }
        }

        /// `frames`, all ready.
        fn of(frames: Vec<Bytes>) -> Frames {
            let ready = frames.len();
            Frames {
                frames: frames.into(),
                ready,
            }
        }
    }

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            if self.frames.is_empty() {
                return Poll::Ready(None);
            }
            if self.ready == 0 {
                return Poll::Pending;
            }
            self.ready -= 1;
            Poll::Ready(self.frames.pop_front().map(|d| Ok(Frame::data(d))))
        }
        fn is_end_stream(&self) -> bool {
            self.frames.is_empty()
        }
    }

    /// A stream's flow-control window, in frames, and the task waiting for it.
    struct Window {
        room: usize,
        waker: Option<Waker>,
    }

    /// What hyper's HTTP/2 stream does with a body: polls it while the window has room, else
    /// waits for a window update.
    struct Stream {
        body: Watched,
        window: Arc<Mutex<Window>>,
        ended: Arc<AtomicBool>,
    }

    impl Future for Stream {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            loop {
                {
                    let mut w = self.window.lock().expect("lock");
                    if w.room == 0 {
                        w.waker = Some(cx.waker().clone());
                        return Poll::Pending;
                    }
                    w.room -= 1;
                }
                if ready!(Pin::new(&mut self.body).poll_frame(cx)).is_none() {
                    self.ended.store(true, Relaxed);
                    return Poll::Ready(());
                }
            }
        }
    }

    struct Rig {
        window: Arc<Mutex<Window>>,
        ended: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
        guard: tokio::task::JoinHandle<()>,
    }

    impl Rig {
        /// A window update of one frame.
        fn open(&self) {
            let mut w = self.window.lock().expect("lock");
            w.room += 1;
            if let Some(waker) = w.waker.take() {
                waker.wake();
            }
        }

        fn stalled(&self) -> u64 {
            self.metrics.h2_stalled_streams.load(Relaxed)
        }
    }

    const IDLE: Duration = Duration::from_secs(10);

    /// A guarded stream of a 10-frame body, `allowed` frames ready at once, with a window
    /// of `room` frames.
    fn rig(allowed: usize, room: usize) -> Rig {
        let window = Arc::new(Mutex::new(Window { room, waker: None }));
        let ended = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::default());
        let body: Body = Frames::small(10, allowed).boxed_unsync();
        let stream = Stream {
            body: Watched::new(body, true),
            window: window.clone(),
            ended: ended.clone(),
        };
        let guard = tokio::spawn(StallGuard {
            stream,
            idle: IDLE,
            metrics: metrics.clone(),
            waiting_since: None,
            timer: None,
        });
        Rig {
            window,
            ended,
            metrics,
            guard,
        }
    }

    use crate::net::paused_runtime as rt;

    /// Lets `d` pass on the paused clock, every task running as its timers fire.
    async fn pass(d: Duration) {
        tokio::time::sleep(d).await;
        tokio::task::yield_now().await;
    }

    #[test]
    fn a_response_kept_waiting_for_window_is_ended_after_idle() {
        rt().block_on(async {
            let r = rig(10, 3);
            pass(IDLE - Duration::from_millis(1)).await;
            assert!(!r.guard.is_finished(), "ended before idle");
            pass(Duration::from_millis(2)).await;
            assert!(r.guard.is_finished(), "still waiting after idle");
            assert!(!r.ended.load(Relaxed));
            assert_eq!(r.stalled(), 1);
        });
    }

    #[test]
    fn a_slow_but_steady_client_is_not_cut() {
        rt().block_on(async {
            let r = rig(10, 1);
            // One frame's room every 0.9 idle, 9 idle periods in all: the timer armed at
            // the first wait fires in the middle of a later one and is moved forward.
            for _ in 0..10 {
                pass(IDLE * 9 / 10).await;
                r.open();
                tokio::task::yield_now().await;
            }
            assert!(r.ended.load(Relaxed), "the body did not end");
            assert!(r.guard.is_finished());
            assert_eq!(r.stalled(), 0);
        });
    }

    #[test]
    fn a_wait_that_follows_progress_is_timed_from_its_own_start() {
        rt().block_on(async {
            let r = rig(10, 1);
            pass(IDLE / 2).await;
            r.open();
            tokio::task::yield_now().await;
            // The first timer fires at 1.0 idle, inside the second wait (from 0.5 idle):
            // the stream must last until 1.5 idle.
            pass(IDLE * 9 / 10).await;
            assert!(!r.guard.is_finished(), "ended before its wait reached idle");
            pass(IDLE / 5).await;
            assert!(r.guard.is_finished());
            assert_eq!(r.stalled(), 1);
        });
    }

    #[test]
    fn data_is_handed_over_a_record_at_a_time() {
        rt().block_on(async {
            let big = Bytes::from(vec![7u8; 3 * DATA_PER_RECORD + 5]);
            let small = Bytes::from_static(b"tail");
            let total = (big.len() + small.len()) as u64;
            let body: Body = Frames::of(vec![big.clone(), small.clone()]).boxed_unsync();
            let mut w = Watched::new(body, true);
            let mut sizes = Vec::new();
            let mut got = Vec::new();
            while let Some(f) = w.frame().await {
                let d = f.expect("frame").into_data().expect("data");
                sizes.push(d.len());
                got.extend_from_slice(&d);
            }
            assert_eq!(
                sizes,
                [DATA_PER_RECORD, DATA_PER_RECORD, DATA_PER_RECORD, 5, 4]
            );
            assert_eq!(got.len() as u64, total);
            assert_eq!(&got[..big.len()], &big[..]);
            assert_eq!(&got[big.len()..], &small[..]);
            assert!(w.is_end_stream());
        });
    }

    #[test]
    fn without_pieces_frames_are_handed_over_whole() {
        rt().block_on(async {
            let big = Bytes::from(vec![7u8; 3 * DATA_PER_RECORD + 5]);
            let body: Body = Frames::of(vec![big.clone()]).boxed_unsync();
            let mut w = Watched::new(body, false);
            let d = w.frame().await.expect("a frame").expect("data");
            assert_eq!(d.into_data().expect("data"), big);
            assert!(w.frame().await.is_none());
        });
    }

    #[test]
    fn the_rest_of_a_frame_counts_in_the_size_hint() {
        let body: Body = http_body_util::Full::new(Bytes::from(vec![0u8; 2 * DATA_PER_RECORD]))
            .map_err(|e| match e {})
            .boxed_unsync();
        let mut w = Watched::new(body, true);
        assert_eq!(w.size_hint().exact(), Some(2 * DATA_PER_RECORD as u64));
        let mut cx = Context::from_waker(Waker::noop());
        let first = Pin::new(&mut w).poll_frame(&mut cx);
        assert!(matches!(first, Poll::Ready(Some(Ok(_)))));
        assert_eq!(w.size_hint().exact(), Some(DATA_PER_RECORD as u64));
        assert!(!w.is_end_stream());
    }

    #[test]
    fn a_slow_backend_is_not_the_clients_doing() {
        rt().block_on(async {
            // Room to spare; the backend has nothing for 5 idle periods.
            let r = rig(0, 100);
            pass(IDLE * 5).await;
            assert!(!r.guard.is_finished());
            assert_eq!(r.stalled(), 0);
            // Data sent before the backend went quiet: the wait is the backend's too.
            let r = rig(2, 100);
            pass(IDLE * 5).await;
            assert!(!r.guard.is_finished());
            assert_eq!(r.stalled(), 0);
        });
    }
}
