//! The whole engine path through a Kafka-compatible broker: a backlog of
//! signed intents on the intents topic, drained by the engine (Kafka
//! source and sink), timed until the last decision is read back from the
//! decisions topic.
//!
//! ```text
//! cargo run --release -p warrant-connectors --example throughput -- 127.0.0.1:19092 20000
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a measurement tool: any failure ends it"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use warrant_connectors::kafka::{KafkaConfig, KafkaSink, KafkaSource, create_topics};
use warrant_engine::pipeline::{Config, Engine, now_us};
use warrant_engine::seal::EngineKey;
use warrant_engine::trust::{KeyState, TrustStore};
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::{IntentFields, IntentSigner};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let brokers = args.next().unwrap_or_else(|| "127.0.0.1:19092".into());
    let n: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let unique = now_us();
    let mut config = KafkaConfig::new(&brokers);
    config.group_id = format!("tp-{unique}");
    config.intents_topic = format!("tp-intents-{unique}");
    config.decisions_topic = format!("tp-decisions-{unique}");
    config.lineage_topic = format!("tp-lineage-{unique}");
    create_topics(
        &brokers,
        &[
            &config.intents_topic,
            &config.decisions_topic,
            &config.lineage_topic,
        ],
        4,
    )
    .unwrap();

    let principals: Vec<String> = (0..64).map(|i| format!("svc-{i:02}")).collect();
    let signers: Vec<IntentSigner> = (0..64u8)
        .map(|i| IntentSigner::from_seed([i + 1; 32]))
        .collect();
    let mut trust = TrustStore::new();
    for (p, s) in principals.iter().zip(&signers) {
        trust.add(p, s.public_key(), KeyState::Active).unwrap();
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let now = now_us();
    let t = Instant::now();
    for i in 0..n {
        let p = (i % 64) as usize;
        let bytes = signers[p].sign_intent(&IntentFields {
            id: u128::from(i).to_le_bytes(),
            nonce: u128::from(i).to_le_bytes(),
            principal: &principals[p],
            issued_at_us: now,
            deadline_us: now + 600_000_000,
            ..IntentFields::example()
        });
        let mut record = BaseRecord::to(&config.intents_topic)
            .key(principals[p].as_str())
            .payload(&bytes);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(5));
                    record = r;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    println!(
        "produced {n} signed intents in {:.2} s (signing included)",
        t.elapsed().as_secs_f64()
    );

    let store = Arc::new(PolicyStore::new());
    store.install(
        Policy::from_sources(&[(
            "p.toml",
            "[policy]\nversion = 1\n[[rule]]\nid = \"allow\"\neffect = \"allow\"\n",
        )])
        .unwrap(),
    );
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("tp-reader-{unique}"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    reader.subscribe(&[&config.decisions_topic]).unwrap();

    let started = Instant::now();
    let source = KafkaSource::new(&config).unwrap();
    let engine = Engine::start(
        Config {
            partitions: source.partitions(),
            ..Config::default()
        },
        source,
        KafkaSink::new(&config, Duration::from_secs(30)).unwrap(),
        EngineKey::from_seed([9; 32]),
        Arc::new(ArcSwap::from_pointee(trust)),
        store,
    )
    .unwrap();
    let mut read = 0u64;
    while read < n && started.elapsed() < Duration::from_secs(600) {
        if let Some(Ok(_)) = reader.poll(Duration::from_millis(100)) {
            read += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let stats = engine.shutdown().unwrap();
    let batches = stats.batches.max(1);
    println!(
        "engine on Kafka: {read} decisions read back in {secs:.2} s = {:.0} intents/s \
         ({} engine batches, {:.0} intents per batch; engine latency p50 {:.1} ms, p99 {:.1} ms)",
        read as f64 / secs,
        stats.batches,
        stats.decisions() as f64 / batches as f64,
        stats.latency_us.value_at_quantile(0.5) as f64 / 1000.0,
        stats.latency_us.value_at_quantile(0.99) as f64 / 1000.0
    );
}
