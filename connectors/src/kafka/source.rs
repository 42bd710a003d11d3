//! Intents in: a consumer in a consumer group.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use warrant_engine::transport::{InRecord, Source, TransportError};

use super::{KafkaConfig, KafkaError};

/// Reads the intents topic as a [`Source`]. Offsets are committed only
/// through [`Source::commit`], which the engine calls once the decisions
/// and lineage covering them are acknowledged.
pub struct KafkaSource {
    consumer: BaseConsumer,
    topic: String,
    partitions: u32,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Joins the consumer group and subscribes to the intents topic, which
    /// must exist (its partition count is the engine's routing rule).
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut client = config.client(&[
            ("group.id", config.group_id.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ])?;
        // Defaults a user may override: a new group starts at the
        // beginning; a fetch waits at most 5 ms. Brokers that answer a
        // waiting fetch only when its wait expires (Tansu does) otherwise
        // add librdkafka's default 500 ms to every intent's latency; see
        // connectors/README.md for the measurement.
        for (key, value) in [
            ("auto.offset.reset", "earliest"),
            ("fetch.wait.max.ms", "5"),
        ] {
            if !config.properties.iter().any(|(k, _)| k == key) {
                client.set(key, value);
            }
        }
        let consumer: BaseConsumer = client.create()?;
        let topic = config.intents_topic.clone();
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        if partitions == 0 {
            return Err(KafkaError::Topic {
                topic,
                message: "does not exist or has no partitions".into(),
            });
        }
        consumer.subscribe(&[&topic])?;
        Ok(KafkaSource {
            consumer,
            topic,
            partitions: u32::try_from(partitions).unwrap_or(u32::MAX),
        })
    }

    /// Partitions of the intents topic.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }
}

impl Source for KafkaSource {
    fn poll(
        &mut self,
        out: &mut Vec<InRecord>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut taken = 0;
        while taken < max {
            // Wait for the first record; after it, take only what is ready.
            let wait = if taken == 0 {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => {
                    let (Ok(partition), Ok(offset)) =
                        (u32::try_from(m.partition()), u64::try_from(m.offset()))
                    else {
                        continue;
                    };
                    out.push(InRecord {
                        partition,
                        offset,
                        key: m.key().unwrap_or_default().to_vec(),
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                    taken += 1;
                }
                Some(Err(e)) if taken == 0 => {
                    return Err(TransportError::Unavailable(e.to_string()));
                }
                Some(Err(_)) => break,
            }
        }
        Ok(taken)
    }

    fn commit(&mut self, partition: u32, offset: u64) -> Result<(), TransportError> {
        let bad = |reason: String| TransportError::BadCommit {
            partition,
            offset,
            reason,
        };
        let p = i32::try_from(partition).map_err(|_| bad("partition out of range".into()))?;
        let next = i64::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(1))
            .ok_or_else(|| bad("offset out of range".into()))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(next))
            .map_err(|e| bad(e.to_string()))?;
        // Asynchronous: a lost commit only means those intents are read
        // and decided again (idempotently), never that one is skipped.
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(|e| TransportError::Unavailable(e.to_string()))
    }
}
