//! The Kafka target: intents produced to a Warrant deployment's intents
//! topic, decisions read back from its decisions topic.
//!
//! The reader is assigned every partition of the decisions topic at its
//! end before the first intent is sent, so it sees exactly the decisions
//! that come after; it matches them to this run's intents by intent id,
//! which carries the run's random tag (decisions of other traffic are
//! counted as strays and otherwise ignored).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::collect::Collector;
use crate::target::{Finished, Target};

/// Where the deployment is.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The engine's intents topic.
    pub intents_topic: String,
    /// The engine's decisions topic.
    pub decisions_topic: String,
    /// The producer's `linger.ms` (default 5): fewer, larger produce
    /// requests; part of the measured latency.
    pub linger_ms: u32,
    /// Further librdkafka properties for the producer and the reader
    /// (SASL, TLS, ...).
    pub properties: Vec<(String, String)>,
}

impl KafkaOptions {
    /// The default topic names (`warrant.intents`, `warrant.decisions`).
    pub fn new(brokers: &str) -> KafkaOptions {
        KafkaOptions {
            brokers: brokers.to_owned(),
            intents_topic: "warrant.intents".into(),
            decisions_topic: "warrant.decisions".into(),
            linger_ms: 5,
            properties: Vec::new(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// Delivery attempts before an intent counts as undelivered; attempt `n`
/// waits `min(250 ms · 2ⁿ⁻¹, 5 s)` after the failure (about 80 s of
/// backoff in all: longer than a broker restart).
const ATTEMPTS: u32 = 20;

/// Intents produced but not yet acknowledged: (key, bytes, attempts), by
/// index. A failed delivery is sent again (a producer of intents retries,
/// as a transaction system would), up to [`ATTEMPTS`] times.
type Pending = Arc<Mutex<HashMap<usize, (String, Vec<u8>, u32)>>>;

/// Tracks deliveries: acknowledged ones leave `pending`, failed ones go to
/// `failed` for a retry, and count as errors.
struct Deliveries {
    collector: Arc<Collector>,
    pending: Pending,
    /// (index, when to send it again).
    failed: Arc<Mutex<Vec<(usize, Instant)>>>,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        match result {
            Ok(_) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&index);
                }
            }
            Err((e, _)) => {
                self.collector.error();
                if let Ok(mut f) = self.first_error.lock()
                    && f.is_none()
                {
                    eprintln!("loadgen: a delivery failed ({e}); retrying");
                    *f = Some(e.to_string());
                }
                let attempts = self
                    .pending
                    .lock()
                    .ok()
                    .and_then(|p| p.get(&index).map(|e| e.2))
                    .unwrap_or(1);
                let backoff = Duration::from_millis(250)
                    .saturating_mul(1 << attempts.saturating_sub(1).min(5))
                    .min(Duration::from_secs(5));
                if let Ok(mut f) = self.failed.lock() {
                    f.push((index, Instant::now() + backoff));
                }
            }
        }
    }
}

/// A producer and a decisions reader.
pub struct KafkaTarget {
    options: KafkaOptions,
    producer: BaseProducer<Deliveries>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

fn kafka(what: &str, e: KafkaError) -> String {
    format!("{what}: {e}")
}

/// A client-creation error, naming a refused `-X` property but never
/// showing any `-X` value (a password, say).
fn creation(options: &KafkaOptions, what: &str, e: KafkaError) -> String {
    let values: Vec<String> = options.properties.iter().map(|(_, v)| v.clone()).collect();
    format!(
        "{what}: {}",
        warrant_connectors::kafka::redact_client_error(e, &values)
    )
}

impl KafkaTarget {
    /// Connects, and starts reading decisions from the end of the
    /// decisions topic.
    pub fn start(options: &KafkaOptions, collector: Arc<Collector>) -> Result<KafkaTarget, String> {
        let tag = hex::encode(collector.tag());
        let consumer: BaseConsumer = options
            .client()
            .set("group.id", format!("loadgen-{tag}"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "5")
            .create()
            .map_err(|e| creation(options, "cannot create the decisions reader", e))?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer
            .fetch_metadata(Some(&options.decisions_topic), timeout)
            .map_err(|e| kafka(&format!("broker {}", options.brokers), e))?;
        let partitions = metadata
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        if partitions == 0 {
            return Err(format!(
                "topic `{}` does not exist on {}",
                options.decisions_topic, options.brokers
            ));
        }
        let mut assignment = TopicPartitionList::new();
        for p in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
            let (_, high) = consumer
                .fetch_watermarks(&options.decisions_topic, p, timeout)
                .map_err(|e| kafka("cannot read the decisions topic's end", e))?;
            assignment
                .add_partition_offset(&options.decisions_topic, p, Offset::Offset(high))
                .map_err(|e| kafka("cannot assign", e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka("cannot assign", e))?;

        let producer: BaseProducer<Deliveries> = options
            .client()
            .set("partitioner", "murmur2_random")
            .set("linger.ms", options.linger_ms.to_string())
            // At least once, as a producer of intents is: a retried intent
            // is a redelivery, which the engine decides the same way and
            // loadgen counts as a duplicate.
            .create_with_context(Deliveries {
                collector: collector.clone(),
                pending: Arc::new(Mutex::new(HashMap::new())),
                failed: Arc::new(Mutex::new(Vec::new())),
                first_error: Mutex::new(None),
            })
            .map_err(|e| creation(options, "cannot create the producer", e))?;

        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let reader = std::thread::Builder::new()
            .name("loadgen-reader".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(50)) {
                        Some(Ok(m)) => {
                            let at = Instant::now();
                            if let Some(bytes) = m.payload() {
                                collector.decision(bytes, at);
                            }
                        }
                        Some(Err(_)) => collector.error(),
                        None => {}
                    }
                }
            })
            .map_err(|e| format!("cannot start the reader: {e}"))?;
        Ok(KafkaTarget {
            options: options.clone(),
            producer,
            stop,
            reader: Some(reader),
        })
    }
}

impl KafkaTarget {
    /// Produces intent `index`; blocks while the local queue is full.
    fn send(&self, index: usize, key: &str, bytes: &[u8]) -> Result<(), String> {
        let mut record = BaseRecord::with_opaque_to(&self.options.intents_topic, index)
            .key(key)
            .payload(bytes);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer.poll(Duration::ZERO);
                    return Ok(());
                }
                // The local queue is full: the broker is behind. Wait; the
                // time is charged to the intent as latency.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    self.producer.poll(Duration::from_millis(1));
                    record = r;
                }
                Err((e, _)) => return Err(kafka("cannot produce", e)),
            }
        }
    }

    /// Sends again what failed to deliver; gives up on an intent after
    /// [`ATTEMPTS`].
    fn retry_failed(&self) -> Result<(), String> {
        let ctx = self.producer.context();
        let now = Instant::now();
        let failed: Vec<usize> = ctx
            .failed
            .lock()
            .map(|mut f| {
                let (due, later): (Vec<_>, Vec<_>) = f.drain(..).partition(|(_, at)| *at <= now);
                *f = later;
                due.into_iter().map(|(i, _)| i).collect()
            })
            .unwrap_or_default();
        for index in failed {
            let again = ctx.pending.lock().ok().and_then(|mut p| {
                let entry = p.get_mut(&index)?;
                entry.2 += 1;
                if entry.2 > ATTEMPTS {
                    p.remove(&index);
                    return None;
                }
                Some((entry.0.clone(), entry.1.clone()))
            });
            match again {
                Some((key, bytes)) => self.send(index, &key, &bytes)?,
                None => ctx.collector.undelivered(index as u64),
            }
        }
        Ok(())
    }
}

impl Target for KafkaTarget {
    fn publish(&mut self, index: u64, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        self.retry_failed()?;
        let i = usize::try_from(index).map_err(|_| "intent index out of range")?;
        // Pending before it is sent: its acknowledgement may come during
        // the send.
        if let Ok(mut p) = self.producer.context().pending.lock() {
            p.insert(i, (key.to_owned(), bytes.clone(), 1));
        }
        self.send(i, key, &bytes)
    }

    fn flush(&mut self) -> Result<(), String> {
        // Until every intent is acknowledged or given up on.
        let give_up = Instant::now() + Duration::from_secs(600);
        loop {
            self.retry_failed()?;
            self.producer.poll(Duration::from_millis(100));
            let waiting = self
                .producer
                .context()
                .pending
                .lock()
                .map_or(0, |p| p.len());
            if waiting == 0 {
                return Ok(());
            }
            if Instant::now() > give_up {
                return Err(format!(
                    "{waiting} intents still unacknowledged after 10 minutes"
                ));
            }
        }
    }

    fn finish(mut self: Box<Self>) -> Result<Finished, String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            r.join().map_err(|_| "the reader panicked".to_string())?;
        }
        Ok(Finished::default())
    }
}

impl Drop for KafkaTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused `-X` property is named, its value never shown (librdkafka
    /// quotes it, and rust-rdkafka appends it, in its own message).
    #[test]
    fn a_property_value_never_appears_in_an_error() {
        for (name, value) in [
            ("sasl.pasword", "hunter2secret"),
            ("security.protocol", "hunter2secret"),
        ] {
            let mut options = KafkaOptions::new("127.0.0.1:1");
            options.properties.push((name.into(), value.into()));
            let collector = Arc::new(Collector::new(1, [0; 8], std::time::Instant::now()));
            let Err(message) = KafkaTarget::start(&options, collector) else {
                panic!("{name}: a bad property was accepted");
            };
            assert!(message.contains(name), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}
