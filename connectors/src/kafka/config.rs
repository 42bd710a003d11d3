//! Settings shared by the Kafka source and sink.

use rdkafka::config::ClientConfig;

/// Where and how to reach Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// Consumer group of the engine instances.
    pub group_id: String,
    /// Topic intents are read from.
    pub intents_topic: String,
    /// Topic decisions are written to.
    pub decisions_topic: String,
    /// Topic lineage records and checkpoints are written to.
    pub lineage_topic: String,
    /// Further librdkafka properties (SASL, TLS, timeouts, ...), passed
    /// through as given.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Topic names `warrant.intents`, `warrant.decisions`,
    /// `warrant.lineage`, group `warrant`.
    pub fn new(brokers: &str) -> Self {
        KafkaConfig {
            brokers: brokers.to_owned(),
            group_id: "warrant".into(),
            intents_topic: "warrant.intents".into(),
            decisions_topic: "warrant.decisions".into(),
            lineage_topic: "warrant.lineage".into(),
            properties: Vec::new(),
        }
    }

    /// A librdkafka configuration: the pass-through properties, then the
    /// ones given here, which the connector's guarantees depend on. A
    /// pass-through property that contradicts one of those is refused.
    pub(crate) fn client(&self, fixed: &[(&str, &str)]) -> Result<ClientConfig, KafkaError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            if let Some((_, want)) = fixed.iter().find(|(f, _)| f == k)
                && want != v
            {
                return Err(KafkaError::Config(format!(
                    "`{k}` must be `{want}` for Warrant's delivery guarantees, not `{v}`"
                )));
            }
            c.set(k, v);
        }
        for (k, v) in fixed {
            c.set(*k, *v);
        }
        Ok(c)
    }
}

/// Why a Kafka connector could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A setting is unusable.
    #[error("kafka configuration: {0}")]
    Config(String),
    /// librdkafka refused or failed.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The intents topic could not be described.
    #[error("kafka topic `{topic}`: {message}")]
    Topic {
        /// Topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
}
