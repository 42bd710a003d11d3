//! The broker's own produce → consume round trip, with a few client
//! settings side by side, to see where latency through Kafka comes from.
//!
//! Run against a broker (`scripts/broker.sh start` prints its address):
//!
//! ```text
//! cargo run --release -p warrant-connectors --example roundtrip -- 127.0.0.1:19092
//! ```
//!
//! For each setting it sends 200 messages one at a time, each after the
//! previous one came back, and prints the round-trip percentiles.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a measurement tool: any failure ends it"
)]

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use warrant_connectors::kafka::create_topics;

/// librdkafka properties.
type Props = &'static [(&'static str, &'static str)];

fn main() {
    let brokers = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:19092".into());
    let settings: &[(&str, Props, Props)] = &[
        ("librdkafka defaults", &[], &[]),
        ("producer linger.ms=0", &[("linger.ms", "0")], &[]),
        (
            "linger.ms=0, consumer fetch.wait.max.ms=5",
            &[("linger.ms", "0")],
            &[("fetch.wait.max.ms", "5")],
        ),
        (
            "linger.ms=0, fetch.wait.max.ms=1, fetch.error.backoff.ms=1",
            &[("linger.ms", "0")],
            &[("fetch.wait.max.ms", "1"), ("fetch.error.backoff.ms", "1")],
        ),
    ];
    for (name, producer_props, consumer_props) in settings {
        let topic = format!(
            "roundtrip-{}",
            Instant::now().elapsed().as_nanos()
                ^ u128::from(std::process::id())
                ^ (name.len() as u128 * 7919)
        );
        create_topics(&brokers, &[&topic], 1).unwrap();
        let mut pc = ClientConfig::new();
        pc.set("bootstrap.servers", &brokers);
        for (k, v) in *producer_props {
            pc.set(*k, *v);
        }
        let producer: BaseProducer = pc.create().unwrap();
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &brokers)
            .set("group.id", format!("rt-{topic}"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        for (k, v) in *consumer_props {
            cc.set(*k, *v);
        }
        let consumer: BaseConsumer = cc.create().unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        // Warm up: wait for the assignment with a first message.
        producer
            .send(BaseRecord::to(&topic).key("k").payload("warm"))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                break;
            }
        }
        let mut rtts = Vec::new();
        for i in 0..200u32 {
            let payload = i.to_le_bytes();
            let sent = Instant::now();
            producer
                .send(BaseRecord::to(&topic).key("k").payload(&payload[..]))
                .map_err(|(e, _)| e)
                .unwrap();
            loop {
                producer.poll(Duration::ZERO);
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(1))
                    && m.payload() == Some(&payload[..])
                {
                    break;
                }
                if sent.elapsed() > Duration::from_secs(10) {
                    panic!("message {i} did not come back in 10 s");
                }
            }
            rtts.push(sent.elapsed());
        }
        rtts.sort();
        let q = |p: f64| rtts[((rtts.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
        println!(
            "{name:<62} p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms",
            q(0.5),
            q(0.9),
            q(0.99)
        );
    }
}
