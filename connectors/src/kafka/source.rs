//! Intents in: a consumer in a consumer group, handing partitions between
//! engine instances cleanly.
//!
//! # Rebalances
//!
//! Partitions move between the instances of a group when one joins, leaves
//! or dies. Each partition has engine state that must move with it: its
//! lineage chain and its replay memory, both recovered from the lineage
//! topic. The source does the handing over from librdkafka's
//! rebalance callback, which runs inside [`Source::poll`] on the engine's
//! ingest thread:
//!
//! - **revoked**: it waits ([`Handover::release`]) until everything the
//!   engine read is decided, emitted and acknowledged, commits those offsets
//!   synchronously, drops the revoked partitions' records the engine holds
//!   but has not yet handed to its pipeline (uncommitted: the next owner
//!   reads them again), and tells the engine to drop their state. Only
//!   then does the group move on, so two instances never append to one
//!   lineage log at once. If the engine cannot finish in time (the broker
//!   does not acknowledge), the process aborts: its queued records must
//!   not land after the next owner has started (without Kafka
//!   transactions nothing else can fence them).
//! - **assigned**: before any record of a partition is handed out, it reads
//!   the end of that partition's lineage log (the last checkpoint carrying
//!   a Merkle frontier, and the records after it, and every record within
//!   the replay horizon), verifies it, and gives the engine the tail to
//!   continue the chain from and the nonces still remembered. A log that
//!   does not verify stops the engine: it is never extended.
//!
//! - **stalled**: while the engine cannot hand records on (its sink cannot
//!   deliver), it calls [`Source::keep_alive`]: every partition is paused
//!   and the consumer polled, so the callbacks above still run and the
//!   member stays in the group past `max.poll.interval.ms`.
//!
//! A commit for a partition this instance no longer owns is dropped, never
//! sent: not committing is always safe (the records come again).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{Message, Offset, TopicPartitionList};
use warrant_engine::lineage::{LineageTail, ReplayWindow, ResumeError, resume};
use warrant_engine::pipeline::now_us;
use warrant_engine::transport::{Handover, InRecord, Source, TransportError};

use super::{KafkaConfig, KafkaError};

/// librdkafka's default `max.poll.interval.ms`.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// How long the consumer may go unpolled before [`Source::keep_alive`]
/// pauses it and polls (at most a tenth of `max.poll.interval.ms`).
/// Pausing drops what librdkafka has prefetched, to be fetched again on
/// resume: under ordinary backpressure, where ingest waits milliseconds at
/// a time, it would refetch the backlog over and over.
const KEEP_ALIVE_AFTER: Duration = Duration::from_secs(1);

fn max_poll_interval(config: &KafkaConfig) -> Duration {
    config
        .properties
        .iter()
        .rev()
        .find(|(k, _)| k == "max.poll.interval.ms")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .map_or(MAX_POLL_INTERVAL, Duration::from_millis)
}

/// How long a revoke waits for the engine to finish what it read: four
/// fifths of `max.poll.interval.ms`, the longest the group waits for a
/// member to rejoin (the rebalance timeout librdkafka sends). Past it, the
/// group would hand the partitions on while this instance still works.
fn release_timeout(config: &KafkaConfig) -> Duration {
    max_poll_interval(config).mul_f64(0.8)
}
/// How long reading a lineage tail may take.
const TAIL_TIMEOUT: Duration = Duration::from_secs(30);

/// The consumer's context: rebalance callbacks and ownership.
struct Group {
    topic: String,
    handover: Mutex<Option<Arc<dyn Handover>>>,
    /// Partitions this instance owns now.
    owned: Mutex<HashSet<u32>>,
    /// Partitions revoked during the current consumer poll.
    revoked: Mutex<Vec<u32>>,
    /// How long a revoke waits for the engine ([`release_timeout`]).
    release_timeout: Duration,
    tails: TailReader,
    /// Told of each change of ownership (for logs).
    observer: Mutex<Option<Observer>>,
    /// Consumer lag per owned partition, from librdkafka's statistics.
    lag: Lag,
}

/// Consumer lag of the intents partitions this instance owns: records
/// behind the partition's end, as librdkafka last reported it (every
/// `statistics.interval.ms`, 5 s unless configured).
#[derive(Debug, Clone, Default)]
pub struct Lag(Arc<Mutex<BTreeMap<u32, i64>>>);

impl Lag {
    /// (partition, records behind), by partition.
    pub fn get(&self) -> Vec<(u32, i64)> {
        lock(&self.0).iter().map(|(p, l)| (*p, *l)).collect()
    }
}

/// Called with `"assigned"` or `"revoked"` and the partitions.
type Observer = Box<dyn Fn(&str, &[u32]) + Send>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ours(topic: &str, tpl: &TopicPartitionList) -> Vec<u32> {
    tpl.elements_for_topic(topic)
        .iter()
        .filter_map(|e| u32::try_from(e.partition()).ok())
        .collect()
}

impl ClientContext for Group {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let owned = lock(&self.owned).clone();
        let mut lag = BTreeMap::new();
        if let Some(t) = statistics.topics.get(&self.topic) {
            for (p, s) in &t.partitions {
                // -1: not known yet (no position, or not fetched).
                if let Ok(p) = u32::try_from(*p)
                    && owned.contains(&p)
                    && s.consumer_lag >= 0
                {
                    lag.insert(p, s.consumer_lag);
                }
            }
        }
        *lock(&self.lag.0) = lag;
    }
}

impl ConsumerContext for Group {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let handover = lock(&self.handover).clone();
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let partitions = ours(&self.topic, tpl);
                // A pause by `keep_alive` outlives the assignment in
                // librdkafka: lift it while these are still ours, or they
                // would come back paused and never be read.
                let _resumed = consumer.resume(tpl);
                if let Some(h) = &handover {
                    match h.release(self.release_timeout) {
                        Ok(done) => self.commit_now(consumer, &done),
                        // Records of these partitions are still queued in
                        // the producer. Once this callback returns, another
                        // instance reads the lineage tail and appends; if
                        // ours landed after that, the log would fork. Without
                        // Kafka transactions nothing can fence them but
                        // ending the process now (a supervisor restarts it;
                        // nothing uncommitted is lost: it is read again).
                        Err(e) => {
                            eprintln!(
                                "warrant: cannot hand partitions {partitions:?} back cleanly \
                                 ({e}); stopping the process so that no record of theirs \
                                 is written after the next owner starts"
                            );
                            std::process::abort();
                        }
                    }
                    for p in &partitions {
                        h.revoke(*p);
                    }
                }
                let mut owned = lock(&self.owned);
                for p in &partitions {
                    owned.remove(p);
                }
                self.tell("revoked", &partitions);
                lock(&self.revoked).extend(partitions);
            }
            Rebalance::Assign(tpl) => {
                let partitions = ours(&self.topic, tpl);
                for &p in &partitions {
                    if let Some(h) = &handover {
                        match self.tails.read(p, &h.engine_keys(), h.replay_horizon()) {
                            Ok(tail) => h.acquire(p, tail),
                            Err(e) => {
                                h.fail(format!("cannot take over partition {p}: {e}"));
                                continue;
                            }
                        }
                    }
                    lock(&self.owned).insert(p);
                }
                self.tell("assigned", &partitions);
            }
            Rebalance::Error(_) => {}
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // New partitions start fetching, whatever was paused before
            // (`keep_alive` pauses them again while the engine is full).
            let _resumed = consumer.resume(tpl);
        }
    }
}

impl Group {
    fn tell(&self, what: &str, partitions: &[u32]) {
        if let Some(f) = lock(&self.observer).as_ref() {
            f(what, partitions);
        }
    }

    /// Commits `done` (last offsets decided) synchronously, for owned
    /// partitions only.
    fn commit_now(&self, consumer: &BaseConsumer<Self>, done: &[(u32, u64)]) {
        let owned = lock(&self.owned);
        let mut tpl = TopicPartitionList::new();
        for &(p, o) in done {
            let (Ok(pi), Ok(next)) = (i32::try_from(p), i64::try_from(o.saturating_add(1))) else {
                continue;
            };
            if owned.contains(&p) {
                // A later entry for the same partition overrides an earlier.
                let _added = tpl.add_partition_offset(&self.topic, pi, Offset::Offset(next));
            }
        }
        if tpl.count() > 0 {
            // Best effort: a commit lost here only means those records are
            // decided again by the next owner, with the same verdicts.
            let _committed = consumer.commit(&tpl, CommitMode::Sync);
        }
    }
}

/// Reads the end of a partition's lineage log.
struct TailReader {
    consumer: BaseConsumer,
    topic: String,
}

impl TailReader {
    /// The tail to continue partition `p`'s log from: reads back from the
    /// end, further each time, until a checkpoint with a frontier (or the
    /// log's start) is among the frames read, and every decision of the
    /// last `horizon` (whose replay memory may still be live).
    fn read(
        &self,
        p: u32,
        engine_keys: &[[u8; 32]],
        horizon: Duration,
    ) -> Result<LineageTail, String> {
        let now = now_us();
        let replay = ReplayWindow {
            now_us: now,
            since_us: now.saturating_sub(u64::try_from(horizon.as_micros()).unwrap_or(u64::MAX)),
        };
        let pi = i32::try_from(p).map_err(|_| format!("partition {p} out of range"))?;
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, pi, TAIL_TIMEOUT)
            .map_err(|e| format!("lineage topic `{}`: {e} (for {TAIL_TIMEOUT:?})", self.topic))?;
        if high <= low && low == 0 {
            return Ok(LineageTail::empty());
        }
        // Start where the replay horizon begins, if the broker can say
        // (ListOffsets by timestamp; a minute early for clock differences
        // between instances), so that a long horizon is read once; else,
        // and for an old last checkpoint, grow the window back from the end.
        let horizon_start = i64::try_from(replay.since_us / 1_000)
            .ok()
            .and_then(|ms| self.offset_at(pi, ms.saturating_sub(60_000)))
            .filter(|o| (low..=high).contains(o));
        let mut window: i64 = 1024.max(horizon_start.map_or(0, |o| high - o));
        loop {
            let from = high.saturating_sub(window).max(low);
            let frames = self.frames(pi, from, high)?;
            match resume(p, &frames, from == 0, engine_keys, replay) {
                Ok(tail) => {
                    if tail.size() > tail.checkpointed() {
                        // Nothing signed vouches for these yet, and this
                        // engine's next checkpoint will (SECURITY.md,
                        // "write access to the lineage topic"): say so.
                        eprintln!(
                            "warrant: lineage partition {p}: continuing after records {}..{} \
                             that no checkpoint signs (the previous owner stopped before \
                             signing them, or someone else appended them); the next \
                             checkpoint covers them; `warrant audit` checks them against \
                             the decisions topic",
                            tail.checkpointed(),
                            tail.size()
                        );
                    }
                    return Ok(tail);
                }
                Err(ResumeError::NeedMore) if from > low => window = window.saturating_mul(8),
                Err(ResumeError::NeedMore) => {
                    return Err(format!(
                        "lineage topic `{}` partition {p}: offsets {low}..{high} hold no \
                         checkpoint to resume from, or not the whole replay horizon (records \
                         before {low} were deleted; the lineage topic must not expire records)",
                        self.topic
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// The first offset of partition `p` whose timestamp is at or after
    /// `ms`, if the broker answers with one.
    fn offset_at(&self, p: i32, ms: i64) -> Option<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(ms))
            .ok()?;
        let found = self.consumer.offsets_for_times(tpl, TAIL_TIMEOUT).ok()?;
        match found.find_partition(&self.topic, p)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// The payloads at offsets `from..to` of partition `p`.
    fn frames(&self, p: i32, from: i64, to: i64) -> Result<Vec<Vec<u8>>, String> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(from))
            .map_err(|e| e.to_string())?;
        self.consumer.assign(&tpl).map_err(|e| e.to_string())?;
        // A long read is fine; a stalled one is not: the deadline moves
        // with every record read.
        let mut deadline = Instant::now() + TAIL_TIMEOUT;
        let mut out = Vec::new();
        let mut next = from;
        let mut last_error = None;
        while next < to {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "lineage topic `{}` partition {p}: read up to offset {next} of {from}..{to}, \
                     then nothing for {TAIL_TIMEOUT:?}{}",
                    self.topic,
                    last_error.map_or(String::new(), |e| format!(" (last error: {e})"))
                ));
            }
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                Some(Ok(m)) if m.partition() == p && m.offset() >= next => {
                    next = m.offset() + 1;
                    out.push(m.payload().unwrap_or_default().to_vec());
                    deadline = Instant::now() + TAIL_TIMEOUT;
                }
                Some(Ok(_)) | None => {}
                // Connection errors (left over from a broker outage, or a
                // broker still coming back) pass; librdkafka reconnects.
                Some(Err(e)) => last_error = Some(e),
            }
        }
        self.consumer.unassign().map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// Reads the intents topic as a [`Source`]. Offsets are committed only
/// through [`Source::commit`], which the engine calls once the decisions
/// and lineage covering them are acknowledged, and on revocation.
pub struct KafkaSource {
    consumer: BaseConsumer<Group>,
    topic: String,
    partitions: u32,
    /// Whether [`Source::keep_alive`] paused fetching; the next
    /// [`Source::poll`] resumes it.
    paused: bool,
    /// Records a keep-alive poll returned (of a partition assigned during
    /// it, before it was paused): handed out first by the next poll.
    pending: VecDeque<InRecord>,
    /// When the consumer was last polled.
    last_poll: Instant,
    /// [`KEEP_ALIVE_AFTER`], or less under a short `max.poll.interval.ms`.
    keep_alive_after: Duration,
}

impl KafkaSource {
    /// Joins the consumer group and subscribes to the intents topic, which
    /// must exist (its partition count is the engine's routing rule), as
    /// must the lineage topic, with at least as many partitions.
    pub fn new(config: &KafkaConfig) -> Result<Self, KafkaError> {
        let mut client = config.client(&[
            ("group.id", config.group_id.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            // A partition without a committed offset (a new group, or
            // offsets the broker expired) is read from its start: from
            // its end, the intents before it would never be decided.
            ("auto.offset.reset", "earliest"),
            // End-of-partition events would come back as poll errors.
            ("enable.partition.eof", "false"),
        ])?;
        // Defaults a user may override: a fetch waits at most 5 ms.
        // Brokers that answer a waiting fetch only when its wait expires
        // (Tansu does) otherwise add librdkafka's default 500 ms to every
        // intent's latency; see connectors/README.md for the measurement.
        for (key, value) in [
            ("fetch.wait.max.ms", "5"),
            // Consumer lag for the metrics endpoint.
            ("statistics.interval.ms", "5000"),
        ] {
            if !config.properties.iter().any(|(k, _)| k == key) {
                client.set(key, value);
            }
        }
        // Reads by assignment only: a group id librdkafka requires, never
        // joined, never committed to.
        let tail_group = format!("{}.lineage-tail", config.group_id);
        let tail_consumer: BaseConsumer = config
            .client(&[
                ("enable.auto.commit", "false"),
                ("group.id", tail_group.as_str()),
            ])?
            .set("fetch.wait.max.ms", "5")
            .create()?;
        let topic = config.intents_topic.clone();
        let partitions = partition_count(&tail_consumer, &topic)?;
        let lineage_partitions = partition_count(&tail_consumer, &config.lineage_topic)?;
        if lineage_partitions < partitions {
            return Err(KafkaError::Topic {
                topic: config.lineage_topic.clone(),
                message: format!(
                    "has {lineage_partitions} partitions; it needs at least as many as \
                     `{topic}` ({partitions}): lineage is kept per intents partition"
                ),
            });
        }
        let group = Group {
            topic: topic.clone(),
            handover: Mutex::new(None),
            owned: Mutex::new(HashSet::new()),
            revoked: Mutex::new(Vec::new()),
            release_timeout: release_timeout(config),
            tails: TailReader {
                consumer: tail_consumer,
                topic: config.lineage_topic.clone(),
            },
            observer: Mutex::new(None),
            lag: Lag::default(),
        };
        let consumer: BaseConsumer<Group> = client.create_with_context(group)?;
        consumer.subscribe(&[&topic])?;
        Ok(KafkaSource {
            consumer,
            topic,
            partitions,
            paused: false,
            pending: VecDeque::new(),
            last_poll: Instant::now(),
            keep_alive_after: KEEP_ALIVE_AFTER.min(max_poll_interval(config) / 10),
        })
    }

    /// Partitions of the intents topic.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Calls `f` with `"assigned"` or `"revoked"` and the partitions after
    /// each change of ownership (on the engine's ingest thread: keep it
    /// short).
    pub fn on_rebalance(&self, f: impl Fn(&str, &[u32]) + Send + 'static) {
        *lock(&self.consumer.context().observer) = Some(Box::new(f));
    }

    /// Consumer lag of the partitions this instance owns (a handle that
    /// stays valid after the source moves into the engine).
    pub fn lag(&self) -> Lag {
        self.consumer.context().lag.clone()
    }

    /// Partitions of the intents topic this instance owns now.
    pub fn owned(&self) -> Vec<u32> {
        let mut v: Vec<u32> = lock(&self.consumer.context().owned)
            .iter()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }
}

/// Partitions of `topic`; an error if it does not exist.
fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<u32, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let n = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if n == 0 {
        return Err(KafkaError::Topic {
            topic: topic.to_owned(),
            message: "does not exist or has no partitions".into(),
        });
    }
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

impl KafkaSource {
    /// Removes records of partitions revoked during the last consumer poll
    /// from `out` and from the pending records: the next owner reads them
    /// again. Returns how many left `out`.
    fn drop_revoked(&mut self, out: &mut Vec<InRecord>) -> usize {
        let revoked = std::mem::take(&mut *lock(&self.consumer.context().revoked));
        if revoked.is_empty() {
            return 0;
        }
        self.pending.retain(|r| !revoked.contains(&r.partition));
        let before = out.len();
        out.retain(|r| !revoked.contains(&r.partition));
        before - out.len()
    }

    /// Pauses fetching from every partition assigned now.
    fn pause_all(&mut self) -> Result<(), TransportError> {
        let assigned = self
            .consumer
            .assignment()
            .map_err(|e| TransportError::Unavailable(e.to_string()))?;
        if assigned.count() > 0 {
            self.consumer
                .pause(&assigned)
                .map_err(|e| TransportError::Unavailable(e.to_string()))?;
        }
        self.paused = true;
        Ok(())
    }
}

fn in_record(m: &rdkafka::message::BorrowedMessage<'_>) -> Option<InRecord> {
    Some(InRecord::new(
        u32::try_from(m.partition()).ok()?,
        u64::try_from(m.offset()).ok()?,
        m.key().unwrap_or_default(),
        m.payload().unwrap_or_default(),
    ))
}

impl Drop for KafkaSource {
    /// Lifts a pause `keep_alive` left before the consumer closes (the
    /// close revokes the partitions through the rebalance callback, which
    /// resumes them too; this does not depend on it).
    fn drop(&mut self) {
        if self.paused
            && let Ok(assigned) = self.consumer.assignment()
        {
            let _resumed = self.consumer.resume(&assigned);
        }
    }
}

impl Source for KafkaSource {
    fn poll(
        &mut self,
        out: &mut Vec<InRecord>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, TransportError> {
        if self.paused {
            // On failure, tried again on the next poll; polling goes on
            // regardless, so the member stays in the group.
            if let Ok(assigned) = self.consumer.assignment()
                && self.consumer.resume(&assigned).is_ok()
            {
                self.paused = false;
            }
        }
        self.last_poll = Instant::now();
        let deadline = Instant::now() + timeout;
        let mut taken = 0;
        while taken < max
            && let Some(r) = self.pending.pop_front()
        {
            out.push(r);
            taken += 1;
        }
        // A poll that does not wait also comes back empty when it served a
        // commit or rebalance event (rdkafka returns `None` then, unless
        // the timeout is infinite), though records may be ready: look
        // again a couple of times before taking "empty" for an answer.
        let mut empty_looks = 0;
        while taken < max {
            // Wait for the first record; after it, take only what is ready.
            let wait = if taken == 0 {
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            let polled = self.consumer.poll(wait).map(|r| r.map(|m| in_record(&m)));
            // Partitions revoked during that poll: what the engine holds of
            // them and has not handed on is the next owner's to read.
            let dropped = self.drop_revoked(out);
            taken = taken.saturating_sub(dropped);
            match polled {
                None if wait.is_zero() && empty_looks < 2 => empty_looks += 1,
                None => break,
                Some(Ok(record)) => {
                    if let Some(r) = record {
                        out.push(r);
                        taken += 1;
                    }
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
        if !lock(&self.consumer.context().owned).contains(&partition) {
            // Revoked meanwhile: the new owner commits it.
            return Ok(());
        }
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

    /// Once the consumer has gone unpolled for [`KEEP_ALIVE_AFTER`]:
    /// pauses every assigned partition and serves the consumer's events
    /// (rebalances included) without handing out records. A consumer not
    /// polled for `max.poll.interval.ms` leaves the group, and another
    /// instance would take its partitions while this one still holds
    /// sealed records of theirs. The next [`Source::poll`] resumes.
    fn keep_alive(&mut self, held: &mut Vec<InRecord>) -> Result<(), TransportError> {
        if self.last_poll.elapsed() < self.keep_alive_after {
            return Ok(());
        }
        self.last_poll = Instant::now();
        let mut empty_looks = 0;
        // A few looks: a poll that serves an event comes back empty.
        while empty_looks < 3 {
            // Again before each look: a partition assigned during the last
            // one starts unpaused. A failure to pause is no reason not to
            // poll: the member must stay in the group.
            let _paused = self.pause_all();
            let polled = self
                .consumer
                .poll(Duration::ZERO)
                .map(|r| r.map(|m| in_record(&m)));
            let _dropped = self.drop_revoked(held);
            match polled {
                // Fetched before the pause took hold: kept, in order.
                Some(Ok(record)) => self.pending.extend(record),
                // Connection errors pass: librdkafka reconnects.
                None | Some(Err(_)) => empty_looks += 1,
            }
        }
        Ok(())
    }

    fn attach(&mut self, handover: Arc<dyn Handover>) {
        *lock(&self.consumer.context().handover) = Some(handover);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_revoke_wait_stays_inside_the_poll_interval() {
        let mut config = KafkaConfig::new("localhost:9092");
        assert_eq!(release_timeout(&config), Duration::from_secs(240));
        config
            .properties
            .push(("max.poll.interval.ms".into(), "10000".into()));
        assert_eq!(release_timeout(&config), Duration::from_secs(8));
    }

    #[test]
    fn settings_that_would_skip_intents_or_fail_polls_are_refused() {
        // `latest` would skip a new group's backlog for good; partition
        // EOF events would come back as poll errors. Refused before any
        // connection, so no broker is needed.
        for (key, value) in [
            ("auto.offset.reset", "latest"),
            ("auto.offset.reset", "end"),
            ("enable.partition.eof", "true"),
            ("enable.auto.commit", "true"),
            ("auto.commit.enable", "true"),
            ("enable.auto.offset.store", "true"),
        ] {
            let mut config = KafkaConfig::new("127.0.0.1:1");
            config.properties.push((key.into(), value.into()));
            let err = match KafkaSource::new(&config) {
                Ok(_) => panic!("{key} = {value} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }
}
