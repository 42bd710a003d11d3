//! Overload: offered load far above what the engine can verify keeps the
//! engine's memory bounded, and every intent still gets exactly one
//! decision (authorized, or denied "overloaded" / "deadline exceeded";
//! never silence).
//!
//! In its own test binary so that the resident-set measurement sees this
//! test alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use warrant_engine::pipeline::{Config, Engine, Layout, now_us};
use warrant_engine::seal::EngineKey;
use warrant_engine::transport::embedded::Topic;
use warrant_engine::transport::{OutBatch, Sink, TransportError};
use warrant_engine::trust::{KeyState, TrustStore};
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::wire::Reason;
use warrant_schemas::{IntentFields, IntentSigner, open_decision};

/// Most intents each producer publishes: the sink's bookkeeping is sized
/// for them up front, so that it does not grow inside the measured
/// process.
const PER_PRODUCER: usize = 1 << 20;

/// Counts decisions per intent (by producer and index, in arrays allocated
/// before the measurement) and per reason; keeps no decision bytes.
#[derive(Clone)]
struct Counting {
    per_intent: Arc<Mutex<[Vec<u8>; 2]>>,
    reasons: Arc<Mutex<HashMap<u16, u64>>>,
}

impl Counting {
    fn new() -> Self {
        Counting {
            per_intent: Arc::new(Mutex::new([vec![0; PER_PRODUCER], vec![0; PER_PRODUCER]])),
            reasons: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl Sink for Counting {
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
        let mut per = self.per_intent.lock().unwrap();
        let mut reasons = self.reasons.lock().unwrap();
        for (id, d) in &batch.decisions {
            let n = u128::from_le_bytes(*id) as u64;
            let (t, i) = ((n >> 40) as usize, (n & ((1 << 40) - 1)) as usize);
            per[t][i] = per[t][i].saturating_add(1);
            let r = open_decision(d, &Default::default()).unwrap().reason();
            *reasons.entry(r.0).or_default() += 1;
        }
        Ok(())
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resident bytes allowed per intent the engine may hold (its payload,
/// decision and lineage record, with their state, are well under this),
/// and a fixed allowance for allocator caches and thread stacks.
const BYTES_PER_INTENT: u64 = 2 << 10;
const SLACK: u64 = 16 << 20;

/// Most the resident set may grow over the second half of the load, when
/// the engine's queues and caches are long warm: tens of thousands more
/// intents pass, so memory that grew with them (a leak of a few hundred
/// bytes an intent) would pass this.
const LATE_GROWTH: u64 = 8 << 20;

/// What one unread record costs the topic beyond its payload: its key and
/// the record's own struct, with allocator rounding. Unread records are
/// the topic's memory (a broker's), not the engine's: an engine starved
/// of CPU by other work on the machine reads late, and they pile up in
/// the topic while it is measured. Counted low, so that less is taken off.
const TOPIC_RECORD_OVERHEAD: u64 = 64;

/// Offered load many times what the engine may hold, on a topic that would
/// take all of it (so the topic's bound is not what holds the engine
/// back): the engine's intents in flight (read and not yet acknowledged)
/// stay within `Config::max_in_flight`, its resident set within that many
/// intents' worth, and every intent gets exactly one decision.
#[test]
fn far_above_capacity_sheds_with_denies_and_memory_stays_bounded() {
    let signer = IntentSigner::from_seed([1; 32]);
    let mut trust = TrustStore::new();
    trust
        .add("svc-1", signer.public_key(), KeyState::Active)
        .unwrap();
    let store = Arc::new(PolicyStore::new());
    store.install(
        Policy::from_sources(&[(
            "p.toml",
            "[policy]\nversion = 1\n[[rule]]\nid = \"allow\"\neffect = \"allow\"\n",
        )])
        .unwrap(),
    );
    // A broker-like topic that holds up to a million unread records per
    // partition: far more than the engine may hold.
    let topic = Topic::new(4, 1 << 20);
    let sink = Counting::new();
    // An engine slowed to at most 64 intents per 50 ms per lane: the verify
    // stage stalls on every batch. A full batch waits 1 ms for room before
    // it is shed (so shedding keeps up with the producers and the topic's
    // backlog stays small).
    let config = Config {
        max_batch: 64,
        queue_batches: 2,
        partitions: 4,
        // Two verify lanes: batches waiting in policy for an earlier one
        // count against the bound too.
        layout: Layout::unpinned(2),
        verify_stall: Duration::from_millis(50),
        shed_after: Duration::from_millis(1),
        ..Config::default()
    };
    let bound = config.max_in_flight() as u64;
    let engine = Engine::start(
        config,
        topic.consumer(),
        sink.clone(),
        EngineKey::from_seed([9; 32]),
        Arc::new(ArcSwap::from_pointee(trust)),
        store,
    )
    .unwrap();

    // Offered until it is both 4 s long and twice what the engine may hold
    // (an engine reading without bound would then hold more than its
    // bound: it would shed nothing and decide about 2,500 a second), each
    // producer paced at 6,000 intents/s, about ten times what the slowed
    // engine verifies. Shedding keeps up with that, so the topic's unread
    // backlog stays small and the resident set measures the engine.
    let want = 2 * bound;
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let baseline = rss_bytes();
    let producers: Vec<_> = (0..2u64)
        .map(|t| {
            let (topic, stop, published) = (topic.clone(), stop.clone(), published.clone());
            let signer = IntentSigner::from_seed([1; 32]);
            std::thread::spawn(move || {
                let started = Instant::now();
                for i in 0..PER_PRODUCER as u64 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let due = started + Duration::from_micros(i * 1_000_000 / 6_000);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let n = (t << 40) | i;
                    let now = now_us();
                    let bytes = signer.sign_intent(&IntentFields {
                        id: u128::from(n).to_le_bytes(),
                        nonce: u128::from(n).to_le_bytes(),
                        principal: "svc-1",
                        issued_at_us: now,
                        deadline_us: now + 2_000_000,
                        ..IntentFields::example()
                    });
                    while topic.publish(b"svc-1", bytes.clone()).is_err() {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    published.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let record_bytes = IntentSigner::from_seed([1; 32])
        .sign_intent(&IntentFields {
            principal: "svc-1",
            ..IntentFields::example()
        })
        .len() as u64
        + TOPIC_RECORD_OVERHEAD;
    let started = Instant::now();
    let mut peak_rss = baseline;
    let mut peak_in_flight = 0u64;
    let mut peak_unread = 0u64;
    // (RSS, intents offered) when half the load was offered.
    let mut half: Option<(u64, u64)> = None;
    while started.elapsed() < Duration::from_secs(30)
        && (started.elapsed() < Duration::from_secs(4) || published.load(Ordering::Relaxed) < want)
    {
        std::thread::sleep(Duration::from_millis(25));
        // What the engine holds, seen from the topic: handed out and not
        // yet committed (committed only once the sink acknowledged it).
        let held = topic.handed_out();
        peak_in_flight = peak_in_flight.max(held);
        let decided = engine.stats().decisions();
        // Low when decided records are not yet committed (counted twice).
        let unread = published
            .load(Ordering::Relaxed)
            .saturating_sub(decided + held);
        peak_unread = peak_unread.max(unread);
        // The process's resident set less the topic's unread records.
        let rss = rss_bytes().saturating_sub(unread * record_bytes);
        peak_rss = peak_rss.max(rss);
        let offered = published.load(Ordering::Relaxed);
        if half.is_none() && offered >= want / 2 && started.elapsed() >= Duration::from_secs(2) {
            half = Some((peak_rss, offered));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    topic.close();
    let stats = engine.join().unwrap();

    let published = published.load(Ordering::Relaxed);
    let per = sink.per_intent.lock().unwrap();
    let reasons = sink.reasons.lock().unwrap().clone();
    let growth = peak_rss.saturating_sub(baseline);
    let (rss_half, offered_half) = half.expect("the load reached its half");
    let late = peak_rss.saturating_sub(rss_half);
    let rss_bound = bound * BYTES_PER_INTENT + SLACK;
    println!(
        "offered {published} intents in {secs:.1} s; decisions by reason {reasons:?}; \
         shed {}; in flight at most {peak_in_flight} (bound {bound}), unread at most {peak_unread}; RSS before the load \
         {} MiB, peak {} MiB less unread records ({record_bytes} bytes each), growth {} KiB (bound {} MiB), {} KiB of it while the last {} intents were offered (bound {} MiB)",
        stats.shed_intents,
        baseline >> 20,
        peak_rss >> 20,
        growth >> 10,
        rss_bound >> 20,
        late >> 10,
        published - offered_half,
        LATE_GROWTH >> 20
    );
    assert!(
        published >= want,
        "offered {published} intents, not {want} (twice what the engine may hold): \
         nothing proved"
    );
    // Every intent published got exactly one decision.
    let decided: u64 = per.iter().flatten().map(|&c| u64::from(c)).sum();
    assert_eq!(decided, published);
    assert!(per.iter().flatten().all(|&c| c <= 1));
    // Far above capacity: most were shed, none silently.
    let overloaded = reasons
        .get(&Reason::Overloaded.0)
        .copied()
        .unwrap_or_default();
    assert!(overloaded > 0, "{reasons:?}");
    for r in reasons.keys() {
        assert!(
            [
                Reason::Authorized.0,
                Reason::Overloaded.0,
                Reason::DeadlineExceeded.0
            ]
            .contains(r),
            "unexpected reason {r}"
        );
    }
    assert_eq!(stats.decisions(), published);
    assert!(
        peak_in_flight <= bound,
        "the engine held {peak_in_flight} intents at once, past its bound of {bound}"
    );
    assert!(baseline > 0, "no RSS reading");
    assert!(
        growth < rss_bound,
        "resident set grew {growth} bytes under overload (bound {rss_bound})"
    );
    assert!(
        late < LATE_GROWTH,
        "resident set grew {late} bytes while the last {} intents were offered",
        published - offered_half
    );
}
