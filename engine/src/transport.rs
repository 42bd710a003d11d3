//! Where intents come from and where decisions go: the [`Source`] and
//! [`Sink`] traits, and [`embedded`], an in-process transport partitioned
//! and bounded like Kafka, for the demo and the tests.
//!
//! # Why the traits are shaped this way
//!
//! They follow Kafka's at-least-once contract so that the Kafka connectors
//! implement them directly:
//!
//! - a [`Source`] hands out records of numbered partitions in offset order
//!   and forgets nothing until [`Source::commit`] says every record up to an
//!   offset is done; after a crash, uncommitted records come again (the
//!   engine's replay cache makes that idempotent);
//! - a [`Sink`] returns from [`Sink::send`] only when the whole batch is
//!   durable, so the engine commits a source offset only after the
//!   decisions and lineage records covering it are acknowledged;
//! - both work on batches, not single records, so a hop costs one call per
//!   batch.

use std::time::Duration;

/// Longest the engine goes without calling [`Source::keep_alive`] while it
/// holds records it cannot hand on.
pub const KEEP_ALIVE: Duration = Duration::from_millis(100);

/// A record read from the intents topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRecord {
    /// Partition it was read from.
    pub partition: u32,
    /// Its offset within the partition.
    pub offset: u64,
    /// Record key (the principal, for intents).
    pub key: Vec<u8>,
    /// The `SignedIntent` bytes, as produced: possibly malformed. Empty
    /// when [`Self::oversize_digest`] is set.
    pub payload: Vec<u8>,
    /// For a record larger than any intent the engine accepts
    /// (`Limits::max_buffer_bytes`): the digest of its bytes
    /// (`warrant_schemas::unreadable_digest`), which were not kept. It is denied "malformed", bound to this digest, and holds
    /// no memory while it waits: the engine's memory is bounded in bytes,
    /// not only in records, whatever the broker lets producers write.
    pub oversize_digest: Option<[u8; 32]>,
}

/// Longest record key kept: the engine routes by the signed principal,
/// never by the key, so a longer one is dropped rather than held.
pub const MAX_KEY_BYTES: usize = 1024;

impl InRecord {
    /// A record as a source read it: a payload larger than any intent the
    /// engine accepts is kept as its digest only (see
    /// [`Self::oversize_digest`]), a key longer than [`MAX_KEY_BYTES`] not
    /// at all. Sources build their records with this.
    pub fn new(partition: u32, offset: u64, key: &[u8], payload: &[u8]) -> Self {
        let oversize = payload.len() > warrant_schemas::Limits::default().max_buffer_bytes;
        InRecord {
            partition,
            offset,
            key: if key.len() > MAX_KEY_BYTES {
                Vec::new()
            } else {
                key.to_vec()
            },
            payload: if oversize {
                Vec::new()
            } else {
                payload.to_vec()
            },
            oversize_digest: oversize.then(|| warrant_schemas::unreadable_digest(payload)),
        }
    }
}

/// Output of one engine batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutBatch {
    /// Decisions, keyed by intent id.
    pub decisions: Vec<([u8; 16], Vec<u8>)>,
    /// Lineage records and checkpoints, with the partition they belong to.
    pub lineage: Vec<(u32, Vec<u8>)>,
}

/// Why a transport call failed. `retryable` ones may succeed later
/// (broker unreachable, queue full); the others will not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The destination is full or unavailable for now.
    #[error("transport unavailable: {0}")]
    Unavailable(String),
    /// The transport was closed.
    #[error("transport closed")]
    Closed,
    /// The transport failed in a way retrying cannot mend (records may
    /// have been written in part).
    #[error("transport failed: {0}")]
    Failed(String),
    /// A commit named an offset that was never handed out.
    #[error("cannot commit offset {offset} of partition {partition}: {reason}")]
    BadCommit {
        /// Partition.
        partition: u32,
        /// Offset.
        offset: u64,
        /// Why.
        reason: String,
    },
}

impl TransportError {
    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        matches!(self, TransportError::Unavailable(_))
    }
}

/// A partitioned, replayable stream of intents.
pub trait Source: Send {
    /// Waits up to `timeout` for records, then appends at most `max` of
    /// them to `out`, each partition in offset order. Returns how many.
    fn poll(
        &mut self,
        out: &mut Vec<InRecord>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, TransportError>;

    /// Marks every record of `partition` up to and including `offset` as
    /// done: they will not be handed out again, even after a restart.
    fn commit(&mut self, partition: u32, offset: u64) -> Result<(), TransportError>;

    /// Called at least every [`KEEP_ALIVE`] while the engine holds records
    /// it cannot hand on (its pipeline is full: a sink that cannot
    /// deliver, or a backlog). A source that loses its partitions when it
    /// is not polled (a Kafka consumer past `max.poll.interval.ms`) keeps
    /// its place here without handing out records: it serves its events,
    /// rebalances included, and keeps what it reads for the next
    /// [`Source::poll`]. On revocation it follows the [`Source::attach`]
    /// contract with `held` as the `out` of a poll: the engine's held
    /// records of revoked partitions are removed. The default does nothing.
    fn keep_alive(&mut self, held: &mut Vec<InRecord>) -> Result<(), TransportError> {
        let _unused = held;
        Ok(())
    }

    /// Called once by the engine before its first poll. A source whose
    /// partitions move between engine instances (a Kafka consumer group)
    /// keeps `handover` and calls it as partitions come and go; a source
    /// with a fixed set of partitions ignores it (the default).
    ///
    /// Contract of such a source, on revocation of partitions during a
    /// [`Source::poll`]: call [`Handover::release`] before giving them
    /// away, commit what it returns, remove the revoked partitions' records
    /// from the `out` of that poll (they were read but are not yet in the
    /// engine's pipeline, and the new owner reads them again), call
    /// [`Handover::revoke`], and ignore later commits for them. On
    /// assignment: call [`Handover::acquire`] with the partition's lineage
    /// tail before handing out any of its records.
    fn attach(&mut self, handover: std::sync::Arc<dyn Handover>) {
        let _unused = handover;
    }
}

/// The engine's side of partitions moving between engine instances.
pub trait Handover: Send + Sync {
    /// Blocks until everything read so far and handed to the pipeline is
    /// decided, emitted and acknowledged, at most `timeout`, then returns
    /// the offsets to commit, `(partition, last offset done)`. On timeout
    /// the engine fails (it can no longer hand partitions back cleanly) and
    /// this returns the error.
    fn release(&self, timeout: Duration) -> Result<Vec<(u32, u64)>, String>;

    /// `partition` is this engine's from now on; its lineage log goes on
    /// from `tail`.
    fn acquire(&self, partition: u32, tail: crate::lineage::LineageTail);

    /// `partition` is no longer this engine's: its lineage writer and replay
    /// memory are dropped.
    fn revoke(&self, partition: u32);

    /// How far back (before now) decisions can have left replay memory
    /// that is still live: the lineage tail handed to
    /// [`Handover::acquire`] must cover at least that much, so that a nonce
    /// the previous owner remembered stays used.
    fn replay_horizon(&self) -> Duration;

    /// Public keys whose checkpoints a lineage tail may be resumed from
    /// (the engine's own, and the peers' it was configured with).
    fn engine_keys(&self) -> Vec<[u8; 32]>;

    /// A partition cannot be taken over (its lineage log cannot be read or
    /// does not verify): the engine stops with this error.
    fn fail(&self, message: String);
}

/// Durable output for decisions and lineage.
pub trait Sink: Send {
    /// Writes a batch; returns only once all of it is durable.
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError>;
}

/// The partition a key goes to, as Kafka's default partitioner does it for
/// keyed records: murmur2 of the key, positive, modulo the partition count.
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 (seed 0x9747b28c), as in its Java client.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h: u32 = 0x9747_b28c ^ len;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes(c.try_into().unwrap_or([0; 4]));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if let Some(&b) = rest.get(2) {
        h ^= u32::from(b) << 16;
    }
    if let Some(&b) = rest.get(1) {
        h ^= u32::from(b) << 8;
    }
    if let Some(&b) = rest.first() {
        h ^= u32::from(b);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

pub mod embedded {
    //! An in-process transport: topics of numbered partitions, bounded,
    //! with committed offsets, shared by producers, the engine and readers.
    //!
    //! Records stay in a partition until committed (like a log with
    //! retention "until consumed"); a partition holding `capacity`
    //! uncommitted records refuses more with a retryable error, so memory is
    //! bounded and a producer sees backpressure.

    use std::collections::VecDeque;
    use std::sync::{Arc, Condvar, Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    use super::{Handover, InRecord, OutBatch, Sink, Source, TransportError, partition_for};
    use crate::lineage::{ReplayWindow, resume};

    #[derive(Debug, Default)]
    struct Partition {
        /// Offset of `records[0]`.
        base: u64,
        records: VecDeque<(Vec<u8>, Vec<u8>)>,
        /// Next offset to hand out to the (single) consumer.
        cursor: u64,
    }

    #[derive(Debug)]
    struct Inner {
        partitions: Vec<Partition>,
        capacity: usize,
        closed: bool,
        /// Bumped by every new consumer: an older one is fenced out.
        generation: u64,
    }

    /// A topic of `n` partitions, each holding at most `capacity`
    /// uncommitted records. Clones share the topic.
    #[derive(Debug, Clone)]
    pub struct Topic {
        inner: Arc<(Mutex<Inner>, Condvar)>,
    }

    impl Topic {
        /// A new, empty topic.
        pub fn new(partitions: u32, capacity: usize) -> Topic {
            let inner = Inner {
                partitions: (0..partitions.max(1))
                    .map(|_| Partition::default())
                    .collect(),
                capacity: capacity.max(1),
                closed: false,
                generation: 0,
            };
            Topic {
                inner: Arc::new((Mutex::new(inner), Condvar::new())),
            }
        }

        fn lock(&self) -> MutexGuard<'_, Inner> {
            self.inner
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        /// Number of partitions.
        pub fn partitions(&self) -> u32 {
            u32::try_from(self.lock().partitions.len()).unwrap_or(u32::MAX)
        }

        /// Appends a record to the partition its key maps to; returns
        /// (partition, offset). Refuses (retryable) when that partition is full.
        pub fn publish(&self, key: &[u8], payload: Vec<u8>) -> Result<(u32, u64), TransportError> {
            let mut g = self.lock();
            if g.closed {
                return Err(TransportError::Closed);
            }
            let n = u32::try_from(g.partitions.len()).unwrap_or(1);
            let p = partition_for(key, n);
            let capacity = g.capacity;
            let part = g
                .partitions
                .get_mut(p as usize)
                .ok_or(TransportError::Closed)?;
            if part.records.len() >= capacity {
                return Err(TransportError::Unavailable(format!(
                    "partition {p} is full ({capacity} records)"
                )));
            }
            let offset = part.base + part.records.len() as u64;
            part.records.push_back((key.to_vec(), payload));
            drop(g);
            self.inner.1.notify_all();
            Ok((p, offset))
        }

        /// Every record still held (uncommitted), in partition then offset order.
        pub fn snapshot(&self) -> Vec<InRecord> {
            let g = self.lock();
            let mut out = Vec::new();
            for (p, part) in g.partitions.iter().enumerate() {
                for (i, (k, v)) in part.records.iter().enumerate() {
                    out.push(InRecord::new(
                        u32::try_from(p).unwrap_or(u32::MAX),
                        part.base + i as u64,
                        k,
                        v,
                    ));
                }
            }
            out
        }

        /// Records handed out to the consumer and not yet committed: what
        /// the engine reading the topic holds (read, not yet decided or
        /// not yet acknowledged and committed).
        pub fn handed_out(&self) -> u64 {
            self.lock()
                .partitions
                .iter()
                .map(|p| p.cursor.saturating_sub(p.base))
                .sum()
        }

        /// Closes the topic: polls return what is left, then `Closed`.
        pub fn close(&self) {
            self.lock().closed = true;
            self.inner.1.notify_all();
        }

        /// A consumer over every partition, starting at the committed
        /// offsets, as a Kafka consumer joining its group does: records an
        /// earlier consumer read but did not commit come again. One
        /// consumer per topic (the embedded transport has no consumer
        /// groups): a new one fences out the one before, whose polls and
        /// commits then fail.
        ///
        /// It starts a fresh engine: no lineage or replay memory from an
        /// engine that consumed the topic before. To continue after one
        /// (a restart), use [`Topic::consumer_resuming`].
        pub fn consumer(&self) -> Consumer {
            self.new_consumer(None)
        }

        /// Like [`Topic::consumer`], for an engine that continues after an
        /// earlier one on this topic: `lineage` is everything the earlier
        /// engines sent as lineage (`OutBatch::lineage`, in the order sent,
        /// say from [`Collector::take_snapshot`]). Before its first poll
        /// the consumer hands every partition to the engine with the tail
        /// of its log, as a Kafka source does on assignment: the engine
        /// goes on with each partition's chain and restores the replay
        /// memory its recent decisions left, so a redelivered intent gets
        /// its first verdict and a nonce used before stays used. A log that
        /// does not verify stops the engine.
        pub fn consumer_resuming(&self, lineage: Vec<(u32, Vec<u8>)>) -> Consumer {
            self.new_consumer(Some(lineage))
        }

        fn new_consumer(&self, lineage: Option<Vec<(u32, Vec<u8>)>>) -> Consumer {
            let mut g = self.lock();
            g.generation += 1;
            for part in &mut g.partitions {
                part.cursor = part.base;
            }
            Consumer {
                topic: self.clone(),
                next_start: 0,
                generation: g.generation,
                lineage,
            }
        }

        /// Forgets what was handed out but not committed, as a restarted
        /// consumer would: those records will be polled again.
        pub fn rewind_uncommitted(&self) {
            let mut g = self.lock();
            for part in &mut g.partitions {
                part.cursor = part.base;
            }
        }
    }

    /// Reads a [`Topic`] as a [`Source`].
    #[derive(Debug)]
    pub struct Consumer {
        topic: Topic,
        /// Partition the next poll starts at, so none starves.
        next_start: usize,
        /// The topic's generation when this consumer was made.
        generation: u64,
        /// The lineage to resume from ([`Topic::consumer_resuming`]).
        lineage: Option<Vec<(u32, Vec<u8>)>>,
    }

    impl Consumer {
        fn fenced(&self) -> TransportError {
            TransportError::Failed(
                "a newer consumer of this embedded topic replaced this one".into(),
            )
        }
    }

    impl Source for Consumer {
        fn attach(&mut self, handover: Arc<dyn Handover>) {
            let Some(lineage) = self.lineage.take() else {
                return;
            };
            let now = crate::pipeline::now_us();
            let horizon = u64::try_from(handover.replay_horizon().as_micros()).unwrap_or(u64::MAX);
            let window = ReplayWindow {
                now_us: now,
                since_us: now.saturating_sub(horizon),
            };
            let keys = handover.engine_keys();
            for p in 0..self.topic.partitions() {
                let frames: Vec<Vec<u8>> = lineage
                    .iter()
                    .filter(|(q, _)| *q == p)
                    .map(|(_, f)| f.clone())
                    .collect();
                match resume(p, &frames, true, &keys, window) {
                    Ok(tail) => handover.acquire(p, tail),
                    Err(e) => {
                        handover.fail(format!("cannot resume lineage partition {p}: {e}"));
                        return;
                    }
                }
            }
        }

        fn poll(
            &mut self,
            out: &mut Vec<InRecord>,
            max: usize,
            timeout: Duration,
        ) -> Result<usize, TransportError> {
            let deadline = Instant::now() + timeout;
            let (lock, cvar) = &*self.topic.inner;
            let mut g = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if g.generation != self.generation {
                    return Err(self.fenced());
                }
                let available = g
                    .partitions
                    .iter()
                    .any(|p| p.cursor < p.base + p.records.len() as u64);
                if available {
                    break;
                }
                if g.closed {
                    return Err(TransportError::Closed);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(0);
                }
                g = cvar
                    .wait_timeout(g, deadline - now)
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            let mut taken = 0;
            // Round-robin over partitions, starting where the last poll
            // stopped, so none starves when `max` is small.
            let n = g.partitions.len().max(1);
            let start = self.next_start % n;
            self.next_start = (start + 1) % n;
            while taken < max {
                let mut progressed = false;
                let (tail, head) = g.partitions.split_at_mut(start);
                for (p, part) in head
                    .iter_mut()
                    .enumerate()
                    .map(|(i, x)| (i + start, x))
                    .chain(tail.iter_mut().enumerate())
                {
                    if taken >= max {
                        break;
                    }
                    let index = (part.cursor - part.base) as usize;
                    if let Some((k, v)) = part.records.get(index) {
                        out.push(InRecord::new(
                            u32::try_from(p).unwrap_or(u32::MAX),
                            part.cursor,
                            k,
                            v,
                        ));
                        part.cursor += 1;
                        taken += 1;
                        progressed = true;
                    }
                }
                if !progressed {
                    break;
                }
            }
            Ok(taken)
        }

        fn commit(&mut self, partition: u32, offset: u64) -> Result<(), TransportError> {
            let mut g = self.topic.lock();
            if g.generation != self.generation {
                return Err(self.fenced());
            }
            let part = g.partitions.get_mut(partition as usize).ok_or_else(|| {
                TransportError::BadCommit {
                    partition,
                    offset,
                    reason: "no such partition".into(),
                }
            })?;
            if offset >= part.cursor {
                return Err(TransportError::BadCommit {
                    partition,
                    offset,
                    reason: "not handed out yet".into(),
                });
            }
            while part.base <= offset {
                part.records.pop_front();
                part.base += 1;
            }
            drop(g);
            self.topic.inner.1.notify_all();
            Ok(())
        }
    }

    /// An append-only in-memory log of everything sent: decisions and
    /// lineage, for the demo's verification and the tests.
    #[derive(Debug, Clone, Default)]
    pub struct Collector {
        inner: Arc<Mutex<OutBatch>>,
    }

    impl Collector {
        /// An empty collector.
        pub fn new() -> Self {
            Self::default()
        }

        /// Everything sent so far.
        pub fn take_snapshot(&self) -> OutBatch {
            self.inner
                .lock()
                .map(|g| g.clone())
                .unwrap_or_else(|e| e.into_inner().clone())
        }
    }

    impl Sink for Collector {
        fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
            let mut g = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            g.decisions.extend(batch.decisions.iter().cloned());
            g.lineage.extend(batch.lineage.iter().cloned());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::embedded::{Collector, Topic};
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 5] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
        ];
        for (key, want) in cases {
            assert_eq!(
                murmur2(key) as i32,
                want,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn records_come_back_until_committed() {
        let topic = Topic::new(4, 100);
        for i in 0..20u8 {
            topic.publish(&[i % 5], vec![i]).unwrap();
        }
        let mut c = topic.consumer();
        let mut got = Vec::new();
        assert_eq!(
            c.poll(&mut got, 100, Duration::from_millis(10)).unwrap(),
            20
        );
        // Per partition, offsets are in order from 0.
        for p in 0..4 {
            let offsets: Vec<u64> = got
                .iter()
                .filter(|r| r.partition == p)
                .map(|r| r.offset)
                .collect();
            assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>());
        }
        // Commit half of partition 0's, "crash", and read again: the rest returns.
        let p0: Vec<&InRecord> = got.iter().filter(|r| r.partition == 0).collect();
        let half = p0.len() / 2;
        if half > 0 {
            c.commit(0, p0[half - 1].offset).unwrap();
        }
        topic.rewind_uncommitted();
        let mut again = Vec::new();
        c.poll(&mut again, 100, Duration::from_millis(10)).unwrap();
        assert_eq!(again.len(), 20 - half);
        assert!(c.commit(1, 999).is_err());
    }

    #[test]
    fn a_new_consumer_starts_at_the_committed_offset_and_fences_the_old_one() {
        let topic = Topic::new(1, 4);
        for i in 0..4u8 {
            topic.publish(b"k", vec![i]).unwrap();
        }
        let mut old = topic.consumer();
        let mut got = Vec::new();
        assert_eq!(old.poll(&mut got, 4, Duration::from_millis(10)).unwrap(), 4);
        old.commit(0, 1).unwrap();
        // The old consumer "crashed" after committing offsets 0 and 1.
        let mut new = topic.consumer();
        let mut again = Vec::new();
        new.poll(&mut again, 4, Duration::from_millis(10)).unwrap();
        let offsets: Vec<u64> = again.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [2, 3]);
        // The old one can neither read nor commit any more.
        assert!(old.poll(&mut got, 4, Duration::ZERO).is_err());
        assert!(old.commit(0, 3).is_err());
        new.commit(0, 3).unwrap();
        assert!(topic.snapshot().is_empty());
    }

    #[test]
    fn small_polls_visit_every_partition() {
        let topic = Topic::new(4, 100);
        let mut keys_by_partition = [None; 4];
        for k in 0u8..=255 {
            let p = partition_for(&[k], 4) as usize;
            keys_by_partition[p].get_or_insert(k);
        }
        for k in keys_by_partition.iter().flatten() {
            for _ in 0..10 {
                topic.publish(&[*k], vec![*k]).unwrap();
            }
        }
        let mut c = topic.consumer();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let mut got = Vec::new();
            c.poll(&mut got, 1, Duration::from_millis(5)).unwrap();
            seen.extend(got.iter().map(|r| r.partition));
        }
        assert_eq!(
            seen.len(),
            4,
            "polls of one record must rotate over partitions"
        );
    }

    #[test]
    fn a_full_partition_pushes_back_and_the_sink_keeps_everything() {
        let topic = Topic::new(1, 3);
        for i in 0..3u8 {
            topic.publish(b"k", vec![i]).unwrap();
        }
        let e = topic.publish(b"k", vec![9]).unwrap_err();
        assert!(e.retryable());
        let mut sink = Collector::new();
        sink.send(&OutBatch {
            decisions: vec![([1; 16], vec![1])],
            lineage: vec![(0, vec![2])],
        })
        .unwrap();
        sink.send(&OutBatch {
            decisions: vec![([2; 16], vec![3])],
            lineage: vec![],
        })
        .unwrap();
        let all = sink.take_snapshot();
        assert_eq!(all.decisions.len(), 2);
        assert_eq!(all.lineage.len(), 1);
        topic.close();
        assert_eq!(topic.publish(b"k", vec![]), Err(TransportError::Closed));
    }
}
