//! Settings shared by the Kafka source and sink.
//!
//! Every client built from a [`KafkaConfig`] is created through
//! [`Client`], which keeps the values of the pass-through properties out
//! of its errors: librdkafka's message for a property it refuses quotes
//! the value, and rust-rdkafka's appends it again, so a misspelled
//! `sasl.password` would print the password.

use std::fmt;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfig, FromClientConfigAndContext};

/// Where and how to reach Kafka.
///
/// Its `Debug` shows the names of the pass-through properties, never
/// their values (passwords, keys).
#[derive(Clone, PartialEq, Eq)]
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
    /// through as given. Their values never appear in an error.
    pub properties: Vec<(String, String)>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, _)| (k.as_str(), REDACTED))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("intents_topic", &self.intents_topic)
            .field("decisions_topic", &self.decisions_topic)
            .field("lineage_topic", &self.lineage_topic)
            .field("properties", &properties)
            .finish()
    }
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

    /// A librdkafka configuration ([`Client`]): the pass-through properties, then the
    /// ones given here, which the connector's guarantees depend on. A
    /// pass-through property that contradicts one of those is refused.
    ///
    /// Properties are compared under librdkafka's own names: an alias
    /// (`delivery.timeout.ms` for `message.timeout.ms`, say) names the
    /// same setting, and given beside the fixed one it would win or lose
    /// by the order rust-rdkafka applies them in, which is a hash map's.
    pub(crate) fn client(&self, fixed: &[(&str, &str)]) -> Result<Client, KafkaError> {
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
                // The value given is not shown, as none is in an error.
                return Err(KafkaError::Config(format!(
                    "`{k}`{alias} must be `{want}` for Warrant's delivery guarantees"
                )));
            }
            c.set(k, v);
        }
        for (k, v) in fixed {
            c.set(*k, *v);
        }
        let secrets = self.properties.iter().map(|(_, v)| v.clone()).collect();
        Ok(Client { config: c, secrets })
    }
}

/// What a redacted value is shown as.
const REDACTED: &str = "<redacted>";

/// A librdkafka configuration whose creation errors name a property but
/// never show a pass-through property's value.
///
/// INVARIANT: the only way to a client from a [`KafkaConfig`]; the
/// [`ClientConfig`] inside is not handed out.
pub(crate) struct Client {
    config: ClientConfig,
    /// The pass-through values.
    secrets: Vec<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.config.config_map().into_keys().collect();
        f.debug_struct("Client")
            .field("properties", &names)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Sets property `key` (a connector's own default or fixed value: not
    /// redacted from errors).
    pub(crate) fn set<K: Into<String>, V: Into<String>>(&mut self, key: K, value: V) -> &mut Self {
        self.config.set(key, value);
        self
    }

    /// The value set for `key`.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.config.get(key)
    }

    /// A consumer, producer or admin client.
    pub(crate) fn create<T: FromClientConfig>(&self) -> Result<T, KafkaError> {
        self.config.create().map_err(|e| self.redact(e))
    }

    /// A consumer or producer with `context`.
    pub(crate) fn create_with_context<C, T>(&self, context: C) -> Result<T, KafkaError>
    where
        C: ClientContext,
        T: FromClientConfigAndContext<C>,
    {
        self.config
            .create_with_context(context)
            .map_err(|e| self.redact(e))
    }

    /// `e` without any pass-through value in its message.
    fn redact(&self, e: rdkafka::error::KafkaError) -> KafkaError {
        redact_client_error(e, &self.secrets)
    }
}

/// A librdkafka client-creation error `e` without any of `values` (the
/// properties a user passed through) in its message: a refused property
/// is reported by name. For any client built from user-given properties
/// (`loadgen -X` too).
pub fn redact_client_error(e: rdkafka::error::KafkaError, values: &[String]) -> KafkaError {
    use rdkafka::error::KafkaError as Rd;
    match e {
        // rust-rdkafka's message is `{desc} {key} {value}`: the name is
        // kept, the value dropped, and librdkafka's `desc` (which quotes
        // the value) redacted.
        Rd::ClientConfig(_, desc, key, value) => KafkaError::Property {
            message: redact_str(values, &desc, &value),
            name: key,
        },
        Rd::ClientCreation(message) => {
            KafkaError::Config(format!("librdkafka: {}", redact_str(values, &message, "")))
        }
        other => KafkaError::Client(other),
    }
}

/// `text` with `value` and every one of `values` redacted, longest first
/// (a value inside another is not left half shown).
fn redact_str(values: &[String], text: &str, value: &str) -> String {
    let mut all: Vec<&str> = values.iter().map(String::as_str).collect();
    all.push(value);
    all.sort_by_key(|v| std::cmp::Reverse(v.len()));
    all.into_iter()
        .fold(text.to_owned(), |out, v| redact_value(&out, v))
}

/// `text` with every occurrence of `value` that is not part of a longer
/// word replaced by [`REDACTED`]: a user name `u` is taken out of
/// `user "u"`, not out of `routines`, nor `1` out of `10`.
fn redact_value(text: &str, value: &str) -> String {
    if value.is_empty() {
        return text.to_owned();
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let (first, last) = (value.chars().next(), value.chars().next_back());
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(rest) = text.get(at..)
        && let Some(c) = rest.chars().next()
    {
        let before = text.get(..at).and_then(|b| b.chars().next_back());
        let after = rest.get(value.len()..).and_then(|a| a.chars().next());
        if rest.starts_with(value) && !(word(before) && word(first)) && !(word(after) && word(last))
        {
            out.push_str(REDACTED);
            at += value.len();
        } else {
            out.push(c);
            at += c.len_utf8();
        }
    }
    out
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
    /// librdkafka refused a property (its value is not shown).
    #[error("kafka property `{name}`: {message}")]
    Property {
        /// The property's name, as given.
        name: String,
        /// librdkafka's reason, any property value in it redacted.
        message: String,
    },
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
    use rdkafka::producer::BaseProducer;

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
            assert!(!err.to_string().contains(v), "{err}");
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

    #[test]
    fn tls_and_scram_are_in_the_build() {
        // librdkafka checks these when the client is created, broker or
        // not: a build without OpenSSL refuses `SASL_SSL` ("OpenSSL not
        // available at build time") and SCRAM ("No provider for SASL
        // mechanism").
        for (protocol, mechanism) in [
            ("SASL_SSL", "SCRAM-SHA-256"),
            ("SASL_SSL", "SCRAM-SHA-512"),
            ("SASL_SSL", "PLAIN"),
            ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
        ] {
            let config = with(&[
                ("security.protocol", protocol),
                ("sasl.mechanism", mechanism),
                ("sasl.username", "warrant"),
                ("sasl.password", "secret"),
            ]);
            let created = config.client(FIXED).unwrap().create::<BaseProducer>();
            assert!(
                created.is_ok(),
                "{protocol} {mechanism}: {:?}",
                created.err()
            );
        }
        let created = with(&[("security.protocol", "ssl")])
            .client(FIXED)
            .unwrap()
            .create::<BaseProducer>();
        assert!(created.is_ok(), "ssl: {:?}", created.err());
    }

    #[test]
    fn a_property_value_never_appears_in_an_error() {
        // librdkafka's message for a property it refuses quotes the value;
        // rust-rdkafka's appends it again. Each case: the properties, and
        // the property the error must name (the last, refused when the
        // client is created, in librdkafka's words).
        let sasl = ("security.protocol", "SASL_SSL");
        for (props, name) in [
            (vec![("sasl.pasword", "hunter2secret")], "sasl.pasword"),
            (
                vec![("ssl.key.pasword", "hunter2secret")],
                "ssl.key.pasword",
            ),
            (
                vec![("security.protocol", "hunter2secret")],
                "security.protocol",
            ),
            (
                vec![sasl, ("sasl.mechanism", "hunter2secret")],
                "SASL mechanism",
            ),
        ] {
            let mut props = props;
            props.push(("sasl.password", "hunter2password"));
            let err = with(&props)
                .client(FIXED)
                .unwrap()
                .create::<BaseProducer>()
                .err()
                .unwrap_or_else(|| panic!("{name} refused"))
                .to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn a_value_is_redacted_where_it_stands_alone() {
        let text = r#"user "u", routines, u1 1 10 ü u"#;
        assert_eq!(
            redact_value(text, "u"),
            r#"user "<redacted>", routines, u1 1 10 ü <redacted>"#
        );
        assert_eq!(
            redact_value(text, "1"),
            r#"user "u", routines, u1 <redacted> 10 ü u"#
        );
        assert_eq!(redact_value("a=p@ss!", "p@ss!"), "a=<redacted>");
        assert_eq!(redact_value("x", ""), "x");
    }
}
