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

/// Counts decisions per intent id and per reason; keeps no decision bytes.
#[derive(Clone, Default)]
struct Counting {
    per_intent: Arc<Mutex<HashMap<[u8; 16], u32>>>,
    reasons: Arc<Mutex<HashMap<u16, u64>>>,
}

impl Sink for Counting {
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
        let mut per = self.per_intent.lock().unwrap();
        let mut reasons = self.reasons.lock().unwrap();
        for (id, d) in &batch.decisions {
            *per.entry(*id).or_default() += 1;
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

/// The bound asserted on resident-set growth after warm-up. Without the
/// bounded queues the engine would read the whole backlog into memory
/// (tens of thousands of intents at ~1 KiB each with their state).
const GROWTH_BOUND: u64 = 32 << 20;

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
    // A broker-like topic: 4 partitions of up to 4,096 unread records.
    let topic = Topic::new(4, 4_096);
    let sink = Counting::default();
    // An engine slowed to at most 64 intents per 50 ms (1,280/s): the
    // verify stage stalls on every batch. A full batch waits 5 ms for room
    // before it is shed.
    let engine = Engine::start(
        Config {
            max_batch: 64,
            queue_batches: 2,
            partitions: 4,
            // Two verify lanes: batches waiting in policy for an earlier
            // one count against the bound too.
            layout: Layout::unpinned(2),
            verify_stall: Duration::from_millis(50),
            shed_after: Duration::from_millis(5),
            ..Config::default()
        },
        topic.consumer(),
        sink.clone(),
        EngineKey::from_seed([9; 32]),
        Arc::new(ArcSwap::from_pointee(trust)),
        store,
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..2u64)
        .map(|t| {
            let (topic, stop, published) = (topic.clone(), stop.clone(), published.clone());
            let signer = IntentSigner::from_seed([1; 32]);
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = (t << 40) | i;
                    i += 1;
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

    let started = Instant::now();
    let mut warm = 0u64;
    let mut peak = 0u64;
    while started.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(25));
        let rss = rss_bytes();
        if warm == 0 && started.elapsed() >= Duration::from_secs(1) {
            warm = rss;
        }
        peak = peak.max(rss);
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    topic.close();
    let stats = engine.join().unwrap();

    let published = published.load(Ordering::Relaxed);
    let per = sink.per_intent.lock().unwrap();
    let reasons = sink.reasons.lock().unwrap().clone();
    let growth = peak.saturating_sub(warm);
    println!(
        "offered {published} intents in 4 s; decisions by reason {reasons:?}; \
         shed {}; RSS after 1 s {} MiB, peak {} MiB, growth {} KiB (bound {} MiB)",
        stats.shed_intents,
        warm >> 20,
        peak >> 20,
        growth >> 10,
        GROWTH_BOUND >> 20
    );
    // Every intent published got exactly one decision.
    assert_eq!(per.len() as u64, published);
    assert!(per.values().all(|&c| c == 1));
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
    assert!(warm > 0, "no RSS reading");
    assert!(
        growth < GROWTH_BOUND,
        "resident set grew {growth} bytes under overload"
    );
}
