//! The engine on a real Kafka-compatible broker (Tansu, started by
//! `scripts/broker.sh` unless `WARRANT_KAFKA_BROKERS` names one): every
//! intent produced gets exactly one decision on the decisions topic and
//! one lineage record, a malformed message gets a deny and the stream goes
//! on, and the lineage read back from the broker verifies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use warrant_connectors::kafka::{KafkaSink, KafkaSource, fresh_topics};
use warrant_engine::lineage::file::by_partition;
use warrant_engine::lineage::verify_log;
use warrant_engine::pipeline::{Config, Engine, Layout, now_us};
use warrant_engine::seal::EngineKey;
use warrant_engine::transport::{OutBatch, Sink, TransportError};
use warrant_engine::trust::{KeyState, TrustStore};
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::wire::Reason;
use warrant_schemas::{IntentFields, IntentSigner, open_decision};

const PARTITIONS: i32 = 4;

/// The broker's address: `WARRANT_KAFKA_BROKERS`, or the one
/// `scripts/broker.sh start` starts (installing Tansu if needed).
fn brokers() -> String {
    if let Ok(b) = std::env::var("WARRANT_KAFKA_BROKERS") {
        return b;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/broker.sh");
    eprintln!(
        "WARRANT_KAFKA_BROKERS is not set: starting Tansu with scripts/broker.sh \
         (the first time, this builds it from crates.io: about 9 minutes)"
    );
    let out = Command::new(script)
        .arg("start")
        .output()
        .expect("runs broker.sh");
    assert!(
        out.status.success(),
        "scripts/broker.sh start failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Reads `topic` (at least `want` messages) and verifies every
/// partition's lineage log with `engine`; returns the records verified.
fn verify_lineage(brokers: &str, topic: &str, want: usize, engine: [u8; 32]) -> u64 {
    let frames: Vec<(u32, Vec<u8>)> = read_all(brokers, topic, want)
        .into_iter()
        .map(|(p, _, v)| (p as u32, v))
        .collect();
    let mut records = 0;
    for (p, f) in by_partition(&frames) {
        records += verify_log(p, &f.records, &f.checkpoints, &[engine])
            .unwrap_or_else(|e| panic!("partition {p}: {e}"))
            .records;
    }
    records
}

/// A policy store holding one rule that allows everything.
fn allow_all() -> Arc<PolicyStore> {
    let store = Arc::new(PolicyStore::new());
    store.install(
        Policy::from_sources(&[(
            "p.toml",
            "[policy]\nversion = 1\n[[rule]]\nid = \"allow\"\neffect = \"allow\"\n",
        )])
        .unwrap(),
    );
    store
}

/// Everything on `topic` now, by partition, in offset order.
fn read_all(brokers: &str, topic: &str, want: usize) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{}", now_us()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    // At least `want` messages, then until nothing new comes for 2 s.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = Instant::now();
    while Instant::now() < deadline && (out.len() < want || last.elapsed() < Duration::from_secs(2))
    {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push((
                m.partition(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
            last = Instant::now();
        }
    }
    out
}

#[test]
fn every_intent_produced_gets_one_decision_and_one_lineage_record() {
    let brokers = brokers();
    let config = fresh_topics(&brokers, "once", PARTITIONS).unwrap();
    let mut trust = TrustStore::new();
    let principals = ["svc-a", "svc-b", "svc-c", "svc-d", "svc-e"];
    let signers: Vec<IntentSigner> = (0..principals.len())
        .map(|i| IntentSigner::from_seed([i as u8 + 1; 32]))
        .collect();
    for (p, s) in principals.iter().zip(&signers) {
        trust.add(p, s.public_key(), KeyState::Active).unwrap();
    }

    // Producers key intents by principal with Kafka's murmur2 partitioner,
    // as the engine requires.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    const N: u64 = 200;
    let now = now_us();
    for i in 0..N {
        let p = (i as usize) % principals.len();
        let bytes = signers[p].sign_intent(&IntentFields {
            id: u128::from(i).to_le_bytes(),
            nonce: u128::from(i).to_le_bytes(),
            principal: principals[p],
            issued_at_us: now,
            deadline_us: now + 120_000_000,
            ..IntentFields::example()
        });
        producer
            .send(
                BaseRecord::to(&config.intents_topic)
                    .key(principals[p])
                    .payload(&bytes),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    // A malformed message in the middle of the stream.
    producer
        .send(
            BaseRecord::to(&config.intents_topic)
                .key("svc-a")
                .payload(&b"garbage"[..]),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();

    let source = KafkaSource::new(&config).unwrap();
    assert_eq!(source.partitions(), PARTITIONS as u32);
    let sink = KafkaSink::new(&config, Duration::from_secs(30)).unwrap();
    let store = allow_all();
    let key = EngineKey::from_seed([7; 32]);
    let public = key.public_key();
    let engine = Engine::start(
        Config {
            partitions: source.partitions(),
            layout: Layout::unpinned(2),
            ..Config::default()
        },
        source,
        sink,
        key,
        Arc::new(ArcSwap::from_pointee(trust)),
        store,
    )
    .unwrap();

    let decisions = read_all(&brokers, &config.decisions_topic, N as usize + 1);
    let stats = engine.shutdown().unwrap();
    assert_eq!(stats.decisions(), N + 1, "{stats:?}");
    let mut by_id: HashMap<Vec<u8>, Vec<Reason>> = HashMap::new();
    for (_, key, payload) in &decisions {
        let d = open_decision(payload, &Default::default()).unwrap();
        assert_eq!(key.as_slice(), &d.intent_id().0[..]);
        by_id.entry(key.clone()).or_default().push(d.reason());
    }
    for i in 0..N {
        let reasons = &by_id[&u128::from(i).to_le_bytes().to_vec()];
        assert_eq!(reasons, &[Reason::Authorized], "intent {i}");
    }
    let malformed: Vec<_> = by_id
        .values()
        .filter(|r| r.as_slice() == [Reason::Malformed])
        .collect();
    assert_eq!(malformed.len(), 1);
    assert_eq!(decisions.len() as u64, N + 1);

    // The lineage read back from the broker verifies, partition by partition.
    let records = verify_lineage(&brokers, &config.lineage_topic, N as usize + 1, public);
    assert_eq!(records, N + 1);
}

/// A record larger than any intent the engine accepts is read as its
/// digest alone: however large the broker lets producers make records,
/// the engine holds at most its limit per record in flight. The key
/// likewise (the engine routes by the signed principal, not the key).
#[test]
fn an_oversized_record_is_read_as_its_digest_alone() {
    use warrant_engine::transport::Source;
    let brokers = brokers();
    let config = fresh_topics(&brokers, "oversize", PARTITIONS).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let big = vec![0x5a_u8; 300 * 1024];
    let long_key = "k".repeat(4096);
    for (key, payload) in [("svc-a", &big[..]), (&long_key[..], &b"small"[..])] {
        producer
            .send(
                BaseRecord::to(&config.intents_topic)
                    .key(key)
                    .payload(payload),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let mut source = KafkaSource::new(&config).unwrap();
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while got.len() < 2 && Instant::now() < until {
        source
            .poll(&mut got, 10, Duration::from_millis(200))
            .unwrap();
    }
    assert_eq!(got.len(), 2, "{got:?}");
    let oversize = got.iter().find(|r| r.oversize_digest.is_some()).unwrap();
    assert_eq!(
        (
            oversize.oversize_digest,
            oversize.payload.len(),
            &oversize.key[..]
        ),
        (
            Some(warrant_schemas::unreadable_digest(&big)),
            0,
            &b"svc-a"[..]
        )
    );
    let small = got.iter().find(|r| r.oversize_digest.is_none()).unwrap();
    assert_eq!((&small.payload[..], small.key.len()), (&b"small"[..], 0));
}

/// A sink that holds every `send` while `stalled` is set: a broker that
/// takes the engine's records but does not acknowledge them.
struct Stalling {
    inner: KafkaSink,
    stalled: Arc<AtomicBool>,
}

impl Sink for Stalling {
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
        while self.stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.inner.send(batch)
    }
}

/// While the sink cannot deliver and the pipeline is full, the engine keeps
/// polling its consumer (partitions paused): it stays in the group past
/// `max.poll.interval.ms`, keeps its partition, and after the stall every
/// intent gets one decision and the lineage verifies as one chain. Without
/// that, librdkafka leaves the group when the interval passes and the
/// partition is revoked (as lost) and assigned again, or to another
/// instance that would then fork its lineage.
#[test]
fn a_sink_stall_longer_than_the_poll_interval_keeps_the_partitions() {
    let brokers = brokers();
    let mut config = fresh_topics(&brokers, "stall", 1).unwrap();
    const POLL_INTERVAL_MS: u64 = 8_000;
    for (k, v) in [
        ("max.poll.interval.ms", POLL_INTERVAL_MS.to_string()),
        ("session.timeout.ms", POLL_INTERVAL_MS.to_string()),
        ("heartbeat.interval.ms", "500".to_owned()),
    ] {
        config.properties.push((k.to_owned(), v));
    }
    let signer = IntentSigner::from_seed([9; 32]);
    let mut trust = TrustStore::new();
    trust
        .add("svc-a", signer.public_key(), KeyState::Active)
        .unwrap();

    let source = KafkaSource::new(&config).unwrap();
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&events);
    source.on_rebalance(move |what, partitions| {
        log.lock().unwrap().push(format!("{what} {partitions:?}"));
    });
    let stalled = Arc::new(AtomicBool::new(true));
    let sink = Stalling {
        inner: KafkaSink::new(&config, Duration::from_secs(30)).unwrap(),
        stalled: Arc::clone(&stalled),
    };
    let store = allow_all();
    let key = EngineKey::from_seed([7; 32]);
    let public = key.public_key();
    let engine = Engine::start(
        Config {
            partitions: 1,
            layout: Layout::unpinned(2),
            // A small pipeline, so that the stall fills it and ingest
            // holds a full batch it cannot hand on.
            max_batch: 16,
            queue_batches: 1,
            emit_queue_batches: 1,
            // After the stall the backlog drains at the broker's pace. On a
            // loaded machine a batch can wait past the default 100 ms while
            // the emit queue is empty for a moment (seal not yet scheduled)
            // and be shed, denied "overloaded" (seen once in a full local
            // run): this test is about keeping the partition, so it gives
            // shedding no part in it (as kafka_run.rs does).
            shed_after: Duration::from_secs(5),
            ..Config::default()
        },
        source,
        sink,
        key,
        Arc::new(ArcSwap::from_pointee(trust)),
        store,
    )
    .unwrap();

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    const N: u64 = 2_000;
    let now = now_us();
    for i in 0..N {
        let bytes = signer.sign_intent(&IntentFields {
            id: u128::from(i).to_le_bytes(),
            nonce: u128::from(i).to_le_bytes(),
            principal: "svc-a",
            issued_at_us: now,
            deadline_us: now + 300_000_000,
            ..IntentFields::example()
        });
        loop {
            match producer.send(
                BaseRecord::to(&config.intents_topic)
                    .key("svc-a")
                    .payload(&bytes),
            ) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while events.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(*events.lock().unwrap(), ["assigned [0]"]);
    // Stalled for well over the poll interval, with the pipeline full.
    std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS * 5 / 2));
    let held = engine.stats();
    assert!(
        held.decisions() < N / 2,
        "the pipeline did not fill up during the stall: {held:?}"
    );
    stalled.store(false, Ordering::SeqCst);

    let decisions = read_all(&brokers, &config.decisions_topic, N as usize);
    // (Before shutdown, which revokes the partition as the consumer leaves.)
    assert_eq!(
        *events.lock().unwrap(),
        ["assigned [0]"],
        "the partition changed hands during the stall"
    );
    let stats = engine.shutdown().unwrap();
    let mut ids = HashMap::new();
    for (_, key, payload) in &decisions {
        let d = open_decision(payload, &Default::default()).unwrap();
        assert_eq!(d.reason(), Reason::Authorized);
        *ids.entry(key.clone()).or_insert(0) += 1;
    }
    assert_eq!(ids.len() as u64, N, "{stats:?}");
    let records = verify_lineage(&brokers, &config.lineage_topic, N as usize, public);
    assert!(records >= N, "{records} lineage records for {N} intents");
}

/// librdkafka keeps an application's pause on a partition across its
/// revocation and reassignment. A source paused by `keep_alive` when a
/// rebalance takes its partitions must still read the ones it gets back,
/// or they would stay unread (the member alive, its lag growing) for good.
#[test]
fn partitions_paused_by_keep_alive_are_read_again_after_a_rebalance() {
    use warrant_engine::transport::{InRecord, Source};
    let brokers = brokers();
    let config = fresh_topics(&brokers, "repause", 2).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for p in 0..2 {
        for i in 0..20u32 {
            producer
                .send(
                    BaseRecord::to(&config.intents_topic)
                        .partition(p)
                        .key("k")
                        .payload(&i.to_le_bytes()[..]),
                )
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let mut a = KafkaSource::new(&config).unwrap();
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = Arc::clone(&events);
    a.on_rebalance(move |what, partitions| {
        log.lock().unwrap().push(format!("{what} {partitions:?}"));
    });
    let mut out: Vec<InRecord> = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while a.owned().len() < 2 && Instant::now() < until {
        a.poll(&mut out, 100, Duration::from_millis(100)).unwrap();
    }
    assert_eq!(a.owned(), [0, 1], "{:?}", events.lock().unwrap());
    // The engine is full: `keep_alive` pauses both partitions (it acts
    // once the consumer has gone unpolled for a second).
    std::thread::sleep(Duration::from_millis(1_100));
    a.keep_alive(&mut Vec::new()).unwrap();

    // A second member joins; `a` takes part in the rebalance from
    // `keep_alive` alone, as a full engine does, until it is revoked.
    let mut b = KafkaSource::new(&config).unwrap();
    let mut from_b: Vec<InRecord> = Vec::new();
    let until = Instant::now() + Duration::from_secs(90);
    while !events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.starts_with("revoked"))
        && Instant::now() < until
    {
        b.poll(&mut from_b, 100, Duration::from_millis(100))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1_000));
        a.keep_alive(&mut Vec::new()).unwrap();
    }
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.starts_with("revoked")),
        "no rebalance: {:?}",
        events.lock().unwrap()
    );
    // The engine has room again: `a` polls, gets a partition back and
    // must read it (nothing of either partition was committed).
    let mut got: Vec<InRecord> = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    while got.is_empty() && Instant::now() < until {
        a.poll(&mut got, 100, Duration::from_millis(100)).unwrap();
        b.poll(&mut from_b, 100, Duration::from_millis(10)).unwrap();
    }
    let owned = a.owned();
    assert_eq!(owned.len(), 1, "{:?}", events.lock().unwrap());
    // A source dropped while `keep_alive` has it paused (an engine that
    // stops while its sink stalls) closes: its consumer does not hang.
    // (The close revokes through the callback, which resumes; this passes
    // without `KafkaSource`'s own `Drop` resume, which is a second guard.)
    std::thread::sleep(Duration::from_millis(1_100));
    a.keep_alive(&mut Vec::new()).unwrap();
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(a);
        let _sent = closed_tx.send(());
    });
    closed_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a paused source closes");
    assert!(
        !got.is_empty() && got.iter().all(|r| r.partition == owned[0]),
        "partition {owned:?} was assigned back but not read: {:?}",
        events.lock().unwrap()
    );
}

/// A broker address that does not answer, beside one that does: the
/// errors librdkafka reports for it pass, and the topic is read whole.
#[test]
fn read_all_reads_through_errors_of_a_broker_that_does_not_answer() {
    let brokers = brokers();
    let mut config = fresh_topics(&brokers, "readall", PARTITIONS).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for i in 0..3u8 {
        producer
            .send(
                BaseRecord::to(&config.intents_topic)
                    .key("k")
                    .payload(&[i][..]),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    config.brokers = format!("127.0.0.1:1,{brokers}");
    let all = warrant_connectors::kafka::read_all(
        &config,
        &config.intents_topic,
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(all.len(), 3);
}

/// The keys topic likewise: `warrant run` catching up on it at start does
/// not fail on a broker address that does not answer.
#[test]
fn the_keys_topic_is_caught_up_through_errors_of_a_broker_that_does_not_answer() {
    let brokers = brokers();
    let config = fresh_topics(&brokers, "keyscatch", 1).unwrap();
    let topic = config.intents_topic.replacen("intents-", "keys-", 1);
    warrant_connectors::kafka::create_topics_with(
        &brokers,
        &[&topic],
        1,
        &[("cleanup.policy", "compact")],
    )
    .unwrap();
    warrant_connectors::kafka::publish_key(&config, &topic, &[1; 32], None).unwrap();
    // A keys topic of several partitions is refused: a key's records must
    // be read in the order they were written.
    let spread = topic.replacen("keys-", "spreadkeys-", 1);
    warrant_connectors::kafka::create_topics_with(
        &brokers,
        &[&spread],
        4,
        &[("cleanup.policy", "compact")],
    )
    .unwrap();
    let refused = warrant_connectors::kafka::KeyTopic::open(&config, &spread)
        .err()
        .expect("a keys topic of 4 partitions is refused")
        .to_string();
    assert!(refused.contains("has 4 partitions"), "{refused}");
    let mut flaky = config.clone();
    flaky.brokers = format!("127.0.0.1:1,{brokers}");
    let mut keys = warrant_connectors::kafka::KeyTopic::open(&flaky, &topic).unwrap();
    let read = keys.catch_up(Duration::from_secs(30), |_| {}).unwrap();
    assert_eq!(read, 1);
}
