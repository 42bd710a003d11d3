//! Topic creation, for tests, examples and first runs.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use super::KafkaError;

/// Creates `topics` with `partitions` partitions each (replication 1) on
/// `brokers`, blocking until the broker answers. Fails if any exists.
pub fn create_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<(), KafkaError> {
    create_topics_with(brokers, topics, partitions, &[])
}

/// [`create_topics`] with topic configuration (`cleanup.policy=compact`
/// for a keys topic, say).
pub fn create_topics_with(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            configs.iter().fold(
                NewTopic::new(t, partitions, TopicReplication::Fixed(1)),
                |n, (k, v)| n.set(k, v),
            )
        })
        .collect();
    for result in block_on(admin.create_topics(&new, &AdminOptions::new()))? {
        result.map_err(|(topic, code)| KafkaError::Topic {
            topic,
            message: format!("cannot create: {code}"),
        })?;
    }
    Ok(())
}

/// Runs one future to completion on this thread: the admin client's
/// futures are driven by librdkafka's own thread and only need waking.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// The configuration the broker reports for `topic`, as (name, value).
/// A broker may leave out settings at their defaults (Apache Kafka lists
/// them; Tansu lists only those set), so a missing name means the
/// broker's default.
pub fn topic_config(
    config: &super::KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(String, String)>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.client(&[])?.create()?;
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let results = block_on(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &opts))?;
    let resource = results
        .into_iter()
        .next()
        .ok_or_else(|| KafkaError::Topic {
            topic: topic.to_owned(),
            message: "the broker described no configuration".into(),
        })?
        .map_err(|code| KafkaError::Topic {
            topic: topic.to_owned(),
            message: format!("cannot read its configuration: {code}"),
        })?;
    Ok(resource
        .entries
        .into_iter()
        .filter_map(|e| e.value.map(|v| (e.name, v)))
        .collect())
}

/// What [`check`] found: each topic with its partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicsReport {
    /// (topic, partitions) for the intents, decisions and lineage topics.
    pub topics: Vec<(String, usize)>,
}

/// Connects to the brokers of `config` and checks the topics Warrant
/// needs: the intents, decisions and lineage topics exist, the lineage
/// topic has at least as many partitions as the intents topic (lineage is
/// kept per intents partition), it keeps every record
/// ([`lineage_retention_problem`]), and neither the intents nor the
/// decisions topic is compacted ([`compaction_problem`]). Errors say which.
pub fn check(config: &super::KafkaConfig, timeout: Duration) -> Result<TopicsReport, KafkaError> {
    let report = check_topics(config, timeout)?;
    for topic in [&config.intents_topic, &config.decisions_topic] {
        let configs = topic_config(config, topic, timeout)?;
        if let Some(problem) = compaction_problem(&configs) {
            return Err(KafkaError::Topic {
                topic: topic.clone(),
                message: problem,
            });
        }
    }
    let configs = topic_config(config, &config.lineage_topic, timeout)?;
    if let Some(problem) = lineage_retention_problem(&configs) {
        return Err(KafkaError::Topic {
            topic: config.lineage_topic.clone(),
            message: problem,
        });
    }
    Ok(report)
}

/// [`check`] without the lineage topic's configuration: metadata only.
/// Creates a client for the one check; a caller that checks again and
/// again keeps a [`TopicsProbe`] instead.
pub fn check_topics(
    config: &super::KafkaConfig,
    timeout: Duration,
) -> Result<TopicsReport, KafkaError> {
    TopicsProbe::new(config)?.check(timeout)
}

/// One client that checks the topics' metadata as often as asked, as a
/// running engine's broker probe does every few seconds: a new client
/// each time would open a connection, and librdkafka's threads, to the
/// brokers on every check. librdkafka reconnects by itself after a broker
/// comes back.
pub struct TopicsProbe {
    consumer: rdkafka::consumer::BaseConsumer,
    topics: [String; 3],
}

impl TopicsProbe {
    /// A client for the brokers and topics of `config` (it connects on
    /// its first check).
    pub fn new(config: &super::KafkaConfig) -> Result<Self, KafkaError> {
        Ok(TopicsProbe {
            consumer: config
                .client(&[("enable.auto.commit", "false")])?
                .create()?,
            topics: [
                config.intents_topic.clone(),
                config.decisions_topic.clone(),
                config.lineage_topic.clone(),
            ],
        })
    }

    /// The intents, decisions and lineage topics exist and the lineage
    /// topic has at least as many partitions as the intents topic; each
    /// metadata request waits at most `timeout`.
    pub fn check(&self, timeout: Duration) -> Result<TopicsReport, KafkaError> {
        use rdkafka::consumer::Consumer;
        let mut topics = Vec::new();
        for topic in &self.topics {
            let metadata = self.consumer.fetch_metadata(Some(topic), timeout)?;
            let n = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic.as_str() && t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            if n == 0 {
                return Err(KafkaError::Topic {
                    topic: topic.clone(),
                    message: "does not exist or has no partitions".into(),
                });
            }
            topics.push((topic.clone(), n));
        }
        if let [(intents, i), _, (lineage, l)] = topics.as_slice()
            && l < i
        {
            return Err(KafkaError::Topic {
                topic: lineage.clone(),
                message: format!(
                    "has {l} partitions; it needs at least as many as `{intents}` ({i})"
                ),
            });
        }
        Ok(TopicsReport { topics })
    }
}

/// Topic setting `name` as [`topic_config`] returned it, or Kafka's
/// default when the broker left it out (Tansu lists only what was set).
pub(crate) fn topic_setting<'a>(configs: &'a [(String, String)], name: &str) -> &'a str {
    configs.iter().find(|(k, _)| k == name).map_or_else(
        || match name {
            "cleanup.policy" => "delete",
            "retention.ms" => "604800000",
            "retention.bytes" => "-1",
            _ => "",
        },
        |(_, v)| v.trim(),
    )
}

/// Why an intents or decisions topic with this configuration could lose
/// records, if it could: both are keyed (by principal, by intent id), so
/// compaction keeps only the latest record per key. On the intents topic
/// that drops intents not yet decided (a lagging engine's backlog); on
/// the decisions topic, a signed deny anyone can obtain for any intent id
/// would replace that intent's authorization.
pub fn compaction_problem(configs: &[(String, String)]) -> Option<String> {
    let policy = topic_setting(configs, "cleanup.policy");
    policy.split(',').any(|p| p.trim() == "compact").then(|| {
        format!(
            "has cleanup.policy={policy}: compaction keeps only the latest record per key \
                 and would drop intents or decisions; use cleanup.policy=delete"
        )
    })
}

/// The settings a lineage topic must have: it is the append-only record of
/// every decision, and an engine taking a partition over resumes from its
/// last checkpoint, however old (an idle partition's may be weeks old).
pub const LINEAGE_TOPIC_CONFIG: [(&str, &str); 2] =
    [("retention.ms", "-1"), ("retention.bytes", "-1")];

/// Why a lineage topic with this configuration could lose records, if it
/// could. `configs` as [`topic_config`] returns them (a setting left out
/// is at the broker's default: `cleanup.policy=delete`, seven days).
pub fn lineage_retention_problem(configs: &[(String, String)]) -> Option<String> {
    let policy = topic_setting(configs, "cleanup.policy");
    let fix = "create it with retention.ms=-1 and retention.bytes=-1 (and no compaction), \
               or set those with kafka-configs.sh --alter";
    if policy.split(',').any(|p| p.trim() == "compact") {
        return Some(format!(
            "has cleanup.policy={policy}: compaction drops lineage records, and the chain \
             would no longer verify; {fix}"
        ));
    }
    for name in ["retention.ms", "retention.bytes"] {
        let value = topic_setting(configs, name);
        if value != "-1" {
            return Some(format!(
                "has {name}={value}: retention would delete lineage records, the audit trail \
                 of every decision, and a partition idle that long could not be taken over \
                 (its last checkpoint gone); {fix}"
            ));
        }
    }
    None
}

/// A configuration with a fresh consumer group and fresh intents,
/// decisions and lineage topics (`intents-<name>-<pid>-<µs>` and so on),
/// created with `partitions` partitions each: one isolated run of the
/// engine on a shared broker, as the tests and benchmarks need.
pub fn fresh_topics(
    brokers: &str,
    name: &str,
    partitions: i32,
) -> Result<super::KafkaConfig, KafkaError> {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() % 1_000_000_000_000);
    let unique = format!("{name}-{}-{micros}", std::process::id());
    let mut config = super::KafkaConfig::new(brokers);
    config.group_id = format!("g-{unique}");
    config.intents_topic = format!("intents-{unique}");
    config.decisions_topic = format!("decisions-{unique}");
    config.lineage_topic = format!("lineage-{unique}");
    create_topics(
        brokers,
        &[&config.intents_topic, &config.decisions_topic],
        partitions,
    )?;
    create_topics_with(
        brokers,
        &[&config.lineage_topic],
        partitions,
        &LINEAGE_TOPIC_CONFIG,
    )?;
    Ok(config)
}

/// Every message of `topic` as (partition, payload), in partition then
/// offset order: the whole topic as it was when called (its end offsets
/// are read first). An error if it cannot be read within `timeout`.
pub fn read_all(
    config: &super::KafkaConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(u32, Vec<u8>)>, KafkaError> {
    use rdkafka::message::Message;

    let consumer = whole_topic_reader(config, "audit", 50)?;
    let bounds = assign_from_start(&consumer, topic, "does not exist")?;
    let mut left: std::collections::HashMap<i32, i64> = bounds
        .iter()
        .filter(|(_, low, high)| high > low)
        .map(|(p, _, high)| (*p, *high))
        .collect();
    let mut out: Vec<(u32, i64, Vec<u8>)> = Vec::new();
    if left.is_empty() {
        return Ok(Vec::new());
    }
    let deadline = std::time::Instant::now() + timeout;
    let mut last_error = None;
    while !left.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::Topic {
                topic: topic.to_owned(),
                message: format!(
                    "not read to its end within {timeout:?}{}",
                    last_error.map_or(String::new(), |e: rdkafka::error::KafkaError| format!(
                        " (last error: {e})"
                    ))
                ),
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let p = m.partition();
                if let Some(end) = left.get(&p).copied() {
                    if m.offset() < end {
                        out.push((
                            u32::try_from(p).unwrap_or(u32::MAX),
                            m.offset(),
                            m.payload().unwrap_or_default().to_vec(),
                        ));
                    }
                    if m.offset() + 1 >= end {
                        left.remove(&p);
                    }
                }
            }
            // Connection errors (a broker that does not answer, one
            // coming back from an outage) pass: librdkafka reconnects, and
            // the deadline bounds the wait.
            Some(Err(e)) => last_error = Some(e),
            None => {}
        }
    }
    out.sort_by_key(|(p, o, _)| (*p, *o));
    Ok(out.into_iter().map(|(p, _, b)| (p, b)).collect())
}

/// A consumer that reads whole topics by assignment: a group id of its own
/// (`<group>.<purpose>`, never joined, never committed to), as librdkafka
/// requires one.
pub(crate) fn whole_topic_reader(
    config: &super::KafkaConfig,
    purpose: &str,
    fetch_wait_ms: u32,
) -> Result<rdkafka::consumer::BaseConsumer, KafkaError> {
    let group = format!("{}.{purpose}", config.group_id);
    config
        .client(&[
            ("enable.auto.commit", "false"),
            ("group.id", group.as_str()),
        ])?
        .set("fetch.wait.max.ms", fetch_wait_ms.to_string())
        .create()
}

/// Assigns every partition of `topic` to `consumer` from its first offset;
/// returns (partition, first offset, end offset) of each. An error saying
/// `missing` if the topic does not exist.
pub(crate) fn assign_from_start(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    missing: &str,
) -> Result<Vec<(i32, i64, i64)>, KafkaError> {
    use rdkafka::consumer::Consumer;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(KafkaError::Topic {
            topic: topic.to_owned(),
            message: missing.to_owned(),
        });
    }
    let mut tpl = TopicPartitionList::new();
    let mut bounds = Vec::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
        bounds.push((p, low, high));
    }
    consumer.assign(&tpl)?;
    Ok(bounds)
}

#[cfg(test)]
mod tests {
    use super::lineage_retention_problem;

    fn configs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_a_lineage_topic_that_keeps_every_record_is_accepted() {
        let keeps = configs(&[("retention.ms", "-1"), ("retention.bytes", "-1")]);
        assert_eq!(lineage_retention_problem(&keeps), None);
        let with_delete = configs(&[
            ("cleanup.policy", "delete"),
            ("retention.ms", "-1"),
            ("retention.bytes", "-1"),
        ]);
        assert_eq!(lineage_retention_problem(&with_delete), None);
        for (bad, named) in [
            (configs(&[]), "retention.ms=604800000"),
            (
                configs(&[("retention.ms", "-1"), ("retention.bytes", "1000000")]),
                "retention.bytes=1000000",
            ),
            (
                configs(&[
                    ("cleanup.policy", "compact"),
                    ("retention.ms", "-1"),
                    ("retention.bytes", "-1"),
                ]),
                "cleanup.policy=compact",
            ),
            (
                configs(&[
                    ("cleanup.policy", "delete, compact"),
                    ("retention.ms", "-1"),
                ]),
                "cleanup.policy=delete, compact",
            ),
        ] {
            let problem = lineage_retention_problem(&bad).unwrap_or_default();
            assert!(problem.contains(named), "{bad:?}: {problem}");
            assert!(problem.contains("retention.ms=-1"), "{problem}");
        }
    }
}
