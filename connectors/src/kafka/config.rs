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
    ///
    /// Properties are compared under librdkafka's own names: an alias
    /// (`delivery.timeout.ms` for `message.timeout.ms`, say) names the
    /// same setting, and given beside the fixed one it would win or lose
    /// by the order rust-rdkafka applies them in, which is a hash map's.
    pub(crate) fn client(&self, fixed: &[(&str, &str)]) -> Result<ClientConfig, KafkaError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            let name = canonical(k);
            if name == "group.id" {
                // The source's group and the lineage reader's own each
                // need a different one; a pass-through value would clash
                // with one of them.
                return Err(KafkaError::Config(format!(
                    "`{k}` is set by `[kafka] group_id` (`KafkaConfig::group_id`), not among \
                     the librdkafka properties"
                )));
            }
            if let Some((_, want)) = fixed.iter().find(|(f, _)| canonical(f) == name) {
                if same_value(name, want, v) {
                    // Set below under the fixed name, once.
                    continue;
                }
                let alias = if name == k.as_str() {
                    String::new()
                } else {
                    format!(" (librdkafka's name for `{name}`)")
                };
                return Err(KafkaError::Config(format!(
                    "`{k}`{alias} must be `{want}` for Warrant's delivery guarantees, not `{v}`"
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

/// librdkafka's aliases of the properties the connectors fix, mapped to
/// one name (`acks` is itself librdkafka's alias of
/// `request.required.acks`).
fn canonical(name: &str) -> &str {
    match name {
        "delivery.timeout.ms" => "message.timeout.ms",
        "request.required.acks" => "acks",
        "auto.commit.enable" => "enable.auto.commit",
        other => other,
    }
}

/// Whether two values of property `name` mean the same.
fn same_value(name: &str, a: &str, b: &str) -> bool {
    let norm = |v: &str| match (name, v.trim().to_ascii_lowercase().as_str()) {
        ("acks", "-1") => "all".to_owned(),
        ("auto.offset.reset", "smallest" | "beginning") => "earliest".to_owned(),
        (_, v) => v.to_owned(),
    };
    norm(a) == norm(b)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    fn with(props: &[(&str, &str)]) -> KafkaConfig {
        let mut c = KafkaConfig::new("127.0.0.1:1");
        c.properties = props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        c
    }

    const FIXED: &[(&str, &str)] = &[("acks", "all"), ("message.timeout.ms", "0")];

    #[test]
    fn an_alias_cannot_undo_a_fixed_property() {
        // Each of these once reached librdkafka beside the fixed property
        // and won about half the time (hash map order).
        for (k, v) in [
            ("delivery.timeout.ms", "120000"),
            ("request.required.acks", "1"),
            ("acks", "1"),
        ] {
            let err = with(&[(k, v)]).client(FIXED).expect_err("refused");
            assert!(err.to_string().contains(&format!("`{k}`")), "{err}");
        }
        let err = with(&[("delivery.timeout.ms", "5")])
            .client(FIXED)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("(librdkafka's name for `message.timeout.ms`)"),
            "{err}"
        );
        // The same value under any name is fine, and set once, fixed.
        let c = with(&[
            ("request.required.acks", "-1"),
            ("delivery.timeout.ms", "0"),
        ])
        .client(FIXED)
        .unwrap();
        assert_eq!(c.get("request.required.acks"), None);
        assert_eq!(c.get("delivery.timeout.ms"), None);
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("0"));
        // The consumer group is `group_id`'s alone.
        let err = with(&[("group.id", "other")]).client(FIXED).err().unwrap();
        assert!(err.to_string().contains("[kafka] group_id"), "{err}");
        // A value's synonyms are the same value.
        let c = with(&[("auto.offset.reset", "Smallest")])
            .client(&[("auto.offset.reset", "earliest")])
            .unwrap();
        assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
        assert!(
            with(&[("auto.offset.reset", "latest")])
                .client(&[("auto.offset.reset", "earliest")])
                .is_err()
        );
        // Anything else passes through.
        let c = with(&[("security.protocol", "SASL_SSL")])
            .client(FIXED)
            .unwrap();
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
    }
}
