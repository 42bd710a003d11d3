//! Kafka: intents in through a consumer group, decisions and lineage out.
//!
//! - [`KafkaSource`] subscribes to the intents topic in a consumer group.
//!   Auto-commit is off: the engine commits an offset only after the sink
//!   has acknowledged every decision and lineage record covering it, so a
//!   crash re-reads what was not fully written (at least once).
//! - [`KafkaSink`] produces decisions keyed by intent id to the decisions
//!   topic and lineage records to the lineage topic, each on the partition
//!   of the intents they log (lineage is per intents partition). The
//!   producer is idempotent; [`transport::Sink::send`] returns only when
//!   the broker acknowledged the whole batch.
//!
//! Any librdkafka property can be passed through ([`KafkaConfig::properties`]);
//! the connector sets only what its guarantees depend on and refuses
//! overrides of those.
//!
//! [`transport::Sink::send`]: warrant_engine::transport::Sink::send

mod admin;
mod config;
mod keys;
mod sink;
mod source;

pub use admin::{
    LINEAGE_TOPIC_CONFIG, TopicsProbe, TopicsReport, check, check_topics, compaction_problem,
    create_topics, create_topics_with, fresh_topics, lineage_retention_problem, read_all,
    topic_config,
};
pub use config::{KafkaConfig, KafkaError, redact_client_error};
pub use keys::{KeyChange, KeyTopic, publish_key};
pub use sink::KafkaSink;
pub use source::{KafkaSource, Lag};
