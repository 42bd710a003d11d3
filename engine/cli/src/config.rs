//! `warrant.toml`: the configuration of `warrant run`.
//!
//! Every setting has a default, so an empty file is a valid configuration
//! (a broker on `127.0.0.1:9092`, the key, trust store and policy beside the
//! file). Unknown keys are errors, never ignored; durations are at most
//! one day (`engine.linger_us`: one second). Any setting can be
//! overridden from the environment: `WARRANT_<SECTION>_<KEY>` in upper
//! case, e.g. `WARRANT_KAFKA_BROKERS=kafka:9092` or
//! `WARRANT_ENGINE_MAX_BATCH=512`; librdkafka properties as
//! `WARRANT_KAFKA_PROPERTY_<NAME>` with dots as underscores, e.g.
//! `WARRANT_KAFKA_PROPERTY_SECURITY_PROTOCOL=SASL_SSL`.
//!
//! ```toml
//! [kafka]
//! brokers = "127.0.0.1:9092"
//! group_id = "warrant"
//! intents_topic = "warrant.intents"
//! decisions_topic = "warrant.decisions"
//! lineage_topic = "warrant.lineage"
//! sink_timeout_ms = 5000
//!
//! [kafka.properties]            # any librdkafka property, passed through
//! "security.protocol" = "SASL_SSL"
//!
//! [engine]
//! key_file = "engine.key"       # relative paths: beside this file
//! audience = "executor"
//! max_batch = 256
//! linger_us = 200
//! max_clock_skew_s = 30
//! max_intent_age_s = 300
//! max_validity_s = 3600         # longest authorization, whatever the rule
//! replay_capacity = 1048576
//! shed_after_ms = 100
//! checkpoint_interval_ms = 10
//! pin = true
//! emit_queue_batches = 64       # sealed groups waiting for the broker
//! peer_keys = []                # other engines' public keys (hex) whose
//!                               # lineage this one may continue
//!
//! [trust]
//! file = "trust.toml"
//! watch_ms = 1000               # reload on change; 0: never
//! topic = ""                    # a compacted keys topic layered over the
//!                               # file (e.g. "warrant.keys"); "": none
//!
//! [policy]
//! path = "policy"               # a file or a directory of *.toml
//! watch_ms = 1000               # reload on change; 0: never. A policy
//!                               # removed means deny all, not ready
//!
//! [admin]
//! listen = "127.0.0.1:9464"     # /metrics, /healthz, /readyz; "" = off
//! log_format = "text"           # or "json" (one object per line)
//! log_level = "info"            # or a tracing filter: "warrant=debug"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where intents come from and decisions go.
    pub kafka: Kafka,
    /// The engine's own settings.
    pub engine: Engine,
    /// Which keys sign for which principal.
    pub trust: Trust,
    /// The policy in force.
    pub policy: PolicySource,
    /// The admin HTTP port and the logs.
    pub admin: Admin,
}

/// `[kafka]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kafka {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer group of the engine instances.
    pub group_id: String,
    /// Topic intents are read from.
    pub intents_topic: String,
    /// Topic decisions are written to.
    pub decisions_topic: String,
    /// Topic lineage records and checkpoints are written to; at least as
    /// many partitions as the intents topic.
    pub lineage_topic: String,
    /// After this long without the broker acknowledging a batch, the
    /// engine reports itself not ready (it keeps retrying).
    pub sink_timeout_ms: u64,
    /// librdkafka properties passed through (SASL, TLS, timeouts, ...).
    /// TLS and SASL `PLAIN`/`SCRAM-SHA-256`/`SCRAM-SHA-512` are in the
    /// build, GSSAPI is not (SECURITY.md); the values never appear in an
    /// error of the Kafka client.
    pub properties: BTreeMap<String, String>,
}

impl Default for Kafka {
    fn default() -> Self {
        Kafka {
            brokers: "127.0.0.1:9092".into(),
            group_id: "warrant".into(),
            intents_topic: "warrant.intents".into(),
            decisions_topic: "warrant.decisions".into(),
            lineage_topic: "warrant.lineage".into(),
            sink_timeout_ms: 5_000,
            properties: BTreeMap::new(),
        }
    }
}

/// `[engine]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Engine {
    /// The engine's signing key (`warrant keygen` writes one).
    pub key_file: String,
    /// Audience written into every decision.
    pub audience: String,
    /// Most intents per batch.
    pub max_batch: usize,
    /// Longest a batch stays open, µs.
    pub linger_us: u64,
    /// How far in the future an intent's `issued_at` may be, s.
    pub max_clock_skew_s: u64,
    /// How old an intent may be when read, s.
    pub max_intent_age_s: u64,
    /// Longest validity any authorization gets, s.
    pub max_validity_s: u64,
    /// Nonces remembered per partition.
    pub replay_capacity: usize,
    /// How long a full batch waits for room before it is shed, ms.
    pub shed_after_ms: u64,
    /// Shortest time between two checkpoints of one partition, ms.
    pub checkpoint_interval_ms: u64,
    /// Pin stages to cores (from 4 cores; below that nothing is pinned).
    pub pin: bool,
    /// Sealed groups that may wait for the broker: while it acknowledges
    /// one send, later groups queue here and leave merged in the next.
    pub emit_queue_batches: usize,
    /// Public keys (64 hex digits) of other engines whose lineage this one
    /// may continue: the other instances of the group if they do not share
    /// this key file, and previous keys after a rotation. Empty: only this
    /// engine's own key.
    pub peer_keys: Vec<String>,
}

impl Default for Engine {
    fn default() -> Self {
        let d = warrant_engine::pipeline::Config::default();
        Engine {
            key_file: "engine.key".into(),
            audience: d.audience,
            max_batch: d.max_batch,
            linger_us: u64::try_from(d.linger.as_micros()).unwrap_or(u64::MAX),
            max_clock_skew_s: d.max_clock_skew.as_secs(),
            max_intent_age_s: d.max_intent_age.as_secs(),
            max_validity_s: d.max_validity.as_secs(),
            replay_capacity: d.replay_capacity,
            shed_after_ms: u64::try_from(d.shed_after.as_millis()).unwrap_or(u64::MAX),
            checkpoint_interval_ms: u64::try_from(d.checkpoint_interval.as_millis())
                .unwrap_or(u64::MAX),
            pin: true,
            emit_queue_batches: 64,
            peer_keys: Vec::new(),
        }
    }
}

/// `[trust]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trust {
    /// Trust store file (`[[key]] principal, public_key, status`).
    pub file: String,
    /// How often to look for changes to the file, ms (0: never). A changed
    /// file that loads replaces the running one; one that does not is
    /// logged and the running one stays.
    pub watch_ms: u64,
    /// A compacted Kafka topic of key records (keyed by public key, JSON
    /// values; `warrant keys` writes them) layered over the file:
    /// a record overrides the file's entry for its key. Read to its end
    /// before the engine starts, then followed: a revocation applies from
    /// the moment it is read. A topic that retention can empty (not
    /// `cleanup.policy=compact`) is refused. Empty: no topic.
    pub topic: String,
}

impl Default for Trust {
    fn default() -> Self {
        Trust {
            file: "trust.toml".into(),
            watch_ms: 1_000,
            topic: String::new(),
        }
    }
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySource {
    /// Policy file, or directory of `*.toml` files.
    pub path: String,
    /// How often to look for changes, ms (0: never). A changed policy
    /// that compiles replaces the running one; one that does not is
    /// logged and the running one stays. A policy removed leaves the
    /// engine with none: every intent is denied "no policy" and the
    /// engine reports not ready until it is back.
    pub watch_ms: u64,
}

impl Default for PolicySource {
    fn default() -> Self {
        PolicySource {
            path: "policy".into(),
            watch_ms: 1_000,
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admin {
    /// Address of the admin HTTP port (`/metrics`, `/healthz`,
    /// `/readyz`); empty: no port. Port 0 picks a free one (logged).
    pub listen: String,
    /// `text` or `json`.
    pub log_format: String,
    /// `error`, `warn`, `info`, `debug`, `trace`, or a `tracing` filter
    /// (`warrant=debug,rdkafka=warn`). `WARRANT_LOG` overrides it too.
    pub log_level: String,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen: "127.0.0.1:9464".into(),
            log_format: "text".into(),
            log_level: "info".into(),
        }
    }
}

/// Why a configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or not this schema.
    #[error("{origin}: {message}")]
    Invalid {
        /// File name, or the environment variable at fault.
        origin: String,
        /// What is wrong, with the line when there is one.
        message: String,
    },
}

/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "WARRANT_";

/// This process's `WARRANT_*` environment variables, for [`Config::load`].
/// Other variables are skipped whatever they hold (`std::env::vars` would
/// panic on one that is not Unicode); a `WARRANT_*` one whose value is not
/// UTF-8 is an error naming it.
pub fn warrant_env() -> Result<Vec<(String, String)>, ConfigError> {
    warrant_vars(std::env::vars_os())
}

fn warrant_vars(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Invalid {
            origin: name.to_owned(),
            message: "the value is not UTF-8 text".into(),
        })?;
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

/// The sections, as they appear in environment variable names.
const SECTIONS: [&str; 5] = ["kafka", "engine", "trust", "policy", "admin"];

impl Config {
    /// Reads `path`, applies overrides from `env` (name, value pairs;
    /// pass [`warrant_env`]), and checks the result. Relative paths in
    /// it are resolved against `path`'s directory.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, &path.display().to_string(), env)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base);
        Ok(config)
    }

    /// Parses `text` (named `origin` in errors) and applies `env` overrides.
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // The file alone first: its errors then carry line and column.
        let invalid = |e: toml::de::Error| ConfigError::Invalid {
            origin: origin.to_owned(),
            message: located(text, &e),
        };
        toml::from_str::<Config>(text).map_err(invalid)?;
        let mut table: toml::Table = toml::from_str(text).map_err(invalid)?;
        // (variable, the setting it replaced), in the order applied.
        let mut applied: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            if let Some(setting) = apply_env(&mut table, &name, &value)? {
                applied.push((name, setting));
            }
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    origin: if applied.is_empty() {
                        origin.to_owned()
                    } else {
                        let names: Vec<&str> = applied.iter().map(|(n, _)| n.as_str()).collect();
                        format!("{origin} with {}", names.join(", "))
                    },
                    message: e.message().to_owned(),
                })?;
        config.check().map_err(|fault| ConfigError::Invalid {
            origin: blame(origin, &applied, &fault.setting),
            message: fault.message,
        })?;
        Ok(config)
    }

    /// Checks what serde cannot: ranges and non-empty names.
    fn check(&self) -> Result<(), Fault> {
        self.check_settings().map_err(|(setting, message)| Fault {
            setting: setting.to_owned(),
            message,
        })?;
        // What `Engine::start` would refuse, refused here, before `run`
        // touches the broker (and by `run --check`).
        self.engine_config(1).check().map_err(|e| Fault {
            setting: "engine".into(),
            message: format!("[engine]: {e}"),
        })
    }

    /// [`Config::check`] setting by setting: the first one refused, by
    /// name, and why.
    fn check_settings(&self) -> Result<(), (&'static str, String)> {
        let k = &self.kafka;
        for (name, v) in [
            ("kafka.brokers", &k.brokers),
            ("kafka.group_id", &k.group_id),
            ("kafka.intents_topic", &k.intents_topic),
            ("kafka.decisions_topic", &k.decisions_topic),
            ("kafka.lineage_topic", &k.lineage_topic),
            ("engine.key_file", &self.engine.key_file),
            ("engine.audience", &self.engine.audience),
            ("trust.file", &self.trust.file),
            ("policy.path", &self.policy.path),
        ] {
            if v.trim().is_empty() {
                return Err((name, format!("`{name}` must not be empty")));
            }
        }
        if !(1..=65_536).contains(&self.engine.max_batch) {
            return Err((
                "engine.max_batch",
                format!(
                    "`engine.max_batch` must be 1 to 65536, not {}",
                    self.engine.max_batch
                ),
            ));
        }
        if k.sink_timeout_ms == 0 {
            return Err((
                "kafka.sink_timeout_ms",
                "`kafka.sink_timeout_ms` must be at least 1".into(),
            ));
        }
        // Durations are added to `Instant::now()` (here and in the
        // connectors), which panics past the clock's range: each is
        // bounded to what can make sense.
        let e = &self.engine;
        for (name, value, max, unit) in [
            (
                "kafka.sink_timeout_ms",
                k.sink_timeout_ms,
                DAY_S * 1_000,
                "one day",
            ),
            ("engine.linger_us", e.linger_us, 1_000_000, "one second"),
            (
                "engine.max_clock_skew_s",
                e.max_clock_skew_s,
                DAY_S,
                "one day",
            ),
            (
                "engine.max_intent_age_s",
                e.max_intent_age_s,
                DAY_S,
                "one day",
            ),
            ("engine.max_validity_s", e.max_validity_s, DAY_S, "one day"),
            (
                "engine.shed_after_ms",
                e.shed_after_ms,
                DAY_S * 1_000,
                "one day",
            ),
            (
                "engine.checkpoint_interval_ms",
                e.checkpoint_interval_ms,
                DAY_S * 1_000,
                "one day",
            ),
            (
                "trust.watch_ms",
                self.trust.watch_ms,
                DAY_S * 1_000,
                "one day",
            ),
            (
                "policy.watch_ms",
                self.policy.watch_ms,
                DAY_S * 1_000,
                "one day",
            ),
        ] {
            if value > max {
                return Err((
                    name,
                    format!("`{name}` must be at most {max} ({unit}), not {value}"),
                ));
            }
        }
        if e.replay_capacity == 0 {
            return Err((
                "engine.replay_capacity",
                "`engine.replay_capacity` must be at least 1".into(),
            ));
        }
        self.peer_keys().map_err(|m| ("engine.peer_keys", m))?;
        let a = &self.admin;
        if !a.listen.trim().is_empty() && a.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "admin.listen",
                format!(
                    "`admin.listen` must be an address like 127.0.0.1:9464 (or empty), not `{}`",
                    a.listen
                ),
            ));
        }
        if !["text", "json"].contains(&a.log_format.as_str()) {
            return Err((
                "admin.log_format",
                format!(
                    "`admin.log_format` must be `text` or `json`, not `{}`",
                    a.log_format
                ),
            ));
        }
        Ok(())
    }

    /// `engine.peer_keys`, decoded.
    pub fn peer_keys(&self) -> Result<Vec<[u8; 32]>, String> {
        self.engine
            .peer_keys
            .iter()
            .map(|k| {
                hex::decode(k.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| format!("`engine.peer_keys`: `{k}` is not 64 hex digits"))
            })
            .collect()
    }

    /// Makes relative file paths relative to `base`.
    fn resolve(&mut self, base: &Path) {
        for p in [
            &mut self.engine.key_file,
            &mut self.trust.file,
            &mut self.policy.path,
        ] {
            if Path::new(p.as_str()).is_relative() {
                *p = base.join(p.as_str()).display().to_string();
            }
        }
    }

    /// The Kafka connector settings.
    #[cfg(feature = "kafka")]
    pub fn kafka_config(&self) -> warrant_connectors::kafka::KafkaConfig {
        let k = &self.kafka;
        warrant_connectors::kafka::KafkaConfig {
            brokers: k.brokers.clone(),
            group_id: k.group_id.clone(),
            intents_topic: k.intents_topic.clone(),
            decisions_topic: k.decisions_topic.clone(),
            lineage_topic: k.lineage_topic.clone(),
            properties: k
                .properties
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect(),
        }
    }

    /// The engine pipeline settings (`partitions` is the intents topic's).
    pub fn engine_config(&self, partitions: u32) -> warrant_engine::pipeline::Config {
        use warrant_engine::pipeline::{Config as P, Layout};
        let e = &self.engine;
        P {
            max_batch: e.max_batch,
            linger: Duration::from_micros(e.linger_us),
            partitions,
            audience: e.audience.clone(),
            max_clock_skew: Duration::from_secs(e.max_clock_skew_s),
            max_intent_age: Duration::from_secs(e.max_intent_age_s),
            max_validity: Duration::from_secs(e.max_validity_s),
            replay_capacity: e.replay_capacity,
            layout: if e.pin {
                Layout::auto()
            } else {
                Layout::unpinned(std::thread::available_parallelism().map_or(1, |n| n.get()))
            },
            shed_after: Duration::from_millis(e.shed_after_ms),
            checkpoint_interval: Duration::from_millis(e.checkpoint_interval_ms),
            peer_engine_keys: self.peer_keys().unwrap_or_default(),
            emit_queue_batches: e.emit_queue_batches,
            ..P::default()
        }
    }
}

/// Seconds in a day: the longest any duration setting may be.
const DAY_S: u64 = 86_400;

/// A setting [`Config::check`] refused.
#[derive(Debug)]
struct Fault {
    /// `section.key`, or a whole `section`.
    setting: String,
    /// Why.
    message: String,
}

/// Where a refused `setting` came from, for the error: the environment
/// variable that set it if one did, else the file `origin` (with the
/// variables applied to the section when `setting` is a whole section).
fn blame(origin: &str, applied: &[(String, String)], setting: &str) -> String {
    if setting.contains('.') {
        return applied
            .iter()
            .rev()
            .find(|(_, s)| s == setting)
            .map_or_else(|| origin.to_owned(), |(name, _)| name.clone());
    }
    let names: Vec<&str> = applied
        .iter()
        .filter(|(_, s)| s.split('.').next() == Some(setting))
        .map(|(name, _)| name.as_str())
        .collect();
    if names.is_empty() {
        origin.to_owned()
    } else {
        format!("{origin} with {}", names.join(", "))
    }
}

/// Applies one environment variable to `table` if it is an override:
/// the setting it replaced (`section.key`) if it was. Values take the
/// type of the setting they replace.
fn apply_env(
    table: &mut toml::Table,
    name: &str,
    value: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(None);
    };
    let lower = rest.to_ascii_lowercase();
    let Some(section) = SECTIONS
        .iter()
        .find(|s| lower.starts_with(&format!("{s}_")))
    else {
        return Ok(None);
    };
    let key = &lower[section.len() + 1..];
    let invalid = |message: String| ConfigError::Invalid {
        origin: name.to_owned(),
        message,
    };
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(section_table) = entry else {
        return Err(invalid(format!("`{section}` in the file is not a table")));
    };
    if *section == "kafka"
        && let Some(property) = key.strip_prefix("property_")
    {
        let props = section_table
            .entry("properties")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(props) = props else {
            return Err(invalid(
                "`kafka.properties` in the file is not a table".into(),
            ));
        };
        let property = property.replace('_', ".");
        let setting = format!("kafka.properties.{property}");
        props.insert(property, toml::Value::String(value.to_owned()));
        return Ok(Some(setting));
    }
    // The type of the setting replaced, from the defaults.
    let defaults =
        toml::Table::try_from(Config::default()).map_err(|e| invalid(format!("internal: {e}")))?;
    let default = defaults
        .get(*section)
        .and_then(|s| s.as_table())
        .and_then(|s| s.get(key))
        .ok_or_else(|| invalid(format!("no setting `{section}.{key}`")))?;
    let parsed = match default {
        toml::Value::Integer(_) => value
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|e| {
                use std::num::IntErrorKind::{NegOverflow, PosOverflow};
                invalid(match e.kind() {
                    PosOverflow | NegOverflow => format!(
                        "`{value}` is out of range (settings are at most {})",
                        i64::MAX
                    ),
                    _ => format!("`{value}` is not an integer"),
                })
            })?,
        toml::Value::Boolean(_) => match value.trim() {
            "true" | "1" => toml::Value::Boolean(true),
            "false" | "0" => toml::Value::Boolean(false),
            _ => return Err(invalid(format!("`{value}` is not true or false"))),
        },
        // Lists: comma-separated.
        toml::Value::Array(_) => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| toml::Value::String(v.to_owned()))
                .collect(),
        ),
        _ => toml::Value::String(value.to_owned()),
    };
    section_table.insert(key.to_owned(), parsed);
    Ok(Some(format!("{section}.{key}")))
}

/// A TOML error as "line L, column C: what", without the excerpt of the
/// file that `toml` prints under it: the line may hold a secret
/// (`sasl.password = hunter2`, unquoted), and errors reach logs.
fn located(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;

    #[test]
    fn environment_that_is_not_unicode_is_skipped_or_named_never_a_panic() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let bad = || OsString::from_vec(vec![b'x', 0xff]);
        // Someone else's variable: skipped (std::env::vars() panics on it).
        let got = warrant_vars([
            (OsString::from("LANGX"), bad()),
            (OsString::from_vec(vec![0xff]), OsString::from("1")),
            (
                OsString::from("WARRANT_ENGINE_MAX_BATCH"),
                OsString::from("512"),
            ),
        ])
        .unwrap();
        assert_eq!(got, env(&[("WARRANT_ENGINE_MAX_BATCH", "512")]));
        // A setting of ours: an error that names it.
        let err = warrant_vars([(OsString::from("WARRANT_KAFKA_BROKERS"), bad())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "WARRANT_KAFKA_BROKERS: the value is not UTF-8 text"
        );
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn an_empty_file_is_the_documented_defaults() {
        let c = Config::parse("", "t", env(&[])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(c.engine.max_batch, 256);
        assert_eq!(c.engine.linger_us, 200);
        assert_eq!(c.engine.max_intent_age_s, 300);
    }

    #[test]
    fn the_example_in_the_module_docs_parses() {
        let doc = include_str!("config.rs");
        let start = doc.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let end = start + doc[start..].find("//! ```\n").unwrap();
        let text: String = doc[start..end]
            .lines()
            .map(|l| l.trim_start_matches("//!").trim_start())
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&text, "docs", env(&[])).unwrap();
        let mut expected = Config::default();
        expected
            .kafka
            .properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        assert_eq!(c, expected, "the documented defaults drifted from the code");
    }

    #[test]
    fn settings_the_engine_would_refuse_are_refused_when_read() {
        for (setting, want) in [
            (
                "max_validity_s = 0",
                "max validity must be longer than zero",
            ),
            (
                "max_intent_age_s = 0",
                "max intent age must be at least 1 s",
            ),
        ] {
            let e = Config::parse(&format!("[engine]\n{setting}\n"), "w.toml", env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{setting}: {e}");
        }
        let long = "a".repeat(4_096);
        let e = Config::parse(
            &format!("[engine]\naudience = \"{long}\"\n"),
            "w.toml",
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("audience must be 1 to"), "{e}");
    }

    #[test]
    fn a_syntax_error_names_its_line_but_never_shows_it() {
        let text =
            "[kafka]\nbrokers = \"a:1\"\n\n[kafka.properties]\n\"sasl.password\" = hunter2\n";
        let m = Config::parse(text, "w.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("w.toml: line 5, column "), "{m}");
        assert!(!m.contains("hunter2"), "{m}");
    }

    #[test]
    fn unknown_keys_are_errors_with_their_line() {
        let e = Config::parse("[engine]\nmax_bach = 3\n", "w.toml", env(&[])).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("w.toml") && m.contains("max_bach"), "{m}");
        assert!(m.contains("line 2"), "{m}");
        let e = Config::parse("[enigne]\n", "w.toml", env(&[])).unwrap_err();
        assert!(e.to_string().contains("enigne"), "{e}");
    }

    #[test]
    fn environment_overrides_take_the_setting_type() {
        let c = Config::parse(
            "[kafka]\nbrokers = \"a:1\"\n",
            "t",
            env(&[
                ("WARRANT_KAFKA_BROKERS", "b:2"),
                ("WARRANT_KAFKA_GROUP_ID", "123"),
                ("WARRANT_ENGINE_MAX_BATCH", "512"),
                ("WARRANT_ENGINE_PIN", "false"),
                ("WARRANT_KAFKA_PROPERTY_SASL_MECHANISMS", "PLAIN"),
                ("WARRANT_BROKER_PORT", "9"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka.brokers, "b:2");
        assert_eq!(c.kafka.group_id, "123");
        assert_eq!(c.engine.max_batch, 512);
        assert!(!c.engine.pin);
        assert_eq!(c.kafka.properties["sasl.mechanisms"], "PLAIN");
        let key = "ab".repeat(32);
        let c = Config::parse(
            "",
            "t",
            env(&[("WARRANT_ENGINE_PEER_KEYS", &format!("{key}, {key}"))]),
        )
        .unwrap();
        assert_eq!(c.peer_keys().unwrap(), vec![[0xab; 32]; 2]);
        assert_eq!(c.engine_config(4).peer_engine_keys, vec![[0xab; 32]; 2]);
        let e = Config::parse("[engine]\npeer_keys = [\"abc\"]", "t", env(&[])).unwrap_err();
        assert!(e.to_string().contains("`abc` is not 64 hex digits"), "{e}");
    }

    #[test]
    fn bad_overrides_name_the_variable() {
        for (name, value, want) in [
            ("WARRANT_ENGINE_MAX_BATCH", "many", "not an integer"),
            ("WARRANT_ENGINE_NOPE", "1", "no setting `engine.nope`"),
            ("WARRANT_ENGINE_PIN", "maybe", "not true or false"),
        ] {
            let e = Config::parse("", "t", env(&[(name, value)])).unwrap_err();
            let m = e.to_string();
            assert!(m.contains(name) && m.contains(want), "{m}");
        }
    }

    #[test]
    fn ranges_are_checked() {
        for text in [
            "[engine]\nmax_batch = 0",
            "[engine]\nmax_batch = 70000",
            "[kafka]\nbrokers = \"\"",
            "[kafka]\nsink_timeout_ms = 0",
        ] {
            assert!(Config::parse(text, "t", env(&[])).is_err(), "{text}");
        }
    }

    #[test]
    fn durations_are_bounded_by_name_from_the_file_and_the_environment() {
        for (section, key, max) in [
            ("kafka", "sink_timeout_ms", 86_400_000u64),
            ("engine", "linger_us", 1_000_000),
            ("engine", "max_clock_skew_s", 86_400),
            ("engine", "max_intent_age_s", 86_400),
            ("engine", "max_validity_s", 86_400),
            ("engine", "shed_after_ms", 86_400_000),
            ("engine", "checkpoint_interval_ms", 86_400_000),
            ("trust", "watch_ms", 86_400_000),
            ("policy", "watch_ms", 86_400_000),
        ] {
            let setting = format!("`{section}.{key}` must be at most {max}");
            Config::parse(&format!("[{section}]\n{key} = {max}\n"), "w.toml", env(&[]))
                .unwrap_or_else(|e| panic!("{section}.{key} = {max}: {e}"));
            let e = Config::parse(
                &format!("[{section}]\n{key} = {}\n", max + 1),
                "w.toml",
                env(&[]),
            )
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("w.toml: ") && e.contains(&setting), "{e}");
            // `Instant::now() + d` panics for this one.
            let var = format!("WARRANT_{}_{}", section, key).to_uppercase();
            let e = Config::parse("", "w.toml", env(&[(&var, "9223372036854775807")]))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("{var}: ")) && e.contains(&setting),
                "{e}"
            );
        }
    }

    #[test]
    fn a_setting_refused_names_the_variable_that_set_it() {
        let nonsense = "`admin.listen` must be an address";
        let e = Config::parse(
            "[admin]\nlog_format = \"json\"\n",
            "w.toml",
            env(&[
                ("WARRANT_KAFKA_BROKERS", "k:9092"),
                ("WARRANT_ADMIN_LISTEN", "nonsense"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("WARRANT_ADMIN_LISTEN: ") && e.contains(nonsense),
            "{e}"
        );
        // From the file: the file, even with other variables set.
        let e = Config::parse(
            "[admin]\nlisten = \"nonsense\"\n",
            "w.toml",
            env(&[("WARRANT_KAFKA_BROKERS", "k:9092")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("w.toml: ") && e.contains(nonsense), "{e}");
        // The engine's own check of its section: the variables that set
        // something in it.
        let e = Config::parse(
            "",
            "w.toml",
            env(&[
                ("WARRANT_KAFKA_BROKERS", "k:9092"),
                ("WARRANT_ENGINE_MAX_VALIDITY_S", "0"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("w.toml with WARRANT_ENGINE_MAX_VALIDITY_S: "),
            "{e}"
        );
        let e = Config::parse("", "w.toml", env(&[("WARRANT_ENGINE_PEER_KEYS", "abc")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("WARRANT_ENGINE_PEER_KEYS: "), "{e}");
    }

    #[test]
    fn an_integer_past_what_toml_holds_is_out_of_range() {
        for value in [
            "9223372036854775808",
            "99999999999999999999",
            "-9223372036854775809",
        ] {
            let e = Config::parse("", "t", env(&[("WARRANT_KAFKA_SINK_TIMEOUT_MS", value)]))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("WARRANT_KAFKA_SINK_TIMEOUT_MS: ") && e.contains("out of range"),
                "{e}"
            );
        }
    }

    #[test]
    fn relative_paths_are_beside_the_file() {
        let dir = std::env::temp_dir().join(format!("warrant-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("warrant.toml");
        std::fs::write(&path, "[trust]\nfile = \"/etc/trust.toml\"\n").unwrap();
        let c = Config::load(&path, env(&[])).unwrap();
        assert_eq!(c.trust.file, "/etc/trust.toml");
        assert_eq!(Path::new(&c.engine.key_file), dir.join("engine.key"));
        assert_eq!(Path::new(&c.policy.path), dir.join("policy"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
