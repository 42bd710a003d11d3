//! The engine through Kafka, with the broker's own cost measured in the
//! same run so that the engine's share is visible:
//!
//! 1. **broker round trip**: one message at a time produced and consumed
//!    back through a one-partition topic, with the client settings the
//!    engine uses (`linger.ms=0` for the producer, `fetch.wait.max.ms=5`
//!    for the consumer), 200 times;
//! 2. **latency at a fixed rate**: signed intents produced open loop at
//!    `RATE`/s for `SECONDS` s to an engine (`KafkaSource` and
//!    `KafkaSink`) that is already running; each intent's latency runs from
//!    its *scheduled* send time to the moment its decision is read back
//!    from the decisions topic, so it crosses the broker twice (intent in,
//!    decision out) and includes the lineage write the sink waits for
//!    before it publishes decisions;
//! 3. **throughput**: a backlog of `INTENTS` intents already on the
//!    intents topic, drained by a fresh engine, timed until the last
//!    decision is read back.
//!
//! Run: `cargo bench -p warrant-bench --bench kafka` against
//! `WARRANT_KAFKA_BROKERS` (or the broker `scripts/broker.sh start` gives).
//! `WARRANT_BENCH_KAFKA_RATE` (default 300), `_SECONDS` (10), `_INTENTS`
//! (20000) and `_LINGER_MS` (the load producer's `linger.ms`, 5) change
//! the load. Without `--bench` (as `cargo test` runs it)
//! it is a quick smoke run of the same code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a measurement: any failure ends it"
)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use warrant_connectors::kafka::{KafkaConfig, KafkaSink, KafkaSource, create_topics, fresh_topics};
use warrant_engine::pipeline::{Config, Engine, Layout, now_us};
use warrant_engine::seal::EngineKey;
use warrant_engine::trust::{KeyState, TrustStore};
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::{IntentFields, IntentSigner, open_decision};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PRINCIPALS: usize = 64;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn brokers() -> String {
    if let Ok(b) = std::env::var("WARRANT_KAFKA_BROKERS") {
        return b;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/broker.sh");
    let out = Command::new(script).arg("start").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn reader(brokers: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

/// A producer; `linger_ms` lets it gather records into fewer requests (a
/// broker that commits each produce request, as Tansu does with SQLite,
/// falls behind one request per intent at 1,000/s).
fn producer(brokers: &str, linger_ms: u32) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", linger_ms.to_string())
        .create()
        .unwrap()
}

fn send(p: &BaseProducer, topic: &str, key: &str, bytes: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(bytes);
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                p.poll(Duration::from_millis(1));
                record = r;
            }
        }
    }
}

/// p50, p99, p99.9 and max of a histogram of µs, in ms.
fn ms(h: &Histogram<u64>) -> String {
    let q = |x: f64| h.value_at_quantile(x) as f64 / 1e3;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        q(0.5),
        q(0.99),
        q(0.999),
        h.max() as f64 / 1e3
    )
}

/// Produce → consume of one message at a time, `n` times.
fn broker_round_trip(brokers: &str, n: u32) -> Histogram<u64> {
    let topic = format!("bench-rt-{}", now_us());
    create_topics(brokers, &[&topic], 1).unwrap();
    let p = producer(brokers, 0);
    let c = reader(brokers, &topic);
    let mut h = Histogram::<u64>::new(3).unwrap();
    for i in 0..=n {
        let payload = i.to_le_bytes();
        let sent = Instant::now();
        send(&p, &topic, "k", &payload);
        loop {
            p.poll(Duration::ZERO);
            if let Some(Ok(m)) = c.poll(Duration::from_millis(1))
                && m.payload() == Some(&payload[..])
            {
                break;
            }
            assert!(sent.elapsed() < Duration::from_secs(30), "message {i} lost");
        }
        // The first one waits for the group assignment: not counted.
        if i > 0 {
            h.record(u64::try_from(sent.elapsed().as_micros()).unwrap())
                .unwrap();
        }
    }
    h
}

struct Setup {
    config: KafkaConfig,
    signers: Vec<IntentSigner>,
    principals: Vec<String>,
    trust: TrustStore,
}

impl Setup {
    fn new(brokers: &str, name: &str) -> Setup {
        let config = fresh_topics(brokers, name, 4).unwrap();
        let principals: Vec<String> = (0..PRINCIPALS).map(|i| format!("svc-{i:02}")).collect();
        let signers: Vec<IntentSigner> = (0..PRINCIPALS as u8)
            .map(|i| IntentSigner::from_seed([i + 1; 32]))
            .collect();
        let mut trust = TrustStore::new();
        for (p, s) in principals.iter().zip(&signers) {
            trust.add(p, s.public_key(), KeyState::Active).unwrap();
        }
        Setup {
            config,
            signers,
            principals,
            trust,
        }
    }

    fn intent(&self, i: u64) -> (&str, Vec<u8>) {
        let p = (i as usize) % PRINCIPALS;
        let now = now_us();
        let bytes = self.signers[p].sign_intent(&IntentFields {
            id: u128::from(i).to_le_bytes(),
            nonce: u128::from(i).to_le_bytes(),
            principal: &self.principals[p],
            issued_at_us: now,
            deadline_us: now + 600_000_000,
            ..IntentFields::example()
        });
        (&self.principals[p], bytes)
    }

    fn engine(&self) -> Engine {
        let store = Arc::new(PolicyStore::new());
        store.install(
            Policy::from_sources(&[(
                "p.toml",
                "[policy]\nversion = 1\n[[rule]]\nid = \"allow\"\neffect = \"allow\"\n",
            )])
            .unwrap(),
        );
        let source = KafkaSource::new(&self.config).unwrap();
        Engine::start(
            Config {
                partitions: source.partitions(),
                layout: Layout::auto(),
                // As `warrant run` sets it: groups wait for the broker here.
                emit_queue_batches: 64,
                ..Config::default()
            },
            source,
            KafkaSink::new(&self.config, Duration::from_secs(30)).unwrap(),
            EngineKey::from_seed([9; 32]),
            Arc::new(ArcSwap::from_pointee(self.trust.clone())),
            store,
        )
        .unwrap()
    }
}

/// Open loop at `rate`/s for `seconds`, latency from the schedule to the
/// decision read back. Intent `i` is due at `start + i / rate`: the
/// producer thread keeps to that schedule, the reader computes latency from
/// it, so a stall anywhere shows as latency (no coordinated omission).
fn latency_at_rate(
    brokers: &str,
    rate: u64,
    seconds: u64,
    linger_ms: u32,
) -> (Histogram<u64>, Histogram<u64>) {
    let s = Setup::new(brokers, "rate");
    let engine = s.engine();
    let decisions = reader(brokers, &s.config.decisions_topic);
    // Let the engine join its group and the reader get its assignment.
    std::thread::sleep(Duration::from_secs(3));
    let n = rate * seconds;
    // Sign ahead: the generator's cost must not delay the schedule.
    let signed: Vec<(&str, Vec<u8>)> = (0..n).map(|i| s.intent(i)).collect();
    let start = Instant::now() + Duration::from_millis(100);
    let due = |i: u64| start + Duration::from_secs_f64(i as f64 / rate as f64);
    let mut h = Histogram::<u64>::new(3).unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let p = producer(brokers, linger_ms);
            for (i, (key, bytes)) in signed.iter().enumerate() {
                if let Some(wait) = due(i as u64).checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                send(&p, &s.config.intents_topic, key, bytes);
                p.poll(Duration::ZERO);
            }
            p.flush(Duration::from_secs(60)).unwrap();
        });
        let mut seen = vec![false; n as usize];
        let mut got = 0u64;
        let give_up = start + Duration::from_secs(seconds + 60);
        while got < n && Instant::now() < give_up {
            if let Some(Ok(m)) = decisions.poll(Duration::from_millis(100)) {
                let read = Instant::now();
                let d = open_decision(m.payload().unwrap(), &Default::default()).unwrap();
                let id = u64::try_from(u128::from_le_bytes(d.intent_id().0)).unwrap();
                if seen.get(id as usize) == Some(&false) {
                    seen[id as usize] = true;
                    got += 1;
                    let us = read.saturating_duration_since(due(id)).as_micros();
                    h.record(u64::try_from(us).unwrap().max(1)).unwrap();
                }
            }
        }
        assert_eq!(got, n, "every intent's decision read back");
    });
    let stats = engine.shutdown().unwrap();
    let emit = stats.stage_busy[4].1;
    println!(
        "  engine: {} batches, {} sink sends, {:.1} ms per send, {:.1} decisions per send",
        stats.batches,
        stats.sink_sends,
        emit.as_secs_f64() * 1e3 / stats.sink_sends.max(1) as f64,
        stats.decisions() as f64 / stats.sink_sends.max(1) as f64
    );
    (h, stats.latency_us)
}

/// A backlog of `n` intents drained by a fresh engine: intents/s.
fn throughput(brokers: &str, n: u64) -> f64 {
    let s = Setup::new(brokers, "tp");
    let p = producer(brokers, 5);
    for i in 0..n {
        let (key, bytes) = s.intent(i);
        send(&p, &s.config.intents_topic, key, &bytes);
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(120)).unwrap();
    let decisions = reader(brokers, &s.config.decisions_topic);
    let started = Instant::now();
    let engine = s.engine();
    let mut read = 0u64;
    while read < n && started.elapsed() < Duration::from_secs(600) {
        if let Some(Ok(_)) = decisions.poll(Duration::from_millis(100)) {
            read += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    engine.shutdown().unwrap();
    assert_eq!(read, n, "every decision read back");
    n as f64 / secs
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let brokers = brokers();
    let (rate, seconds, intents, trips) = if full {
        (
            env_or("WARRANT_BENCH_KAFKA_RATE", 300),
            env_or("WARRANT_BENCH_KAFKA_SECONDS", 10),
            env_or("WARRANT_BENCH_KAFKA_INTENTS", 20_000),
            200,
        )
    } else {
        (200, 1, 500, 20)
    };
    println!(
        "kafka bench on {brokers} ({})",
        if full { "full" } else { "smoke" }
    );
    let rt = broker_round_trip(&brokers, trips);
    println!(
        "broker round trip (produce -> consume, {trips} messages): {}",
        ms(&rt)
    );
    let linger = u32::try_from(env_or("WARRANT_BENCH_KAFKA_LINGER_MS", 5)).unwrap_or(5);
    let (e2e, engine) = latency_at_rate(&brokers, rate, seconds, linger);
    println!(
        "intent -> decision at {rate}/s for {seconds} s ({} intents, open loop, \
         producer linger.ms={linger}): {}",
        e2e.len(),
        ms(&e2e)
    );
    println!(
        "  of which inside the engine (first poll to sink ack): {}",
        ms(&engine)
    );
    println!(
        "  p50 in broker round trips: {:.1} (the path crosses the broker twice; \
         the sink waits for the lineage ack before it publishes decisions)",
        e2e.value_at_quantile(0.5) as f64 / rt.value_at_quantile(0.5).max(1) as f64
    );
    let tp = throughput(&brokers, intents);
    println!("throughput draining a backlog of {intents}: {tp:.0} intents/s");
}
