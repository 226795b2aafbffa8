//! The memory budget of Automatic HTTPS Rewrites' codecs (`[proxy]
//! https_rewrites_codec_memory_bytes`): every compressed response being rewritten holds a
//! decoder (a br decoder holds the stream's whole window, up to 16 MiB) and an encoder for as
//! long as its client takes to download it. Each reserves an upper bound of what they hold
//! ([`Coding::decoder_memory`](force_https_proto::rewrite::coding::Coding::decoder_memory))
//! before it starts; one that does not fit passes through unmodified instead, so that the sum
//! over all concurrent responses stays within the budget however many there are.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use crate::metrics::Metrics;

/// The budget shared by every response of a proxy.
pub struct CodecBudget {
    limit: usize,
    used: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// Bytes of a [`CodecBudget`] held by one response; given back when dropped.
pub struct Reservation {
    budget: Arc<CodecBudget>,
    bytes: AtomicUsize,
}

impl CodecBudget {
    /// A budget of `limit` bytes, whose use shows in the `https_rewrites_codec_memory_bytes`
    /// gauge of `metrics`.
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> Arc<CodecBudget> {
        Arc::new(CodecBudget {
            limit,
            used: AtomicUsize::new(0),
            metrics,
        })
    }

    /// Reserves `bytes`, or `None` when they do not fit in what is left.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.take(bytes).then(|| Reservation {
            budget: self.clone(),
            bytes: AtomicUsize::new(bytes),
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` when they fit.
    fn take(&self, bytes: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok();
        if taken {
            self.show();
        }
        taken
    }

    /// Takes `bytes` whether they fit or not (a response that must decode anyway).
    fn force(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        self.show();
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.show();
    }

    fn show(&self) {
        set(&self.metrics.https_rewrites_codec_memory_bytes, self.used());
    }
}

fn set(gauge: &AtomicU64, value: usize) {
    gauge.store(value as u64, Ordering::Relaxed);
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Holds `bytes` from now on: less always succeeds; more fails, changing nothing, when
    /// the difference does not fit in what is left of the budget.
    pub fn resize(&self, bytes: usize) -> bool {
        let held = self.bytes();
        if bytes > held && !self.budget.take(bytes - held) {
            return false;
        }
        if bytes < held {
            self.budget.give_back(held - bytes);
        }
        self.bytes.store(bytes, Ordering::Relaxed);
        true
    }

    /// Holds `bytes` from now on, over the budget if need be.
    pub fn force(&self, bytes: usize) {
        if !self.resize(bytes) {
            self.budget.force(bytes - self.bytes());
            self.bytes.store(bytes, Ordering::Relaxed);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_the_budget_and_come_back() {
        let m = Arc::new(Metrics::default());
        let b = CodecBudget::new(1000, m.clone());
        let r1 = b.reserve(600).expect("fits");
        assert!(b.reserve(500).is_none(), "over the budget");
        let r2 = b.reserve(400).expect("fits exactly");
        assert_eq!(b.used(), 1000);
        assert_eq!(
            m.https_rewrites_codec_memory_bytes.load(Ordering::Relaxed),
            1000
        );
        assert!(!r2.resize(401), "growing past the budget fails");
        assert_eq!(r2.bytes(), 400, "and changes nothing");
        assert!(r1.resize(100));
        assert!(r2.resize(900), "what r1 gave back");
        r2.force(1200);
        assert_eq!(b.used(), 1300, "forced past the budget");
        drop(r2);
        drop(r1);
        assert_eq!(b.used(), 0);
        assert_eq!(
            m.https_rewrites_codec_memory_bytes.load(Ordering::Relaxed),
            0
        );
        assert!(CodecBudget::new(0, m).reserve(1).is_none());
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_budget() {
        let b = CodecBudget::new(10_000, Arc::new(Metrics::default()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        if let Some(r) = b.reserve(1 + i % 3_000) {
                            assert!(b.used() <= 10_000);
                            let _ = r.resize(i % 5_000);
                            assert!(b.used() <= 10_000);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(b.used(), 0);
    }
}
