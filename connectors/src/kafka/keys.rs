//! The keys topic: a compacted topic of intent-signing keys, keyed by
//! public key (64 hex digits), each value a [`KeyRecord`] as JSON, an empty
//! value withdrawing the record. Every engine instance reads all of it
//! (no consumer group: each needs the whole table) from the beginning, then
//! follows it.

use std::time::{Duration, Instant};

use std::sync::Mutex;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use warrant_engine::trust::KeyRecord;

use super::{KafkaConfig, KafkaError};

/// One change read from the keys topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyChange {
    /// A record for this public key (`None`: a tombstone).
    Record([u8; 32], Option<KeyRecord>),
    /// A message that is not a valid record. With the public key its
    /// Kafka key names, that key's latest record is unusable: the engine
    /// lets the key sign nothing ([`warrant_engine::trust::LiveTrust::distrust`])
    /// until a valid record or a tombstone comes. Without one, it names no
    /// key and is only reported.
    Invalid(Option<[u8; 32]>, String),
}

/// Reads the keys topic.
pub struct KeyTopic {
    consumer: BaseConsumer,
    topic: String,
    /// (partition, start, end offset when opened): read up to the end
    /// before the engine starts.
    ends: Vec<(i32, i64, i64)>,
}

fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> KeyChange {
    let mut bytes = [0u8; 32];
    if key.is_none_or(|k| hex::decode_to_slice(k, &mut bytes).is_err()) {
        return KeyChange::Invalid(
            None,
            "a record whose Kafka key is not a 64-hex-digit public key".into(),
        );
    }
    // Lowercase only: compaction keeps the latest record per key *bytes*,
    // so `ABC…` and `abc…` would be two histories of one public key, and
    // after compaction a withdrawn or revoked key could come back active.
    // Such a record makes the key unusable (fail closed) until a record
    // under its lowercase key comes.
    if key.is_some_and(|k| k.iter().any(u8::is_ascii_uppercase)) {
        return KeyChange::Invalid(
            Some(bytes),
            format!(
                "key {}: a record under an uppercase Kafka key; write it under the lowercase \
                 hex (as `warrant keys` does)",
                hex::encode(bytes)
            ),
        );
    }
    match value.filter(|v| !v.is_empty()) {
        None => KeyChange::Record(bytes, None),
        Some(v) => match KeyRecord::parse(v) {
            Ok(r) => KeyChange::Record(bytes, Some(r)),
            Err(e) => KeyChange::Invalid(Some(bytes), format!("key {}: {e}", hex::encode(bytes))),
        },
    }
}

/// Why a keys topic with this configuration could lose key records, if it
/// could: the latest record of a key is its state (a revocation, say), so
/// the topic must be compacted and never delete records by retention.
/// `configs` as [`super::topic_config`] returns them (a setting left out
/// is at the broker's default: `cleanup.policy=delete`).
pub fn retention_problem(configs: &[(String, String)]) -> Option<String> {
    let policy = super::admin::topic_setting(configs, "cleanup.policy");
    let parts: Vec<&str> = policy.split(',').map(str::trim).collect();
    if !parts.contains(&"compact") {
        return Some(format!(
            "has cleanup.policy={policy}: retention would delete key records, a revocation \
             among them, and a revoked key would be trusted again after a restart; \
             create it with cleanup.policy=compact"
        ));
    }
    if parts.contains(&"delete") {
        let retention = super::admin::topic_setting(configs, "retention.ms");
        if retention != "-1" {
            return Some(format!(
                "has cleanup.policy={policy} with retention.ms={retention}: retention would \
                 delete key records, a revocation among them; use cleanup.policy=compact \
                 (or retention.ms=-1 and retention.bytes=-1)"
            ));
        }
        // Retention by size deletes old segments as retention by time does.
        let bytes = super::admin::topic_setting(configs, "retention.bytes");
        if bytes != "-1" {
            return Some(format!(
                "has cleanup.policy={policy} with retention.bytes={bytes}: retention would \
                 delete key records, a revocation among them; use cleanup.policy=compact \
                 (or retention.bytes=-1)"
            ));
        }
    }
    None
}

impl KeyTopic {
    /// Opens `topic` from its beginning. It must exist and be compacted
    /// without retention ([`retention_problem`]): an error otherwise, so
    /// an engine never starts on a key table that can lose revocations.
    pub fn open(config: &KafkaConfig, topic: &str) -> Result<KeyTopic, KafkaError> {
        let consumer = super::admin::whole_topic_reader(config, "keys", 100)?;
        let ends = super::admin::assign_from_start(
            &consumer,
            topic,
            "does not exist (create it compacted, with one partition: cleanup.policy=compact)",
        )?;
        // A key's records must be read in the order written: across
        // partitions there is none, and producers with different
        // partitioners would put one key's records in different ones.
        if ends.len() != 1 {
            return Err(KafkaError::Topic {
                topic: topic.to_owned(),
                message: format!(
                    "has {} partitions: a key's records must stay in order, in one partition; \
                     create it with one partition",
                    ends.len()
                ),
            });
        }
        let configs = super::admin::topic_config(config, topic, Duration::from_secs(10))?;
        if let Some(problem) = retention_problem(&configs) {
            return Err(KafkaError::Topic {
                topic: topic.to_owned(),
                message: problem,
            });
        }
        Ok(KeyTopic {
            consumer,
            topic: topic.to_owned(),
            ends,
        })
    }

    /// Reads everything the topic held when opened, passing each change to
    /// `f`; an error if that takes longer than `timeout` (the engine must
    /// not start on a partial key table).
    pub fn catch_up(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(KeyChange),
    ) -> Result<usize, KafkaError> {
        let deadline = Instant::now() + timeout;
        let mut read = 0;
        let mut last_error = None;
        loop {
            let positions = self.consumer.position()?;
            let behind = self.ends.iter().any(|(p, start, end)| {
                let pos = positions
                    .find_partition(&self.topic, *p)
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(*start);
                end > start && pos < *end
            });
            if !behind {
                return Ok(read);
            }
            if Instant::now() > deadline {
                return Err(KafkaError::Topic {
                    topic: self.topic.clone(),
                    message: format!(
                        "not read to its end within {timeout:?}{}",
                        last_error
                            .map_or(String::new(), |e: KafkaError| format!(" (last error: {e})"))
                    ),
                });
            }
            match self.poll(Duration::from_millis(100)) {
                Ok(Some(change)) => {
                    f(change);
                    read += 1;
                }
                Ok(None) => {}
                // Connection errors pass (librdkafka reconnects); the
                // deadline bounds the wait.
                Err(e) => last_error = Some(e),
            }
        }
    }

    /// The next change, if one comes within `timeout`.
    pub fn poll(&self, timeout: Duration) -> Result<Option<KeyChange>, KafkaError> {
        match self.consumer.poll(timeout) {
            None => Ok(None),
            Some(Ok(m)) => Ok(Some(decode(m.key(), m.payload()))),
            Some(Err(e)) => Err(KafkaError::Client(e)),
        }
    }
}

/// Publishes a record for `public_key` (`None`: a tombstone) and waits for
/// the broker's acknowledgement.
pub fn publish_key(
    config: &KafkaConfig,
    topic: &str,
    public_key: &[u8; 32],
    record: Option<&KeyRecord>,
) -> Result<(), KafkaError> {
    let producer: BaseProducer<Delivered> = config
        .client(&[("enable.idempotence", "true"), ("acks", "all")])?
        .create_with_context(Delivered(Mutex::new(None)))?;
    let key = hex::encode(public_key);
    let value = record.map(KeyRecord::to_json);
    let mut r = BaseRecord::<String, String>::to(topic).key(&key);
    if let Some(v) = &value {
        r = r.payload(v);
    }
    producer.send(r).map_err(|(e, _)| KafkaError::Client(e))?;
    producer.flush(Duration::from_secs(30))?;
    match producer.context().0.lock().map(|d| d.clone()) {
        Ok(Some(Ok(()))) => Ok(()),
        Ok(Some(Err(e))) => Err(KafkaError::Topic {
            topic: topic.to_owned(),
            message: format!("the broker refused the record: {e}"),
        }),
        _ => Err(KafkaError::Topic {
            topic: topic.to_owned(),
            message: "no acknowledgement within 30 s".into(),
        }),
    }
}

/// Keeps the outcome of the one delivery.
struct Delivered(Mutex<Option<Result<(), String>>>);

impl ClientContext for Delivered {}

impl ProducerContext for Delivered {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(mut d) = self.0.lock() {
            *d = Some(result.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyChange, decode, retention_problem};

    /// One public key has one Kafka key: its lowercase hex. Compaction
    /// keeps the latest record per key bytes, so an uppercase spelling
    /// would keep a second history that survives the first's tombstone.
    #[test]
    fn a_key_record_is_read_only_under_its_lowercase_hex() {
        let lower = "ab".repeat(32);
        assert!(matches!(
            decode(Some(lower.as_bytes()), None),
            KeyChange::Record(k, None) if k == [0xab; 32]
        ));
        // Under an uppercase spelling: the key is made unusable (fail
        // closed), never given a second history.
        let upper = lower.to_uppercase();
        assert!(matches!(
            decode(Some(upper.as_bytes()), None),
            KeyChange::Invalid(Some(k), _) if k == [0xab; 32]
        ));
        assert!(matches!(
            decode(Some(b"not hex"), None),
            KeyChange::Invalid(None, _)
        ));
    }

    fn configs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_a_topic_that_keeps_every_key_record_is_accepted() {
        assert_eq!(
            retention_problem(&configs(&[("cleanup.policy", "compact")])),
            None
        );
        assert_eq!(
            retention_problem(&configs(&[
                ("cleanup.policy", "compact,delete"),
                ("retention.ms", "-1")
            ])),
            None
        );
        // Nothing set: the broker's default, delete after 7 days.
        let default = retention_problem(&[]).unwrap_or_default();
        assert!(default.contains("cleanup.policy=delete"), "{default}");
        let delete = retention_problem(&configs(&[("cleanup.policy", "delete")]));
        assert!(delete.is_some_and(|m| m.contains("revocation")));
        let both = retention_problem(&configs(&[
            ("cleanup.policy", "compact, delete"),
            ("retention.ms", "86400000"),
        ]))
        .unwrap_or_default();
        assert!(both.contains("retention.ms=86400000"), "{both}");
        assert!(
            retention_problem(&configs(&[("cleanup.policy", "compact,delete")]))
                .is_some_and(|m| m.contains("retention.ms=604800000"))
        );
        // Kept forever by time but deleted by size: refused too.
        let by_size = retention_problem(&configs(&[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "-1"),
            ("retention.bytes", "1073741824"),
        ]))
        .unwrap_or_default();
        assert!(by_size.contains("retention.bytes=1073741824"), "{by_size}");
        // Size limits do not apply to a compact-only topic.
        assert_eq!(
            retention_problem(&configs(&[
                ("cleanup.policy", "compact"),
                ("retention.bytes", "1073741824"),
            ])),
            None
        );
    }
}
