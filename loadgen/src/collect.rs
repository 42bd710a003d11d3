//! Matching decisions back to the intents they decide, and timing them.
//!
//! One slot per intent of the run, written by the publisher (kind,
//! scheduled time) and by whatever reads decisions (verdict), with atomics
//! only: the receiving side never waits for the sending side. Latency is
//! measured from the intent's *scheduled* send time, so a publisher held
//! up by a stalled engine still charges the stall to every intent due
//! during it (no coordinated omission).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use warrant_engine::workload::{Kind, index_of};
use warrant_schemas::wire::Reason;
use warrant_schemas::{Limits, open_decision};

const NONE16: u16 = u16::MAX;
const NONE64: u64 = u64::MAX;
const NO_KIND: u8 = u8::MAX;

/// A new latency histogram: µs, 1 µs to 1 hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    warrant_engine::pipeline::new_histogram()
}

struct Slot {
    /// ns after the run's start the intent was due; `NONE64` until sent.
    scheduled_ns: AtomicU64,
    kind: AtomicU8,
    /// For a replay: the intent whose nonce it reused.
    original: AtomicU64,
    /// The verdict's `Reason`; `NONE16` until decided.
    reason: AtomicU16,
}

/// Latency histograms: the whole run and the current interval.
struct Latency {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

/// Everything known about one run's intents and decisions.
pub struct Collector {
    start: Instant,
    tag: [u8; 8],
    slots: Vec<Slot>,
    /// Decision ids of unreadable (malformed) intents → index.
    unreadable: Mutex<HashMap<[u8; 16], u64>>,
    latency: Mutex<Latency>,
    sent: AtomicU64,
    decided: AtomicU64,
    /// When the latest first decision came, ns after `start` (0: none yet).
    last_decided_ns: AtomicU64,
    duplicates: AtomicU64,
    conflicting: AtomicU64,
    strays: AtomicU64,
    unreadable_decisions: AtomicU64,
    errors: AtomicU64,
    undelivered: Mutex<std::collections::HashSet<u64>>,
    /// Set when the drain ends: decisions after it are not this run's
    /// (an intent still undecided then is missing), only counted.
    closed: std::sync::atomic::AtomicBool,
    after_close: AtomicU64,
}

/// Counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// Intents published.
    pub sent: u64,
    /// Intents with a decision.
    pub decided: u64,
    /// Decisions for an intent already decided.
    pub duplicates: u64,
    /// Of those, with a verdict that does not agree with the first
    /// (`warrant_engine::audit::consistent`).
    pub conflicting: u64,
    /// Decisions for no intent of this run.
    pub strays: u64,
    /// Decisions that would not parse.
    pub unreadable_decisions: u64,
    /// Transport errors (failed deliveries, consumer errors).
    pub errors: u64,
    /// Intents the target never accepted.
    pub undelivered: u64,
}

/// What one intent was and what it got.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// Its kind.
    pub kind: Kind,
    /// For a replay: the intent whose nonce it reused.
    pub original: Option<u64>,
    /// Its decision's reason, if one came.
    pub reason: Option<Reason>,
    /// Whether the target accepted it (false: undelivered after every
    /// retry; no decision can come).
    pub delivered: bool,
}

fn kind_code(k: Kind) -> u8 {
    Kind::ALL
        .iter()
        .position(|&x| x == k)
        .and_then(|p| u8::try_from(p).ok())
        .unwrap_or(NO_KIND)
}

impl Collector {
    /// A collector for `total` intents of the run tagged `tag`, timed from
    /// `start`.
    pub fn new(total: usize, tag: [u8; 8], start: Instant) -> Collector {
        Collector {
            start,
            tag,
            slots: (0..total)
                .map(|_| Slot {
                    scheduled_ns: AtomicU64::new(NONE64),
                    kind: AtomicU8::new(NO_KIND),
                    original: AtomicU64::new(NONE64),
                    reason: AtomicU16::new(NONE16),
                })
                .collect(),
            unreadable: Mutex::new(HashMap::new()),
            latency: Mutex::new(Latency {
                total: histogram(),
                interval: histogram(),
            }),
            sent: AtomicU64::new(0),
            decided: AtomicU64::new(0),
            last_decided_ns: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            conflicting: AtomicU64::new(0),
            strays: AtomicU64::new(0),
            unreadable_decisions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            undelivered: Mutex::new(std::collections::HashSet::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            after_close: AtomicU64::new(0),
        }
    }

    /// Ends the run's collection (the drain is over): later decisions are
    /// counted ([`Self::after_close`]) and otherwise ignored, so an intent
    /// the target decides only while shutting down stays missing and no
    /// number counts it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Decisions that came after [`Self::close`].
    pub fn after_close(&self) -> u64 {
        self.after_close.load(Ordering::Relaxed)
    }

    /// The instant latencies count from.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The run's tag.
    pub fn tag(&self) -> [u8; 8] {
        self.tag
    }

    /// Intents the run holds slots for.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Records intent `index` as about to be published: its kind, the
    /// time it was due, and for a malformed intent the id its decision
    /// will carry. Call before publishing it.
    pub fn sending(
        &self,
        index: u64,
        kind: Kind,
        due: Duration,
        original: Option<u64>,
        decision_id: Option<[u8; 16]>,
    ) {
        let Some(slot) = usize::try_from(index).ok().and_then(|i| self.slots.get(i)) else {
            return;
        };
        if let Some(id) = decision_id
            && let Ok(mut u) = self.unreadable.lock()
        {
            u.insert(id, index);
        }
        slot.kind.store(kind_code(kind), Ordering::Relaxed);
        slot.original
            .store(original.unwrap_or(NONE64), Ordering::Relaxed);
        let ns = u64::try_from(due.as_nanos()).unwrap_or(NONE64 - 1);
        slot.scheduled_ns.store(ns, Ordering::Release);
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a transport error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Intent `index` could not be delivered, after every retry.
    pub fn undelivered(&self, index: u64) {
        if let Ok(mut u) = self.undelivered.lock() {
            u.insert(index);
        }
    }

    /// Takes a decision, as read from the engine at `at`.
    pub fn decision(&self, bytes: &[u8], at: Instant) {
        if self.closed.load(Ordering::Acquire) {
            self.after_close.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(d) = open_decision(bytes, &Limits::default()) else {
            self.unreadable_decisions.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let id = d.intent_id().0;
        let index = index_of(&id, &self.tag).or_else(|| {
            self.unreadable
                .lock()
                .ok()
                .and_then(|u| u.get(&id).copied())
        });
        let Some(slot) = index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.slots.get(i))
        else {
            self.strays.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let reason = d.reason().0;
        if let Err(earlier) =
            slot.reason
                .compare_exchange(NONE16, reason, Ordering::AcqRel, Ordering::Acquire)
        {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            if !warrant_engine::audit::consistent(Reason(earlier), Reason(reason)) {
                self.conflicting.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.decided.fetch_add(1, Ordering::Relaxed);
        let scheduled = slot.scheduled_ns.load(Ordering::Acquire);
        if scheduled == NONE64 {
            // Decided before it was marked sent: impossible for a real
            // decision of this run; count it, do not time it.
            self.strays.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now =
            u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(NONE64);
        self.last_decided_ns.fetch_max(now, Ordering::Relaxed);
        let us = (now.saturating_sub(scheduled) / 1_000).max(1);
        if let Ok(mut l) = self.latency.lock() {
            l.total.saturating_record(us);
            l.interval.saturating_record(us);
        }
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            decided: self.decided.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            conflicting: self.conflicting.load(Ordering::Relaxed),
            strays: self.strays.load(Ordering::Relaxed),
            unreadable_decisions: self.unreadable_decisions.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            undelivered: self.undelivered.lock().map_or(0, |u| u.len() as u64),
        }
    }

    /// When the latest intent got its first decision, after `start`.
    pub fn last_decision_at(&self) -> Option<Duration> {
        match self.last_decided_ns.load(Ordering::Relaxed) {
            0 | NONE64 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// The latency histogram of the interval since the last call, which
    /// starts a new one.
    pub fn take_interval(&self) -> Histogram<u64> {
        match self.latency.lock() {
            Ok(mut l) => std::mem::replace(&mut l.interval, histogram()),
            Err(_) => histogram(),
        }
    }

    /// The latency histogram of the whole run so far.
    pub fn total(&self) -> Histogram<u64> {
        self.latency
            .lock()
            .map(|l| l.total.clone())
            .unwrap_or_else(|_| histogram())
    }

    /// Every intent sent, by index, with its verdict (if one came).
    pub fn verdicts(&self) -> Vec<Verdict> {
        let undelivered = self
            .undelivered
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default();
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let kind = *Kind::ALL.get(usize::from(s.kind.load(Ordering::Relaxed)))?;
                let original = s.original.load(Ordering::Relaxed);
                let reason = s.reason.load(Ordering::Acquire);
                Some(Verdict {
                    kind,
                    original: (original != NONE64).then_some(original),
                    reason: (reason != NONE16).then_some(Reason(reason)),
                    delivered: !undelivered.contains(&(i as u64)),
                })
            })
            .collect()
    }
}
