//! The engine pipeline: intents in, one sealed decision and one lineage
//! record per intent out, failing closed at every step.
//!
//! # Stages
//!
//! ```text
//!            decode_q            verify_q            policy_q            seal_q             emit_q
//! [ingest] ──────────► [decode] ─────────► [verify] ─────────► [policy] ─────────► [seal] ─────────► [emit]
//!   │  poll the Source,   open buffer,      lanes: batch        replay cache,       deadline check,     Sink::send,
//!   │  close a batch on   digest, route,    ed25519, big        final verdict       Merkle-seal,        then commit
//!   │  size or linger     times, key,       groups split on     in decode order     lineage,            offsets
//!   │                     policy tables     a rayon pool                            checkpoints
//!   │                                                                                   ▲
//!   └── full batch, pipeline full for `shed_after` ── shed_q ──────────────────────────┘  (deny "overloaded")
//!   ◄── commit_q: offsets whose decisions and lineage the sink acknowledged
//! ```
//!
//! Each stage is one thread, optionally pinned to a core ([`Layout`]),
//! except verify: one *lane* per verification thread (at most 4), each
//! taking groups of batches off the verify queue, and a rayon pool (pinned
//! to its own cores from 4 cores up) that splits the large ones. Lane 0
//! takes every group it can; lane `i + 1` joins when a queue forms behind
//! lane `i`, and leaves after 1 ms without work. Lanes finish out of order;
//! the policy stage takes batches back in the order decode sent them (the
//! first user of a nonce must win), and a permit per batch, taken by decode
//! and returned by policy, bounds how many are between the two (those
//! waiting for an earlier one included). Stages are joined by bounded
//! crossbeam channels that carry whole batches ([`Config::queue_batches`]
//! deep), so the engine holds at most a fixed number of intents whatever
//! the offered load.
//!
//! # Batch rules
//!
//! The ingest stage waits for a first record, then keeps polling (after
//! each of a few naps, not waking per record) until the batch holds
//! [`Config::max_batch`] records or [`Config::linger`] has passed since
//! the first one: small batches at low load (latency), full ones at
//! high load (throughput). Every later stage works on the whole batch; per
//! batch, not per intent, it loads the trust store and the policy (`ArcSwap`,
//! no lock), allocates, and signs once (one Merkle root). Verify and seal
//! group the batches already waiting; emit merges the sealed groups already
//! waiting into one sink send.
//!
//! A full batch that finds the pipeline full waits up to
//! [`Config::shed_after`], then is shed (denied "overloaded") — unless the
//! emit queue is full too: then the sink is the bottleneck, shedding could
//! not relieve it (shed batches are emitted as well), and ingest waits
//! instead, leaving the records with the source (on Kafka: consumer lag).
//!
//! # Partitions that move
//!
//! A source whose partitions move between engine instances (a Kafka
//! consumer group) calls the engine's [`Handover`]: `release` before it
//! gives partitions away (everything read is emitted and acknowledged
//! first), `acquire` with the lineage tail and replay memory it read back
//! before it hands out a partition's records, `revoke` to drop a
//! partition's state. Once a source does this, a record of a partition not
//! acquired stops the engine: a lineage chain is never restarted.
//!
//! # Fail closed
//!
//! Every record handed out by the source leaves as exactly one decision
//! (a crafted intent for each reason is in `engine/tests/pipeline.rs`):
//!
//! | reason | where |
//! |---|---|
//! | malformed (bad buffer, or read from a partition its principal does not map to) | decode |
//! | unknown key (absent, or another principal's), revoked key | decode |
//! | not yet valid (`issued_at` beyond the clock skew) | decode |
//! | expired (older than the maximum age), deadline exceeded | on entry to decode, verify, policy and seal (the last stage that can change a verdict: emit only sends what seal signed); expired also in policy, for a redelivery whose first authorization has ended |
//! | bad signature | verify |
//! | replayed nonce, overloaded (replay cache full), no policy, no matching rule, deny rule | policy |
//! | overloaded (a full batch waited [`Config::shed_after`] for room in a full pipeline: shed past verify and policy) | ingest |
//! | internal error (an intent reaching seal undecided) | seal |
//!
//! Authorize is only ever set by the policy stage, and only for an intent
//! whose signature the verify stage accepted, whose nonce is fresh (or this
//! same intent's, with the same verdict), under an allow rule of the policy
//! the batch loaded.
//!
//! # Delivery
//!
//! At least once. The emit stage commits a source offset only after the
//! sink has acknowledged every decision and lineage record up to it. Shed
//! batches overtake others, so commits follow a watermark: a batch's offsets
//! are committed only once every earlier batch is acknowledged too.
//! A redelivered intent (same id, nonce and principal) meets its replay
//! cache entry and gets the verdict recorded for it; a different intent
//! reusing a nonce is a replay. Transient denies (overloaded, deadline
//! exceeded) are not recorded: they never authorize, and a redelivery is
//! decided afresh.
//!
//! Denies set before verification (malformed, unknown or revoked key,
//! times, shed) carry the intent id and parent *as the producer wrote
//! them*: anyone able to publish can obtain a signed deny naming any id.
//! A deny never authorizes anything, and a decision binds the digest of the
//! exact bytes decided, so executors must (and `verify_decision` does)
//! match decisions to intents by digest, never by id alone.
//!
//! INVARIANT: an intent is only accepted from the partition its signed
//! principal maps to ([`crate::transport::partition_for`], Kafka's murmur2
//! partitioner). Per-partition state (replay cache, lineage chain) is then
//! complete for each principal; an intent re-published under another key
//! would otherwise meet another partition's cache and look fresh.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError, bounded,
    unbounded,
};
// The per-intent lookups (by partition here; by key id and nonce in the
// trust store and replay cache) hash with foldhash, seeded at random: in a
// drain profile SipHash took 12 % of decode's samples and 7 % of seal's.
use foldhash::{HashMap, HashMapExt};
use hdrhistogram::Histogram;
use warrant_policy::{KeyStatus, Policy, PolicyStore, Request};
use warrant_schemas::wire::{AttrKind, Reason, Verdict};
use warrant_schemas::{
    Attr, AttrValue, INTENT_SIGNING_DOMAIN, KeyId, Limits, SignedIntentRef, open_signed_intent,
    unreadable_digest,
};

use crate::lineage::{Entry, LineageTail, LineageWriter, ReplayEntry};
use crate::link::{self, Bell, Link, Tap};
use crate::replay::{NonceKey, Outcome, ReplayCache, Seen};
use crate::seal::{DecisionCore, EngineKey, seal_with_leaves};
use crate::transport::{
    Handover, InRecord, KEEP_ALIVE, OutBatch, Sink, Source, TransportError, partition_for,
};
use crate::trust::{Lookup, TrustStore};
use crate::verify::{SigError, SigItem, verify_batch, verify_batch_parallel};

/// Which core each stage runs on (`None`: not pinned) and how many threads
/// verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Ingest stage core.
    pub ingest: Option<usize>,
    /// Decode stage core.
    pub decode: Option<usize>,
    /// Policy stage core.
    pub policy: Option<usize>,
    /// Seal stage core.
    pub seal: Option<usize>,
    /// Emit stage core.
    pub emit: Option<usize>,
    /// Threads in the verification pool; also the number of verify lanes
    /// (at most 4).
    pub verify_threads: usize,
    /// Cores the verification threads are pinned to, thread `i` to
    /// `verify_cores[i]` (threads beyond the list are not pinned).
    pub verify_cores: Vec<usize>,
}

impl Layout {
    /// The default for `cores` cores. With 4 or more, the light stages
    /// get cores of their own (ingest, decode and emit on core 0, policy
    /// and seal on core 1) and verification the rest. With fewer, nothing
    /// is pinned: every stage would share a core with a verification
    /// thread, and pinned threads cannot move when another process takes
    /// their core; on this project's 2-core machine pinning raised the
    /// demo's p99 at 2,000 intents/s from about 2 ms to about 11 ms
    /// (`warrant demo --rate 2000` with and without `--no-pin`).
    pub fn for_cores(cores: usize) -> Layout {
        Layout::for_core_ids(&(0..cores.max(1)).collect::<Vec<_>>())
    }

    /// [`Layout::for_cores`] over the CPUs this process may use, by id
    /// (under `taskset -c 4-7`, ids 4 to 7).
    pub fn for_core_ids(ids: &[usize]) -> Layout {
        match ids {
            [first, second, rest @ ..] if !rest.is_empty() && ids.len() >= 4 => Layout {
                ingest: Some(*first),
                decode: Some(*first),
                policy: Some(*second),
                seal: Some(*second),
                emit: Some(*first),
                verify_threads: rest.len(),
                verify_cores: rest.to_vec(),
            },
            _ => Layout::unpinned(ids.len().max(1)),
        }
    }

    /// The default for this machine's cores.
    pub fn auto() -> Layout {
        let ids: Vec<usize> = core_affinity::get_core_ids()
            .map(|c| c.into_iter().map(|c| c.id).collect())
            .unwrap_or_default();
        Layout::for_core_ids(&ids)
    }

    /// No pinning at all (tests, shared machines); `threads` verify threads.
    pub fn unpinned(threads: usize) -> Layout {
        Layout {
            ingest: None,
            decode: None,
            policy: None,
            seal: None,
            emit: None,
            verify_threads: threads.max(1),
            verify_cores: Vec::new(),
        }
    }
}

/// Engine settings. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most intents in one batch (default 256).
    pub max_batch: usize,
    /// Longest a batch stays open after its first intent (default 200 µs).
    pub linger: Duration,
    /// Depth of each queue between stages, in batches (default 4).
    pub queue_batches: usize,
    /// Depth of the queue in front of the sink, in sealed groups (default
    /// 0: `queue_batches`). A sink whose every send waits for a remote
    /// acknowledgement (Kafka) wants it deeper (`warrant run`: 64): groups
    /// wait there and leave merged in one send instead of stalling the
    /// stages. On a fast sink a shallow queue keeps seal grouping more
    /// (fewer signatures), which is what 2 cores need.
    pub emit_queue_batches: usize,
    /// Partitions of the intents topic: an intent must come from
    /// `partition_for(principal, partitions)`.
    pub partitions: u32,
    /// Audience written into every decision (default `executor`).
    pub audience: String,
    /// How far in the future `issued_at` may be (default 30 s).
    pub max_clock_skew: Duration,
    /// How old an intent may be when read (default 5 min); older is
    /// "expired". Bounds how long nonces are remembered.
    pub max_intent_age: Duration,
    /// Longest validity any authorization gets (default 1 h), whatever the
    /// intent asks and the rule allows: a rule without `max_validity`
    /// otherwise grants what the intent requests, up to forever.
    pub max_validity: Duration,
    /// Nonces remembered per partition (default 1,048,576); full means
    /// "overloaded" denies, never a forgotten nonce.
    pub replay_capacity: usize,
    /// Thread layout.
    pub layout: Layout,
    /// How long a full batch may wait for room in a full pipeline before
    /// it is shed, denied "overloaded" (default 100 ms). A backlog (say, a
    /// consumer catching up on Kafka) drains at full speed with no sheds:
    /// room appears each time verification finishes a group, a few
    /// milliseconds apart. A pipeline stalled for longer answers fast
    /// denies instead (unless the sink is what is slow: then ingest waits,
    /// see the module docs). At 20 ms, a backlog drain on 2 vCPUs shed a
    /// batch in about one round in 15 (`--bench pipeline`): a verify
    /// group of a backlog plus a scheduling or hypervisor stall reached
    /// it.
    pub shed_after: Duration,
    /// Shortest time between two lineage checkpoints of one partition
    /// (default 10 ms; zero: one per sealed group). Every decision is
    /// signed with its batch regardless; checkpoints cost a signature per
    /// partition, so at moderate load with small batches signing one per
    /// batch per partition would dominate. A partition's log always ends
    /// under a checkpoint: an idle seal stage checkpoints what is left
    /// after the interval, and a drained engine checkpoints everything.
    pub checkpoint_interval: Duration,
    /// Test hook: a verify lane sleeps this long per batch of each group
    /// it takes (default 0), before verifying it. Lanes sleep side by
    /// side, so with `n` lanes at work the stage passes up to `n /
    /// verify_stall` batches a second; a test that needs one rate sets
    /// one verify thread. Used to prove deadline checks and latency
    /// measurement under a stall, and to make lanes finish out of order.
    pub verify_stall: Duration,
    /// Test hook: the verify stage pauses once, for the given time, when
    /// it has verified at least the given number of intents (default
    /// none). One lane sleeps (waking the next lane first, if there is
    /// one, so that the others carry on); policy waits for its batches, so
    /// no decision after them leaves meanwhile. A one-off stall, for the
    /// coordinated-omission test: the load generator must see it in its
    /// percentiles.
    pub verify_pause: Option<(u64, Duration)>,
    /// Other engine public keys whose checkpoints a partition's lineage
    /// log may be resumed from (previous keys, or the keys of other
    /// instances of the group); the engine's own key always is (default
    /// none).
    pub peer_engine_keys: Vec<[u8; 32]>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_batch: 256,
            linger: Duration::from_micros(200),
            queue_batches: 4,
            emit_queue_batches: 0,
            partitions: 1,
            audience: "executor".into(),
            max_clock_skew: Duration::from_secs(30),
            max_intent_age: Duration::from_secs(300),
            max_validity: Duration::from_secs(3600),
            replay_capacity: 1 << 20,
            shed_after: Duration::from_millis(100),
            checkpoint_interval: Duration::from_millis(10),
            layout: Layout::auto(),
            verify_stall: Duration::ZERO,
            verify_pause: None,
            peer_engine_keys: Vec::new(),
        }
    }
}

/// Why the engine could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A setting is unusable.
    #[error("invalid engine setting: {0}")]
    Config(String),
    /// A thread could not be started.
    #[error("cannot start engine thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The transport failed for good; undelivered intents were not
    /// committed and will be read again.
    #[error("engine stopped: {0}")]
    Failed(String),
}

/// Counters and latency, updated once per batch.
#[derive(Debug)]
pub struct Stats {
    intents_in: AtomicU64,
    batches: AtomicU64,
    shed_intents: AtomicU64,
    by_reason: [AtomicU64; 16],
    lineage_records: AtomicU64,
    /// Busy time per stage, ns (decode, verify, policy, seal, emit);
    /// verify's is summed over its lanes (it can pass the elapsed time).
    busy_ns: [AtomicU64; 5],
    /// Microseconds from a batch's first poll to the sink's ack, per intent.
    latency_us: Mutex<Histogram<u64>>,
    /// Set while the sink refuses or has not acknowledged a batch within
    /// its timeout (broker down): the engine is not ready.
    sink_stalled: AtomicBool,
    /// Successful `Sink::send` calls.
    sink_sends: AtomicU64,
    /// Intents per batch entering decode (shed batches included).
    batch_sizes: Buckets,
    /// Time per batch (per group: verify, seal; per send: emit) in each
    /// stage, µs.
    stage_us: [Buckets; 5],
    /// Batches waiting in each queue ([`QUEUES`]) as last seen by either
    /// end (each end stores the length after it sends or receives, so a
    /// stalled stage's input still shows full).
    queue_len: [AtomicUsize; 6],
    /// Batches policy has taken off its channel and not yet evaluated:
    /// held until an earlier one arrives, or released and waiting their
    /// turn. They wait for policy too, so the policy queue's gauge counts
    /// them.
    policy_held: AtomicUsize,
    /// CPU time of each engine thread that has ended, by name.
    thread_cpu: Mutex<Vec<(String, Duration)>>,
}

/// The queues between stages, named by the stage they feed, in the order
/// of [`StatsSnapshot::queues`] (`shed` carries shed batches past verify
/// and policy to seal).
pub const QUEUES: [&str; 6] = ["decode", "verify", "policy", "seal", "shed", "emit"];

/// Bounds of [`StatsSnapshot::batch_sizes`], intents.
pub const BATCH_SIZE_BOUNDS: &[u64] = &[
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 4_096, 16_384, 65_536,
];

/// Bounds of [`StatsSnapshot::stage_us`], µs.
pub const STAGE_US_BOUNDS: &[u64] = &[
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    1_000_000, 5_000_000,
];

/// A fixed-bucket histogram that any thread records into with one atomic
/// add (Prometheus-style: the count per upper bound, plus a sum).
#[derive(Debug)]
struct Buckets {
    bounds: &'static [u64],
    /// One per bound, and one past the last (+Inf).
    counts: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl Buckets {
    fn new(bounds: &'static [u64]) -> Buckets {
        Buckets {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    fn record(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(v, Ordering::Relaxed);
    }

    fn snapshot(&self) -> BucketCounts {
        let mut cumulative = Vec::with_capacity(self.counts.len());
        let mut total = 0;
        for c in &self.counts {
            total += c.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        BucketCounts {
            bounds: self.bounds,
            cumulative,
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A fixed-bucket histogram's counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCounts {
    /// Upper bounds (inclusive).
    pub bounds: &'static [u64],
    /// Values at most each bound, then the total (the +Inf bucket).
    pub cumulative: Vec<u64>,
    /// Sum of the values recorded.
    pub sum: u64,
}

impl BucketCounts {
    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

impl Stats {
    fn new() -> Self {
        Stats {
            intents_in: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            shed_intents: AtomicU64::new(0),
            by_reason: std::array::from_fn(|_| AtomicU64::new(0)),
            lineage_records: AtomicU64::new(0),
            busy_ns: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_us: Mutex::new(new_histogram()),
            sink_stalled: AtomicBool::new(false),
            sink_sends: AtomicU64::new(0),
            batch_sizes: Buckets::new(BATCH_SIZE_BOUNDS),
            stage_us: std::array::from_fn(|_| Buckets::new(STAGE_US_BOUNDS)),
            queue_len: std::array::from_fn(|_| AtomicUsize::new(0)),
            policy_held: AtomicUsize::new(0),
            thread_cpu: Mutex::new(Vec::new()),
        }
    }

    /// A consistent-enough copy of the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let latency = self
            .latency_us
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        StatsSnapshot {
            intents_in: self.intents_in.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            shed_intents: self.shed_intents.load(Ordering::Relaxed),
            by_reason: std::array::from_fn(|i| {
                self.by_reason
                    .get(i)
                    .map_or(0, |c| c.load(Ordering::Relaxed))
            }),
            lineage_records: self.lineage_records.load(Ordering::Relaxed),
            sink_stalled: self.sink_stalled.load(Ordering::Relaxed),
            sink_sends: self.sink_sends.load(Ordering::Relaxed),
            stage_busy: std::array::from_fn(|i| {
                let ns = self.busy_ns.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
                (
                    STAGES.get(i).copied().unwrap_or(""),
                    Duration::from_nanos(ns),
                )
            }),
            latency_us: latency,
            batch_sizes: self.batch_sizes.snapshot(),
            queues: std::array::from_fn(|i| {
                let held = if i == 2 {
                    self.policy_held.load(Ordering::Relaxed)
                } else {
                    0
                };
                self.queue_len
                    .get(i)
                    .map_or(0, |q| q.load(Ordering::Relaxed))
                    + held
            }),
            stage_us: std::array::from_fn(|i| {
                self.stage_us.get(i).map_or_else(
                    || Buckets::new(STAGE_US_BOUNDS).snapshot(),
                    Buckets::snapshot,
                )
            }),
            thread_cpu: self
                .thread_cpu
                .lock()
                .map(|v| v.clone())
                .unwrap_or_else(|e| e.into_inner().clone()),
        }
    }
}

/// Stage names, in the order of [`StatsSnapshot::stage_busy`].
pub const STAGES: [&str; 5] = ["decode", "verify", "policy", "seal", "emit"];

impl Stats {
    /// Records the length of queue `q` ([`QUEUES`]).
    fn depth(&self, q: usize, len: usize) {
        if let Some(a) = self.queue_len.get(q) {
            a.store(len, Ordering::Relaxed);
        }
    }

    /// Adds `d` to stage `i`'s busy time and duration histogram.
    fn busy(&self, i: usize, d: Duration) {
        if let Some(c) = self.busy_ns.get(i) {
            c.fetch_add(
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        if let Some(b) = self.stage_us.get(i) {
            b.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        }
    }

    /// Records the CPU time the calling thread has used, under `name`.
    fn thread_ended(&self, name: String) {
        if let Some(cpu) = thread_cpu_time() {
            self.thread_cpu
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((name, cpu));
        }
    }

    /// Runs `f`, adding its duration to stage `i`'s busy time.
    fn time<T>(&self, i: usize, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.busy(i, t.elapsed());
        r
    }
}

/// A 3-significant-digit histogram of microseconds up to one hour
/// (larger values saturate).
#[expect(clippy::expect_used, reason = "constant, valid bounds")]
pub fn new_histogram() -> Histogram<u64> {
    let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    h.auto(false);
    h
}

/// The engine's counters at one moment.
#[derive(Debug, Clone)]
pub struct StatsSnapshot {
    /// Records read from the source.
    pub intents_in: u64,
    /// Ingest batches decided and acknowledged.
    pub batches: u64,
    /// Intents shed at ingest (denied "overloaded").
    pub shed_intents: u64,
    /// Decisions emitted, indexed by `Reason` value.
    pub by_reason: [u64; 16],
    /// Lineage records emitted, one per decision (checkpoints not counted).
    pub lineage_records: u64,
    /// Time each stage spent working (not waiting), by stage name;
    /// verify's is summed over its lanes.
    pub stage_busy: [(&'static str, Duration); 5],
    /// Whether the sink is failing to acknowledge right now (retrying;
    /// nothing is committed meanwhile).
    pub sink_stalled: bool,
    /// Successful sends to the sink (each carries one or more sealed
    /// groups: emit merges what is waiting).
    pub sink_sends: u64,
    /// Engine latency per intent, µs: first poll of its batch to sink ack.
    pub latency_us: Histogram<u64>,
    /// Intents per batch read ([`BATCH_SIZE_BOUNDS`]).
    pub batch_sizes: BucketCounts,
    /// Time per batch or group in each stage, µs ([`STAGE_US_BOUNDS`]),
    /// in the order of [`STAGES`].
    pub stage_us: [BucketCounts; 5],
    /// Batches waiting in each queue between stages ([`QUEUES`]); the
    /// policy queue also counts the batches policy has taken off its
    /// channel and not yet evaluated (those it holds until an earlier one
    /// arrives among them).
    pub queues: [usize; 6],
    /// CPU time each engine thread used, by thread name without the
    /// `warrant-` prefix (`decode`, `verify-0`, `vlane0`, ...): what each
    /// stage costs where it runs, beside the others. Filled in as threads
    /// end, so complete only in the snapshot [`Engine::join`] returns;
    /// empty where the OS does not report a thread's CPU time (it is read
    /// from Linux's `/proc/thread-self/schedstat`, as of the thread's last
    /// context switch or scheduler tick).
    pub thread_cpu: Vec<(String, Duration)>,
}

impl StatsSnapshot {
    /// Decisions emitted.
    pub fn decisions(&self) -> u64 {
        self.by_reason.iter().sum()
    }

    /// Decisions with `reason`.
    pub fn count(&self, reason: Reason) -> u64 {
        self.by_reason
            .get(usize::from(reason.0))
            .copied()
            .unwrap_or(0)
    }
}

/// CPU time the calling thread has used, if the OS reports it: the first
/// field of `/proc/thread-self/schedstat` (ns on a CPU; Linux), as of the
/// thread's last context switch or scheduler tick, so at most a tick
/// short. A kernel without scheduler statistics writes `0 0 0` there,
/// which is "not reported" (a thread that has run has been scheduled at
/// least once: the third field).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
    let ns = fields.next()??;
    let scheduled = fields.nth(1)??;
    (ns > 0 || scheduled > 0).then(|| Duration::from_nanos(ns))
}

/// µs since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The wall clock as one stage sees it: never going back. The policy
/// stage's replay cache forgets a nonce once the clock passes the end of
/// its window; were the clock then stepped back (NTP), a redelivery of that
/// intent would find it forgotten yet inside its window again, and be
/// authorized afresh with a new end. With this clock it is past its window
/// for good.
#[derive(Debug, Default)]
struct SteadyClock {
    last: u64,
}

impl SteadyClock {
    /// `wall`, or the latest time seen if `wall` is earlier.
    fn at(&mut self, wall: u64) -> u64 {
        self.last = self.last.max(wall);
        self.last
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// How an intent was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Done {
    reason: Reason,
    /// Deciding rule (file order) of the batch's policy.
    rule: Option<usize>,
    /// Validity granted, µs (0 for a deny).
    validity_us: u64,
    /// Latest `valid_until` the decision may carry (µs): set by the policy
    /// stage, so that a redelivered intent is never authorized for longer
    /// than the first time.
    until_cap_us: u64,
}

impl Done {
    fn deny(reason: Reason) -> Done {
        Done {
            reason,
            rule: None,
            validity_us: 0,
            until_cap_us: u64::MAX,
        }
    }
}

/// One intent's state as it moves through the stages.
#[derive(Debug, Clone)]
struct Item {
    /// Intent id (for an unreadable buffer: the first 16 bytes of its digest).
    id: [u8; 16],
    /// The intent's digest (`warrant_schemas::intent_digest` of the payload).
    digest: [u8; 32],
    parent: Option<[u8; 16]>,
    deadline_us: u64,
    /// End of the window in which this intent could be authorized.
    remember_until_us: u64,
    requested_validity_us: u64,
    key_id: KeyId,
    key_status: KeyStatus,
    nonce: Option<NonceKey>,
    /// Where the signed `Intent` bytes sit in the payload.
    intent_range: Range<usize>,
    signature: [u8; 64],
    /// The policy's answer, computed at decode (authorizes nothing by
    /// itself).
    evaluated: Done,
    /// `None` while undecided.
    done: Option<Done>,
    /// Set when the policy stage remembered this verdict: (nonce key,
    /// until), logged with the lineage record for the next owner.
    remembered: Option<([u8; 16], u64)>,
}

impl Item {
    fn unread(digest: [u8; 32]) -> Item {
        let mut id = [0u8; 16];
        id.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        Item {
            id,
            digest,
            parent: None,
            deadline_us: u64::MAX,
            remember_until_us: 0,
            requested_validity_us: 0,
            key_id: [0; 16],
            key_status: KeyStatus::Active,
            nonce: None,
            intent_range: 0..0,
            signature: [0; 64],
            evaluated: Done::deny(Reason::NoPolicy),
            done: Some(Done::deny(Reason::Malformed)),
            remembered: None,
        }
    }
}

/// A batch moving through the stages: the records it owns and one item
/// per record, in order.
struct Batch {
    seq: u64,
    /// Order in which decode handed the batch to verify (0, 1, 2, …):
    /// verify lanes finish out of order, policy takes batches in this one.
    vseq: u64,
    records: Vec<InRecord>,
    items: Vec<Item>,
    polled_at: Instant,
    /// Trust store version the batch was decoded with.
    trust: Option<Arc<TrustStore>>,
    /// Policy version the batch was decided with.
    policy: Option<Arc<Policy>>,
    shed: bool,
}

impl Batch {
    /// Denies every undecided item whose deadline or maximum age has
    /// passed (its nonce would be forgotten at once otherwise).
    fn check_deadlines(&mut self, now: u64) {
        for item in &mut self.items {
            if item.done.is_none() {
                item.done = past_window(item, now).map(Done::deny);
            }
        }
    }
}

/// Why an intent can no longer be authorized at `now`, if it cannot:
/// its deadline passed, or it grew older than the maximum age.
/// Decode and every later stage use this one rule, so an intent let
/// through at one boundary is not denied at the next for the same instant.
fn past_window(item: &Item, now: u64) -> Option<Reason> {
    if now >= item.deadline_us {
        Some(Reason::DeadlineExceeded)
    } else if now >= item.remember_until_us {
        // At `remember_until` the replay cache forgets the nonce
        // (`ReplayCache::check`): the intent must be past its window too.
        Some(Reason::Expired)
    } else {
        None
    }
}

/// Settings the decode stage needs.
struct DecodeRules {
    limits: Limits,
    partitions: u32,
    skew_us: u64,
    max_age_us: u64,
    max_validity_us: u64,
}

/// Opens one record: its id, digest, parent, times, key id, and where its
/// signed bytes are. An unreadable record comes back denied "malformed".
fn open_item<'a>(rec: &'a InRecord, limits: &Limits) -> (Item, Option<SignedIntentRef<'a>>) {
    if let Some(digest) = rec.oversize_digest {
        return (Item::unread(digest), None);
    }
    let Ok(signed) = open_signed_intent(&rec.payload, limits) else {
        return (Item::unread(unreadable_digest(&rec.payload)), None);
    };
    // Named by what was signed, not by the wrapper's bytes (a copy with a
    // trailing byte is the same intent: `warrant_schemas::intent_digest`).
    let mut item = Item::unread(signed.digest());
    let start = signed
        .intent_bytes
        .as_ptr()
        .addr()
        .checked_sub(rec.payload.as_ptr().addr());
    let Some(start) = start else {
        return (item, None);
    };
    let intent = signed.intent;
    item.id = intent.id().0;
    item.parent = intent.parent_id().map(|p| p.0);
    item.deadline_us = intent.deadline_us();
    item.requested_validity_us = intent.requested_validity_us();
    item.key_id = intent.key_id().0;
    item.intent_range = start..start + signed.intent_bytes.len();
    item.signature = *signed.signature;
    item.done = None;
    (item, Some(signed))
}

/// Opens one record and runs every check that needs no signature:
/// buffer, routing, key, times.
fn decode<'a>(
    rec: &'a InRecord,
    rules: &DecodeRules,
    trust: &TrustStore,
    policy: Option<&Policy>,
    attrs: &mut Vec<Attr<'a>>,
    now: u64,
) -> Item {
    let (mut item, signed) = open_item(rec, &rules.limits);
    let Some(signed) = signed else {
        return item;
    };
    let intent = signed.intent;
    let principal = intent.principal();
    let issued = intent.issued_at_us();
    item.remember_until_us = item
        .deadline_us
        .min(issued.saturating_add(rules.max_age_us));
    item.done = if partition_for(principal.as_bytes(), rules.partitions) != rec.partition {
        Some(Done::deny(Reason::Malformed))
    } else {
        match trust.lookup(&item.key_id, principal) {
            Lookup::Unknown => Some(Done::deny(Reason::UnknownKey)),
            Lookup::Revoked => Some(Done::deny(Reason::RevokedKey)),
            Lookup::Usable(_, status) => {
                item.key_status = status;
                if issued > now.saturating_add(rules.skew_us) {
                    Some(Done::deny(Reason::NotYetValid))
                } else if let Some(late) = past_window(&item, now) {
                    Some(Done::deny(late))
                } else {
                    item.nonce = Some(NonceKey::new(principal, &intent.nonce().0));
                    // Evaluated now, while the buffer is open; it counts
                    // only once the signature verifies and the nonce is
                    // fresh (policy stage).
                    item.evaluated = evaluate(&intent, policy, attrs, &item, now);
                    item.evaluated.validity_us =
                        item.evaluated.validity_us.min(rules.max_validity_us);
                    None
                }
            }
        }
    };
    item
}

/// The policy's answer for an opened intent.
fn evaluate<'a>(
    intent: &warrant_schemas::wire::Intent<'a>,
    policy: Option<&Policy>,
    attrs: &mut Vec<Attr<'a>>,
    item: &Item,
    now: u64,
) -> Done {
    let Some(p) = policy else {
        return Done::deny(Reason::NoPolicy);
    };
    attributes(intent, attrs);
    let outcome = p.evaluate(&Request {
        principal: intent.principal(),
        action: intent.action(),
        resource: intent.resource(),
        environment: intent.environment(),
        region: intent.region(),
        attributes: attrs,
        minute_of_day: u16::try_from((now / 60_000_000) % 1440).unwrap_or(0),
        key_status: item.key_status,
    });
    let reason = p.reason(&outcome);
    let validity_us = p.granted_validity_us(&outcome, item.requested_validity_us);
    if reason == Reason::Authorized && validity_us == 0 {
        // An authorization valid for no time at all: every executor would
        // refuse it as expired. The intent asked for none.
        return Done::deny(Reason::Malformed);
    }
    Done {
        reason,
        rule: outcome.rule,
        validity_us,
        until_cap_us: u64::MAX,
    }
}

/// Reads a running engine's counters from any thread.
#[derive(Debug, Clone)]
pub struct Probe {
    stats: Arc<Stats>,
    failure: Arc<Mutex<Option<String>>>,
}

impl Probe {
    /// Live counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Whether the sink is failing to acknowledge right now (one atomic
    /// load; `stats` copies the latency histogram).
    pub fn sink_stalled(&self) -> bool {
        self.stats.sink_stalled.load(Ordering::Relaxed)
    }

    /// The fatal error that stopped the engine, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }
}

impl Config {
    /// Most intents an engine with these settings holds at once (read from
    /// the source and not yet acknowledged by the sink), whatever the
    /// offered load: every queue between stages is bounded, and each stage
    /// holds at most one batch or group. In batches of `max_batch`: one at
    /// ingest, the decode queue, one at decode, the permits between decode
    /// and policy (`queue_batches × (2 × lanes + 2)`), one at policy, the
    /// seal and shed queues; then seal's group, the emit queue's sealed
    /// groups and emit's merged send (a group or send can pass its limit
    /// by one batch or group). `engine/tests/overload.rs` holds the engine
    /// to it under load far above capacity.
    pub fn max_in_flight(&self) -> usize {
        let depth = self.queue_batches.max(1);
        let lanes = self.layout.verify_threads.clamp(1, MAX_VERIFY_LANES);
        let emit_depth = if self.emit_queue_batches == 0 {
            depth
        } else {
            self.emit_queue_batches
        };
        let batches = 1 + depth + 1 + depth * (2 * lanes + 2) + 1 + depth + depth;
        let group = GROUP_MAX + self.max_batch;
        batches * self.max_batch + group + emit_depth * group + EMIT_MAX + group
    }

    /// Whether the engine can start with these settings: the error
    /// [`Engine::start`] would give, without starting anything (`warrant
    /// run --check` uses it).
    pub fn check(&self) -> Result<(), EngineError> {
        if self.audience.is_empty() || self.audience.len() > Limits::default().max_string_bytes {
            return Err(EngineError::Config(format!(
                "audience must be 1 to {} bytes, got {}",
                Limits::default().max_string_bytes,
                self.audience.len()
            )));
        }
        if self.max_batch == 0 || self.max_batch > 65_536 {
            return Err(EngineError::Config(format!(
                "max batch must be 1 to 65536, got {}",
                self.max_batch
            )));
        }
        if self.partitions == 0 {
            return Err(EngineError::Config("partitions must be at least 1".into()));
        }
        if self.max_validity < Duration::from_micros(1) {
            return Err(EngineError::Config(
                "max validity must be longer than zero".into(),
            ));
        }
        if self.max_intent_age < Duration::from_secs(1) {
            return Err(EngineError::Config(
                "max intent age must be at least 1 s (every intent would be expired)".into(),
            ));
        }
        Ok(())
    }
}

/// A running engine. Drop it only through [`Engine::shutdown`] or
/// [`Engine::join`], which drain what was read.
pub struct Engine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The verify pool, kept to read its threads' CPU time at the end.
    pool: Arc<rayon::ThreadPool>,
    stats: Arc<Stats>,
    failure: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

/// Shared by every stage.
#[derive(Clone)]
struct Shared {
    stop: Arc<AtomicBool>,
    /// Set when ingest has read its last record: the engine is draining.
    draining: Arc<AtomicBool>,
    stats: Arc<Stats>,
    failure: Arc<Mutex<Option<String>>>,
}

impl Shared {
    /// Whether a stage has failed (set by [`Shared::fail`]).
    fn failed(&self) -> bool {
        lock(&self.failure).is_some()
    }

    /// Records the first fatal error and asks every stage to stop.
    fn fail(&self, message: String) {
        let mut f = self
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.is_none() {
            *f = Some(message);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A partition change the source reported, for the stages that keep
/// per-partition state.
enum Change {
    /// The partition's lineage log continues from this tail.
    Acquire(u32, LineageTail),
    /// The partition is gone: drop its state.
    Revoke(u32),
}

/// The engine's [`Handover`]: what a source moving partitions between
/// engine instances calls (see [`Source::attach`]).
struct Ownership {
    /// Set by the first [`Handover::acquire`]: partitions are then only
    /// sealed after their own acquire (never on a fresh chain that could fork the
    /// log another instance wrote).
    managed: AtomicBool,
    /// Batches ingest handed to the pipeline.
    handed: AtomicU64,
    /// Batches acknowledged by the sink, contiguously from the first.
    acked: AtomicU64,
    /// Every stage has ended, the sink with them: nothing of this engine
    /// can be written any more, so a release has nothing to wait for (a
    /// consumer closing after a failed drain hands its partitions back).
    finished: AtomicBool,
    /// The engine's commit queue (the emit stage's acknowledged offsets).
    commits: Receiver<(u32, u64)>,
    /// Changes for the seal stage (lineage writers).
    seal: Mutex<Vec<Change>>,
    seal_pending: AtomicBool,
    /// Changes for the policy stage (replay caches).
    policy: Mutex<Vec<PolicyChange>>,
    policy_pending: AtomicBool,
    shared: Shared,
    /// The engine's own public key, then `Config::peer_engine_keys`.
    engine_keys: Vec<[u8; 32]>,
    /// How far back decisions can have left live replay memory.
    replay_horizon: Duration,
    /// `Config::partitions`: principals are routed over this many.
    partitions: u32,
}

/// A partition change for the policy stage.
enum PolicyChange {
    /// The partition's replay memory, as its lineage log recorded it.
    Acquire(u32, Vec<ReplayEntry>),
    /// The partition is gone: drop its cache.
    Revoke(u32),
}

impl Ownership {
    fn push_seal(&self, c: Change) {
        lock(&self.seal).push(c);
        self.seal_pending.store(true, Ordering::SeqCst);
    }

    fn take_seal(&self) -> Vec<Change> {
        if !self.seal_pending.swap(false, Ordering::SeqCst) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.seal))
    }

    fn push_policy(&self, c: PolicyChange) {
        lock(&self.policy).push(c);
        self.policy_pending.store(true, Ordering::SeqCst);
    }

    fn take_policy(&self) -> Vec<PolicyChange> {
        if !self.policy_pending.swap(false, Ordering::SeqCst) {
            return Vec::new();
        }
        std::mem::take(&mut *lock(&self.policy))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Handover for Ownership {
    fn release(&self, timeout: Duration) -> Result<Vec<(u32, u64)>, String> {
        let until = Instant::now() + timeout;
        while self.acked.load(Ordering::SeqCst) < self.handed.load(Ordering::SeqCst)
            && !self.finished.load(Ordering::SeqCst)
        {
            if let Some(f) = lock(&self.shared.failure).clone() {
                return Err(format!("engine failed: {f}"));
            }
            if Instant::now() >= until {
                let message = format!(
                    "partitions revoked, but what was read of them is not acknowledged \
                     after {timeout:?}: stopping rather than hand them over half done"
                );
                self.shared.fail(message.clone());
                return Err(message);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(self.commits.try_iter().collect())
    }

    fn acquire(&self, partition: u32, mut tail: LineageTail) {
        // Managed from the first acquire, refused or not: nothing may be
        // sealed on a fresh chain (records the same poll hands on
        // included), so nothing of a refused partition is committed.
        self.managed.store(true, Ordering::SeqCst);
        if partition >= self.partitions {
            // The topic grew after start: every intent of this partition
            // would be denied "malformed" (its principal routes elsewhere
            // under the old count) and committed, gone for good.
            self.shared.fail(format!(
                "partition {partition} was assigned, but this engine routes principals over {} \
                 partitions (the intents topic's count when it started): the topic has grown; \
                 stop every instance and start them again (see connectors/README.md on \
                 changing the partition count)",
                self.partitions
            ));
            return;
        }
        let replay = tail.take_replay();
        self.push_policy(PolicyChange::Acquire(partition, replay));
        self.push_seal(Change::Acquire(partition, tail));
    }

    fn revoke(&self, partition: u32) {
        self.push_seal(Change::Revoke(partition));
        self.push_policy(PolicyChange::Revoke(partition));
    }

    fn replay_horizon(&self) -> Duration {
        self.replay_horizon
    }

    fn engine_keys(&self) -> Vec<[u8; 32]> {
        self.engine_keys.clone()
    }

    fn fail(&self, message: String) {
        // A source that hands partitions over is managed even if its first
        // acquire failed: nothing may be sealed on a fresh chain.
        self.managed.store(true, Ordering::SeqCst);
        self.shared.fail(message);
    }
}

fn pin(core: Option<usize>) {
    if let Some(id) = core {
        // Pinning is best effort: a core that does not exist (a container
        // with fewer CPUs) leaves the thread unpinned, never stops it.
        let _pinned = core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

/// Stops the engine if its stage thread unwinds: the other stages then
/// drain and `join` reports it, instead of waiting on a stage that is gone.
struct StageGuard {
    name: String,
    shared: Shared,
}

impl Drop for StageGuard {
    fn drop(&mut self) {
        self.shared.stats.thread_ended(self.name.clone());
        if std::thread::panicking() {
            self.shared
                .fail(format!("the {} stage panicked", self.name));
        }
    }
}

fn spawn(
    name: &str,
    core: Option<usize>,
    shared: &Shared,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, EngineError> {
    let guard = StageGuard {
        name: name.to_owned(),
        shared: shared.clone(),
    };
    Ok(std::thread::Builder::new()
        .name(format!("warrant-{name}"))
        .spawn(move || {
            let _guard = guard;
            pin(core);
            f();
        })?)
}

impl Engine {
    /// Starts the stages. The engine reads `source` until it is closed or
    /// [`Engine::shutdown`] is called; `trust` and `policy` may be replaced
    /// while it runs (each batch uses the versions it loaded).
    pub fn start<S: Source + 'static, K: Sink + 'static>(
        config: Config,
        source: S,
        sink: K,
        key: EngineKey,
        trust: Arc<ArcSwap<TrustStore>>,
        policy: Arc<PolicyStore>,
    ) -> Result<Engine, EngineError> {
        config.check()?;
        let shared = Shared {
            stop: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
            stats: Arc::new(Stats::new()),
            failure: Arc::new(Mutex::new(None)),
        };
        let depth = config.queue_batches.max(1);
        // The stages' queues park a waiting receiver at once (`link`).
        let (decode_tx, decode_rx) = link::bounded::<Batch>(depth);
        let (verify_tx, verify_rx) = link::bounded::<Batch>(depth);
        let (policy_tx, policy_rx) = link::bounded::<Batch>(depth);
        // Seal waits on two queues: one bell for both.
        let seal_bell = Bell::new();
        let (seal_tx, seal_rx) = link::bounded_with::<Batch>(depth, seal_bell.clone());
        let lanes = config.layout.verify_threads.clamp(1, MAX_VERIFY_LANES);
        // Batches between decode and policy: the verify queue, a group
        // per lane, the policy queue, and those waiting in policy for an
        // earlier one.
        let permits = depth * (2 * lanes + 2);
        let (permit_tx, permit_rx) = bounded::<()>(permits);
        let (shed_tx, shed_rx) = link::bounded_with::<Batch>(depth, seal_bell.clone());
        // In front of a remote sink this queue is deeper (see
        // `Config::emit_queue_batches`): while the sink waits for a
        // broker's acknowledgement, sealed groups (however small) pile up
        // here and leave merged in the next send, instead of stalling the
        // stages behind a few small groups. Bounded either way.
        let emit_depth = if config.emit_queue_batches == 0 {
            depth
        } else {
            config.emit_queue_batches
        };
        let (emit_tx, emit_rx) = link::bounded::<Sealed>(emit_depth);
        // Unbounded, but never longer than the batches in flight: one entry
        // per partition per acknowledged batch.
        let (commit_tx, commit_rx) = unbounded::<(u32, u64)>();
        let owner = Arc::new(Ownership {
            managed: AtomicBool::new(false),
            handed: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            commits: commit_rx.clone(),
            seal: Mutex::new(Vec::new()),
            seal_pending: AtomicBool::new(false),
            policy: Mutex::new(Vec::new()),
            policy_pending: AtomicBool::new(false),
            shared: shared.clone(),
            engine_keys: std::iter::once(key.public_key())
                .chain(config.peer_engine_keys.iter().copied())
                .collect(),
            replay_horizon: config.max_intent_age.saturating_add(config.max_clock_skew),
            partitions: config.partitions,
        });
        let mut source = source;
        source.attach(owner.clone());

        let verify_cores = config.layout.verify_cores.clone();
        let threads = config.layout.verify_threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("warrant-verify-{i}"))
            .start_handler(move |i| pin(verify_cores.get(i).copied()))
            .build()
            .map_err(|e| EngineError::Config(format!("cannot build the verify pool: {e}")))?;

        let mut handles = Vec::new();
        let c = config.clone();
        let s = shared.clone();
        let o = owner.clone();
        let backlog = emit_rx.clone();
        handles.push(spawn("ingest", c.layout.ingest, &shared, move || {
            let links = IngestLinks {
                decode_tx,
                shed_tx,
                commit_rx,
                emit_backlog: backlog,
            };
            ingest(&c, source, links, &s, &o);
        })?);

        let rules = DecodeRules {
            limits: Limits::default(),
            partitions: config.partitions,
            skew_us: micros(config.max_clock_skew),
            max_age_us: micros(config.max_intent_age),
            max_validity_us: micros(config.max_validity),
        };
        let t = trust.clone();
        let s = shared.clone();
        let p = policy.clone();
        handles.push(spawn("decode", config.layout.decode, &shared, move || {
            for (vseq, mut batch) in (0u64..).zip(decode_rx.iter()) {
                s.stats.depth(0, decode_rx.len());
                let n = batch.records.len() as u64;
                s.stats.intents_in.fetch_add(n, Ordering::Relaxed);
                s.stats.batch_sizes.record(n);
                let now = now_us();
                let store = t.load_full();
                let policy = p.current();
                batch.items = s.stats.time(0, || {
                    let mut attrs = Vec::with_capacity(32);
                    batch
                        .records
                        .iter()
                        .map(|r| decode(r, &rules, &store, policy.as_deref(), &mut attrs, now))
                        .collect()
                });
                batch.trust = Some(store);
                batch.policy = policy;
                batch.vseq = vseq;
                // One permit per batch from here to policy's in-order
                // release: however lanes finish, at most `permits` batches
                // are between the two. Waiting for one, decode notices a
                // failure (a lane that died with a batch means no permit
                // comes back), but not `stop`: a shutdown still decides
                // everything read.
                if !send_unless_failed(&permit_tx, (), &s) {
                    return;
                }
                if verify_tx.send(batch).is_err() {
                    return;
                }
                s.stats.depth(1, verify_tx.len());
            }
        })?);

        let stall = config.verify_stall;
        let pause = config.verify_pause;
        let verified = Arc::new(AtomicU64::new(0));
        let paused = Arc::new(AtomicBool::new(false));
        let pool = Arc::new(pool);
        // Lane 0 takes every batch off the verify queue. Lane `i + 1`
        // sleeps until lane `i` finds a queue formed behind it (it gathered
        // more than one batch), then takes groups as they come until none
        // has come for `LANE_IDLE`. (Leaving as soon as the queue was empty
        // helped little: woken after lane `i` had taken the queue, it found
        // nothing and slept again.)
        // At low load one lane verifies and the other cores stay free for
        // the light stages; in a burst or a backlog, small groups are
        // verified side by side instead of queueing behind one thread, and
        // one lane's group keeps the pool busy while another's finishes.
        // Policy puts the batches back in decode's order.
        let wakes: Vec<(Sender<()>, Receiver<()>)> = (0..lanes).map(|_| bounded(1)).collect();
        for lane in 0..lanes {
            let s = shared.clone();
            let (verify_rx, policy_tx) = (verify_rx.clone(), policy_tx.clone());
            let (verified, paused, pool) = (verified.clone(), paused.clone(), pool.clone());
            let woken_by = wakes.get(lane).filter(|_| lane > 0).map(|w| w.1.clone());
            let next = wakes.get(lane + 1).map(|w| w.0.clone());
            let name = format!("vlane{lane}");
            handles.push(spawn(&name, None, &shared, move || {
                // Verifies the group that starts with `first`; false once
                // policy is gone.
                let run = |first: Batch| -> bool {
                    // Batches already waiting are verified together:
                    // larger batch equations when the stage is behind.
                    let mut group = gather(first, GROUP_MAX, |_| verify_rx.try_recv().ok());
                    s.stats.depth(1, verify_rx.len());
                    if group.len() > 1
                        && let Some(next) = &next
                    {
                        // Full: the next lane has a wake-up pending.
                        let _woken = next.try_send(());
                    }
                    if !stall.is_zero() {
                        let batches = u32::try_from(group.len()).unwrap_or(u32::MAX);
                        std::thread::sleep(stall.saturating_mul(batches));
                    }
                    let n = group.iter().map(|b| b.items.len() as u64).sum::<u64>();
                    let total = verified.fetch_add(n, Ordering::Relaxed) + n;
                    if let Some((after, time)) = pause
                        && total >= after
                        && !paused.swap(true, Ordering::Relaxed)
                    {
                        // The other lanes carry on meanwhile (woken here
                        // even if no queue has formed yet), as they would
                        // behind a lane that is really stuck.
                        if let Some(next) = &next {
                            let _woken = next.try_send(());
                        }
                        std::thread::sleep(time);
                    }
                    let now = now_us();
                    for batch in &mut group {
                        batch.check_deadlines(now);
                    }
                    s.stats.time(1, || {
                        if n <= crate::verify::MIN_PARALLEL_CHUNK as u64 {
                            // Too few to split over the pool: verified
                            // here, without waking a pool thread (whose
                            // wake-up and idle spin cost more than these
                            // signatures).
                            verify_group(&mut group, false);
                        } else {
                            pool.install(|| verify_group(&mut group, true));
                        }
                    });
                    for batch in group {
                        if policy_tx.send(batch).is_err() {
                            return false;
                        }
                        s.stats.depth(2, policy_tx.len());
                    }
                    true
                };
                match woken_by {
                    None => {
                        for first in verify_rx.iter() {
                            if !run(first) {
                                return;
                            }
                        }
                    }
                    Some(woken_by) => {
                        for () in woken_by.iter() {
                            loop {
                                match verify_rx.recv_timeout(LANE_IDLE) {
                                    Ok(first) => {
                                        if !run(first) {
                                            return;
                                        }
                                    }
                                    Err(RecvTimeoutError::Timeout) => break,
                                    Err(RecvTimeoutError::Disconnected) => return,
                                }
                            }
                        }
                    }
                }
            })?);
        }
        drop(wakes);
        drop((verify_rx, policy_tx));

        let capacity = config.replay_capacity;
        let s = shared.clone();
        let o = owner.clone();
        handles.push(spawn("policy", config.layout.policy, &shared, move || {
            let mut caches: HashMap<u32, ReplayCache> = HashMap::new();
            let mut clock = SteadyClock::default();
            let mut order = InOrder::default();
            // Batches taken off the channel but not yet through policy:
            // those held for an earlier one, and those released and not
            // yet evaluated (the queue gauge counts both).
            let released = policy_rx.iter().flat_map(|b| {
                let vseq = b.vseq;
                let due = order.put(vseq, b);
                s.stats.depth(2, policy_rx.len());
                s.stats
                    .policy_held
                    .store(order.waiting() + due.len(), Ordering::Relaxed);
                due
            });
            for mut batch in released {
                // Its permit (taken by decode before this batch left it).
                // (The queue gauge was updated when the batch was taken.)
                let _permit = permit_rx.try_recv();
                let now = clock.at(now_us());
                for change in o.take_policy() {
                    match change {
                        PolicyChange::Revoke(p) => {
                            caches.remove(&p);
                        }
                        // The replay memory the previous owner left: a
                        // nonce it remembered stays used here.
                        PolicyChange::Acquire(p, entries) => {
                            let mut cache = ReplayCache::new(capacity);
                            let remembered = entries.iter().all(|e| {
                                cache.restore(
                                    &NonceKey::from_bytes(e.nonce_key),
                                    &e.intent_digest,
                                    Outcome {
                                        verdict: e.verdict,
                                        reason: e.reason,
                                        valid_until_us: e.valid_until_us,
                                    },
                                    now,
                                    e.until_us,
                                )
                            });
                            if !remembered {
                                // Forgetting one would let its nonce be
                                // used again: fail closed.
                                s.fail(format!(
                                    "partition {p}: {} remembered nonces do not fit a replay \
                                     cache of {capacity}; raise replay_capacity",
                                    entries.len()
                                ));
                                return;
                            }
                            caches.insert(p, cache);
                        }
                    }
                }
                batch.check_deadlines(now);
                s.stats.time(2, || {
                    policy_stage(&mut batch, &mut caches, capacity, now);
                });
                let _ = s.stats.policy_held.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |held| Some(held.saturating_sub(1)),
                );
                if seal_tx.send(batch).is_err() {
                    return;
                }
                s.stats.depth(3, seal_tx.len());
            }
            if order.waiting() > 0 {
                // Only a lane that died with a batch can leave a gap.
                s.fail(format!(
                    "{} verified batches never reached policy: a verify lane stopped",
                    order.waiting()
                ));
            }
        })?);

        let audience = config.audience.clone();
        let checkpoint_interval = config.checkpoint_interval;
        let s = shared.clone();
        let o = owner.clone();
        handles.push(spawn("seal", config.layout.seal, &shared, move || {
            let mut sealer = Sealer {
                key,
                audience,
                writers: HashMap::new(),
                checkpointed: HashMap::new(),
                checkpoint_interval,
                policy,
                owner: o,
            };
            let (mut seal_open, mut shed_open) = (true, true);
            let tick = checkpoint_interval.max(Duration::from_millis(1));
            // Which queue is looked at first alternates, so that neither
            // starves the other.
            let mut shed_first = false;
            while seal_open || shed_open {
                shed_first = !shed_first;
                let deadline = Instant::now().checked_add(tick);
                // A batch from either queue; `None` after `tick` with
                // none, or when a queue has just closed (the loop's test
                // looks again).
                let first = seal_bell
                    .wait(deadline, || {
                        let mut queues = [(&seal_rx, &mut seal_open), (&shed_rx, &mut shed_open)];
                        if shed_first {
                            queues.reverse();
                        }
                        let mut closed = false;
                        for (rx, open) in queues {
                            if !*open {
                                continue;
                            }
                            match rx.try_recv() {
                                Ok(batch) => return Some(Some(batch)),
                                Err(TryRecvError::Disconnected) => {
                                    *open = false;
                                    closed = true;
                                }
                                Err(TryRecvError::Empty) => {}
                            }
                        }
                        closed.then_some(None)
                    })
                    .flatten();
                s.stats.depth(3, seal_rx.len());
                s.stats.depth(4, shed_rx.len());
                let sealed = match first {
                    // Group commit: whatever else is already waiting is
                    // sealed under the same signature and checkpoints.
                    Some(first) => {
                        let group = gather(first, GROUP_MAX, |_| {
                            seal_rx.try_recv().or_else(|_| shed_rx.try_recv()).ok()
                        });
                        s.stats.time(3, || sealer.seal_group(group))
                    }
                    // Idle: checkpoint what the last groups left uncovered.
                    None => Ok(sealer.checkpoints_only(false)),
                };
                match sealed {
                    Ok(out) if out.is_empty() => {}
                    Ok(out) => {
                        if !send_unless_failed(&emit_tx, out, &s) {
                            return;
                        }
                        s.stats.depth(5, emit_tx.len());
                    }
                    Err(e) => {
                        s.fail(e);
                        return;
                    }
                }
            }
            // Drained: every log ends under a checkpoint.
            let last = sealer.checkpoints_only(true);
            if !last.is_empty() {
                let _sent = send_unless_failed(&emit_tx, last, &s);
            }
        })?);

        let s = shared.clone();
        handles.push(spawn("emit", config.layout.emit, &shared, move || {
            emit(sink, &emit_rx, &commit_tx, &s, &owner);
        })?);

        Ok(Engine {
            stop: shared.stop,
            threads: handles,
            pool,
            stats: shared.stats,
            failure: shared.failure,
        })
    }

    /// Live counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// A handle that reads the counters and the failure from another
    /// thread (an admin endpoint), for as long as it is kept.
    pub fn probe(&self) -> Probe {
        Probe {
            stats: Arc::clone(&self.stats),
            failure: Arc::clone(&self.failure),
        }
    }

    /// The fatal error that stopped the engine, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Stops reading, decides and emits everything already read, commits,
    /// and returns the final counters.
    pub fn shutdown(self) -> Result<StatsSnapshot, EngineError> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits until the source is closed and everything read is emitted.
    pub fn join(self) -> Result<StatsSnapshot, EngineError> {
        let mut panicked = false;
        for t in self.threads {
            panicked |= t.join().is_err();
        }
        // The pool's threads outlive the stages; each reports its CPU time
        // from the pool itself.
        self.pool
            .broadcast(|ctx| self.stats.thread_ended(format!("verify-{}", ctx.index())));
        let failure = self
            .failure
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|e| e.into_inner().clone());
        match failure {
            Some(f) => Err(EngineError::Failed(f)),
            None if panicked => Err(EngineError::Failed("an engine thread panicked".into())),
            None => Ok(self.stats.snapshot()),
        }
    }
}

/// The channels the ingest stage uses.
struct IngestLinks {
    /// Batches to decode.
    decode_tx: Link<Batch>,
    /// Shed batches, straight to seal.
    shed_tx: Link<Batch>,
    /// Offsets acknowledged by the sink, to commit.
    commit_rx: Receiver<(u32, u64)>,
    /// The emit stage's queue, to tell a slow sink from busy CPU stages.
    emit_backlog: Tap<Sealed>,
}

/// How many naps the linger is slept in (see `ingest`).
const LINGER_NAPS: u32 = 4;

/// Shortest nap: below this a sleep costs about what a wake-up per record
/// does. (Linux adds its timer slack, 50 µs for ordinary threads, to every
/// sleep: at the default 200 µs linger a batch gets about two naps.)
const MIN_NAP: Duration = Duration::from_micros(20);

/// Longest nap: how late, at most, a batch that has filled up during a long
/// linger closes, or ingest notices a shutdown.
const MAX_NAP: Duration = Duration::from_millis(5);

/// Lets the source keep its place while ingest holds `held` and cannot
/// hand it on; false when the engine must stop (the failure is recorded).
fn keep_alive<S: Source>(source: &mut S, held: &mut Vec<InRecord>, shared: &Shared) -> bool {
    match source.keep_alive(held) {
        Ok(()) => true,
        // Tried again on the next wait.
        Err(e) if e.retryable() => true,
        Err(e) => {
            shared.fail(format!("source failed: {e}"));
            false
        }
    }
}

/// Ingest: poll, close batches on size or linger, shed when the pipeline
/// is full, apply commits the emit stage sends back.
fn ingest<S: Source>(
    config: &Config,
    mut source: S,
    links: IngestLinks,
    shared: &Shared,
    owner: &Ownership,
) {
    let IngestLinks {
        decode_tx,
        shed_tx,
        commit_rx,
        emit_backlog,
    } = links;
    let max = config.max_batch;
    let mut seq = 0u64;
    let commit = |source: &mut S, p: u32, o: u64| match source.commit(p, o) {
        // Not committing is safe (those records come again after a
        // restart); a later commit of the partition covers this one.
        Ok(()) => {}
        Err(e) if e.retryable() => {}
        Err(e) => shared.fail(format!("commit of partition {p} offset {o} failed: {e}")),
    };
    // Batches up to `seq` are in the pipeline.
    let handed_on = |seq: u64| {
        owner.handed.store(seq, Ordering::SeqCst);
        shared.stats.depth(0, decode_tx.len());
    };
    'outer: while !shared.stop.load(Ordering::SeqCst) {
        for (p, o) in commit_rx.try_iter() {
            commit(&mut source, p, o);
        }
        let mut records = Vec::with_capacity(max);
        match source.poll(&mut records, max, Duration::from_millis(20)) {
            Ok(_) => {}
            Err(TransportError::Closed) => break,
            Err(e) if e.retryable() => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => {
                shared.fail(format!("source failed: {e}"));
                break;
            }
        }
        if records.is_empty() {
            continue;
        }
        let polled_at = Instant::now();
        let mut closed = false;
        // The rest of the linger is slept in a few naps, each followed by a
        // poll that takes what is ready without waiting. A poll that waited
        // would return at the next record: a wake-up (two context switches)
        // per intent at moderate load, on the cores verification needs. A
        // batch that fills up early closes at most one nap late, and a nap
        // is never longer than `MAX_NAP` (however long the linger, a full
        // batch or a shutdown is not kept waiting).
        let nap = (config.linger / LINGER_NAPS).clamp(MIN_NAP, MAX_NAP);
        while records.len() < max && !shared.stop.load(Ordering::SeqCst) {
            let left = config.linger.saturating_sub(polled_at.elapsed());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(nap));
            let room = max - records.len();
            match source.poll(&mut records, room, Duration::ZERO) {
                Ok(_) => {}
                Err(TransportError::Closed) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let mut batch = Batch {
            seq,
            vseq: 0,
            records,
            items: Vec::new(),
            polled_at,
            trust: None,
            policy: None,
            shed: false,
        };
        seq += 1;
        let mut blocked_since: Option<Instant> = None;
        loop {
            match decode_tx.try_send(batch) {
                Ok(()) => {
                    handed_on(seq);
                    break;
                }
                // The pipeline is busy: rather than queue another small
                // batch, let this one grow to full size while it waits (up
                // to `shed_after`: past it, a stalled pipeline sheds a
                // trickle's small batch too, below).
                Err(TrySendError::Full(mut b))
                    if b.records.len() < max
                        && !closed
                        && !shared.stop.load(Ordering::SeqCst)
                        && blocked_since.is_none_or(|t| t.elapsed() < config.shed_after) =>
                {
                    blocked_since.get_or_insert_with(Instant::now);
                    for (p, o) in commit_rx.try_iter() {
                        commit(&mut source, p, o);
                    }
                    let room = max - b.records.len();
                    let wait = config.linger.max(Duration::from_micros(100));
                    match source.poll(&mut b.records, room, wait) {
                        Ok(_) => {}
                        Err(TransportError::Closed) => closed = true,
                        Err(_) => std::thread::sleep(wait),
                    }
                    batch = b;
                }
                // Full batch (or one that waited `shed_after` to grow),
                // full pipeline: wait for room up to `shed_after` (a
                // backlog drains at full speed), then shed it past verify
                // and policy, denied "overloaded".
                Err(TrySendError::Full(b)) => {
                    let since = *blocked_since.get_or_insert_with(Instant::now);
                    let left = config.shed_after.saturating_sub(since.elapsed());
                    let mut b = match decode_tx.send_timeout(b, left.min(KEEP_ALIVE)) {
                        Ok(()) => {
                            handed_on(seq);
                            break;
                        }
                        Err(SendTimeoutError::Timeout(b)) => b,
                        Err(SendTimeoutError::Disconnected(_)) => break 'outer,
                    };
                    // However long this lasts (a sink that cannot deliver
                    // holds everything up), the source keeps its place: a
                    // Kafka consumer not polled for `max.poll.interval.ms`
                    // loses its partitions while this engine still holds
                    // sealed records of theirs.
                    for (p, o) in commit_rx.try_iter() {
                        commit(&mut source, p, o);
                    }
                    if !keep_alive(&mut source, &mut b.records, shared) {
                        break 'outer;
                    }
                    if b.records.is_empty() {
                        // Every record was of a revoked partition: the
                        // batch was never handed on, so its number is free.
                        seq -= 1;
                        continue 'outer;
                    }
                    // Room may come yet (a batch that may still grow goes
                    // back to growing above).
                    if since.elapsed() < config.shed_after {
                        batch = b;
                        continue;
                    }
                    if emit_backlog.is_full() && !shared.stop.load(Ordering::SeqCst) {
                        // (A stage that died sets `stop` through its guard,
                        // so this never waits on a sink that is gone.)
                        // The sink is the bottleneck (a broker slow to
                        // acknowledge): shed batches are emitted too, so
                        // shedding would not relieve it. Wait instead; the
                        // source keeps what is not read (Kafka: lag). (A
                        // wait of its own: with `shed_after` at zero the
                        // one above would not wait at all.)
                        match decode_tx.send_timeout(b, KEEP_ALIVE) {
                            Ok(()) => {
                                handed_on(seq);
                                break;
                            }
                            Err(SendTimeoutError::Timeout(b)) => batch = b,
                            Err(SendTimeoutError::Disconnected(_)) => break 'outer,
                        }
                        blocked_since = None;
                        continue;
                    }
                    b.shed = true;
                    // Waits only when sealing itself is behind:
                    // backpressure to the source, memory still bounded.
                    let n = loop {
                        let n = b.records.len() as u64;
                        match shed_tx.send_timeout(b, KEEP_ALIVE) {
                            Ok(()) => break n,
                            Err(SendTimeoutError::Timeout(back)) => b = back,
                            Err(SendTimeoutError::Disconnected(_)) => break 'outer,
                        }
                        // A stage failed (the sink gave up): seal may never
                        // take this batch. It was never handed on, so it is
                        // not committed and comes again after a restart;
                        // waiting here would keep this thread, and with it
                        // the engine's `join`, alive forever.
                        if shared.failed() {
                            break 'outer;
                        }
                        if !keep_alive(&mut source, &mut b.records, shared) {
                            break 'outer;
                        }
                        if b.records.is_empty() {
                            seq -= 1;
                            continue 'outer;
                        }
                    };
                    shared.stats.depth(4, shed_tx.len());
                    owner.handed.store(seq, Ordering::SeqCst);
                    shared.stats.shed_intents.fetch_add(n, Ordering::Relaxed);
                    shared.stats.intents_in.fetch_add(n, Ordering::Relaxed);
                    shared.stats.batch_sizes.record(n);
                    if closed {
                        break 'outer;
                    }
                    continue 'outer;
                }
                Err(TrySendError::Disconnected(_)) => break 'outer,
            }
        }
        if closed {
            break;
        }
    }
    // Hang up so the stages drain, then apply the commits of what they
    // emit, keeping the source's place while a slow sink finishes.
    shared.draining.store(true, Ordering::SeqCst);
    drop(decode_tx);
    drop(shed_tx);
    loop {
        match commit_rx.recv_timeout(KEEP_ALIVE) {
            Ok((p, o)) => commit(&mut source, p, o),
            // A failure is recorded; the stages still drain and hang up.
            Err(RecvTimeoutError::Timeout) => {
                let _alive = keep_alive(&mut source, &mut Vec::new(), shared);
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    // The emit stage has hung up: the sink is gone, and what it did not
    // acknowledge can no longer be written.
    owner.finished.store(true, Ordering::SeqCst);
}

/// A queue's sending end that can wait for room for a while: the
/// stages' queues ([`Link`]) and plain crossbeam ones.
trait SendTimeout<T> {
    fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>>;
}

impl<T> SendTimeout<T> for Sender<T> {
    fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        Sender::send_timeout(self, item, timeout)
    }
}

impl<T> SendTimeout<T> for Link<T> {
    fn send_timeout(&self, item: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        Link::send_timeout(self, item, timeout)
    }
}

/// Sends `item`, waiting for room as long as it takes unless a stage
/// fails meanwhile (then nothing downstream may ever take it, and a
/// receiver another thread still holds would keep a plain `send` waiting
/// forever). False when it was not sent.
fn send_unless_failed<T>(tx: &impl SendTimeout<T>, mut item: T, shared: &Shared) -> bool {
    loop {
        match tx.send_timeout(item, KEEP_ALIVE) {
            Ok(()) => return true,
            Err(SendTimeoutError::Disconnected(_)) => return false,
            Err(SendTimeoutError::Timeout(back)) if !shared.failed() => item = back,
            Err(SendTimeoutError::Timeout(_)) => return false,
        }
    }
}

/// Most intents a stage gathers into one group (verify, seal).
const GROUP_MAX: usize = 4096;

/// Most verify lanes (threads taking groups off the verify queue). One per
/// verification thread up to this: enough that small groups in a burst
/// are verified side by side instead of queueing behind one thread.
const MAX_VERIFY_LANES: usize = 4;

/// How long a woken helper lane keeps waiting for batches before it
/// sleeps again.
const LANE_IDLE: Duration = Duration::from_millis(1);

/// Puts items numbered 0, 1, 2, … back in order, whatever order they
/// arrive in.
struct InOrder<T> {
    next: u64,
    waiting: BTreeMap<u64, T>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder {
            next: 0,
            waiting: BTreeMap::new(),
        }
    }
}

impl<T> InOrder<T> {
    /// Takes item `seq`; returns every item now due, in order.
    fn put(&mut self, seq: u64, item: T) -> Vec<T> {
        self.waiting.insert(seq, item);
        let mut due = Vec::new();
        while let Some(item) = self.waiting.remove(&self.next) {
            due.push(item);
            self.next += 1;
        }
        due
    }

    /// Items still waiting for an earlier one.
    fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// `first` plus whatever `more` yields at once, up to `max` records.
fn gather(first: Batch, max: usize, mut more: impl FnMut(usize) -> Option<Batch>) -> Vec<Batch> {
    let mut n = first.records.len();
    let mut group = vec![first];
    while n < max {
        match more(n) {
            Some(b) => {
                n += b.records.len();
                group.push(b);
            }
            None => break,
        }
    }
    group
}

/// Verify: one batch verification over every undecided intent of the
/// group, split over the current rayon pool when `parallel` (never touching
/// rayon otherwise).
fn verify_group(group: &mut [Batch], parallel: bool) {
    let mut slots = Vec::new();
    let mut missing = Vec::new();
    let mut failed = Vec::new();
    {
        let mut sigs = Vec::new();
        for (b, batch) in group.iter().enumerate() {
            for (i, (item, rec)) in batch.items.iter().zip(&batch.records).enumerate() {
                if item.done.is_some() {
                    continue;
                }
                let key = batch
                    .trust
                    .as_ref()
                    .and_then(|t| t.get(&item.key_id))
                    .map(|k| &k.key);
                match (key, rec.payload.get(item.intent_range.clone())) {
                    (Some(key), Some(message)) => {
                        slots.push((b, i));
                        sigs.push(SigItem {
                            key,
                            prefix: INTENT_SIGNING_DOMAIN,
                            message,
                            signature: &item.signature,
                        });
                    }
                    _ => missing.push((b, i)),
                }
            }
        }
        let mut out = vec![Err(SigError::NoItem); sigs.len()];
        if parallel {
            verify_batch_parallel(&sigs, &mut out);
        } else {
            verify_batch(&sigs, &mut out);
        }
        for (slot, r) in slots.iter().zip(&out) {
            if r.is_err() {
                failed.push(*slot);
            }
        }
    }
    let mut set = |(b, i): (usize, usize), reason| {
        if let Some(item) = group.get_mut(b).and_then(|x| x.items.get_mut(i)) {
            item.done = Some(Done::deny(reason));
        }
    };
    for slot in missing {
        set(slot, Reason::InternalError);
    }
    for slot in failed {
        set(slot, Reason::BadSignature);
    }
}

fn attributes<'a>(intent: &warrant_schemas::wire::Intent<'a>, out: &mut Vec<Attr<'a>>) {
    out.clear();
    for a in intent.attributes().iter().flatten() {
        let value = match a.kind() {
            AttrKind::Int => AttrValue::Int(a.int_value()),
            AttrKind::Bool => AttrValue::Bool(a.bool_value()),
            AttrKind::Str => AttrValue::Str(a.str_value().unwrap_or("")),
            // The reader refuses kinds this version does not define.
            _ => continue,
        };
        out.push(Attr {
            key: a.key(),
            value,
        });
    }
}

/// Policy: replay cache, then the decision tables, one intent at a time.
fn policy_stage(
    batch: &mut Batch,
    caches: &mut HashMap<u32, ReplayCache>,
    capacity: usize,
    now: u64,
) {
    for (item, rec) in batch.items.iter_mut().zip(&batch.records) {
        if item.done.is_some() {
            continue;
        }
        let Some(nonce) = item.nonce else {
            item.done = Some(Done::deny(Reason::InternalError));
            continue;
        };
        let cache = caches
            .entry(rec.partition)
            .or_insert_with(|| ReplayCache::new(capacity));
        let seen = cache.check(&nonce, &item.digest, now);
        let fresh = item.evaluated;
        let done = match seen {
            Seen::Replay => {
                item.done = Some(Done::deny(Reason::ReplayedNonce));
                continue;
            }
            Seen::Full => {
                item.done = Some(Done::deny(Reason::Overloaded));
                continue;
            }
            // The same intent again: the verdict recorded the first time.
            // Only a fresh evaluation agreeing with it keeps its rule and
            // validity, and never past the first authorization's end; a
            // recorded deny stays that deny; a recorded authorize the
            // policy in force now denies is denied.
            Seen::Again(first) if first.reason != fresh.reason => {
                if first.reason == Reason::Authorized {
                    fresh
                } else {
                    Done::deny(first.reason)
                }
            }
            Seen::Again(first) if fresh.reason == Reason::Authorized => {
                if first.valid_until_us <= now {
                    // Its first authorization has ended: so has this one.
                    Done::deny(Reason::Expired)
                } else if first.valid_until_us > now.saturating_add(fresh.validity_us) {
                    // The first authorization ends later than the policy
                    // grants from now: a redelivery must not outlast it,
                    // nor end sooner (see below), nor may anything last
                    // longer than its rule grants. The replay memory came
                    // from the lineage log's unsigned tail (a forged
                    // record), or the rule was shortened, or this clock is
                    // behind the first decision's: deny, as the nonce is
                    // used; a real first authorization stands.
                    Done::deny(Reason::ReplayedNonce)
                } else {
                    // Ends exactly when the first one does: an executor
                    // remembers a consumed decision until *its* end, so a
                    // redelivery ending sooner, once consumed and
                    // forgotten, would leave the first one usable again.
                    Done {
                        until_cap_us: first.valid_until_us,
                        validity_us: first.valid_until_us.saturating_sub(now),
                        ..fresh
                    }
                }
            }
            Seen::Again(_) | Seen::Fresh => fresh,
        };
        let mut done = done;
        if done.reason == Reason::Authorized {
            // The authorization's end, fixed here: the seal stage stamps
            // exactly this (its later clock plus the validity only reaches
            // past it), and the replay cache records the same, so every
            // decision for this intent ends at the same instant.
            done.until_cap_us = done.until_cap_us.min(now.saturating_add(done.validity_us));
        }
        let recorded = cache.record(
            &nonce,
            &item.digest,
            Outcome {
                verdict: verdict(done.reason),
                reason: done.reason,
                valid_until_us: if done.reason == Reason::Authorized {
                    done.until_cap_us
                } else {
                    0
                },
            },
            now,
            item.remember_until_us,
        );
        item.done = Some(if recorded || done.reason != Reason::Authorized {
            done
        } else {
            Done::deny(Reason::Overloaded)
        });
        if recorded {
            item.remembered = Some((nonce.to_bytes(), item.remember_until_us));
        }
    }
}

fn verdict(reason: Reason) -> Verdict {
    if reason == Reason::Authorized {
        Verdict::Authorize
    } else {
        Verdict::Deny
    }
}

/// The seal stage's state: the engine key and a lineage chain per partition.
struct Sealer {
    key: EngineKey,
    audience: String,
    writers: HashMap<u32, LineageWriter>,
    /// Per partition: when it was last checkpointed and the size covered.
    checkpointed: HashMap<u32, (Instant, u64)>,
    checkpoint_interval: Duration,
    policy: Arc<PolicyStore>,
    owner: Arc<Ownership>,
}

/// Most decisions the emit stage merges into one send.
const EMIT_MAX: usize = 16_384;

impl Sealed {
    /// Appends `other`, sealed after `self`: its records come after
    /// (each partition's lineage stays in order).
    fn merge(&mut self, other: Sealed) {
        self.commits.extend(other.commits);
        self.out.decisions.extend(other.out.decisions);
        self.out.lineage.extend(other.out.lineage);
        self.polled.extend(other.polled);
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    fn is_empty(&self) -> bool {
        self.commits.is_empty() && self.out.decisions.is_empty() && self.out.lineage.is_empty()
    }
}

/// A sealed group of batches, ready to send.
struct Sealed {
    /// Per batch: its sequence number and the last offset per partition.
    commits: Vec<(u64, Vec<(u32, u64)>)>,
    out: OutBatch,
    /// Per batch: when it was first polled, and its size.
    polled: Vec<(Instant, u64)>,
    /// Decisions by reason.
    counts: [u64; 16],
}

impl Sealer {
    /// Applies the partition changes the source reported.
    fn apply_changes(&mut self) {
        for change in self.owner.take_seal() {
            match change {
                Change::Acquire(p, tail) => {
                    let covered = tail.checkpointed();
                    self.writers.insert(p, LineageWriter::resume(p, tail));
                    self.checkpointed.insert(p, (Instant::now(), covered));
                }
                Change::Revoke(p) => {
                    self.writers.remove(&p);
                    self.checkpointed.remove(&p);
                }
            }
        }
    }

    /// Appends a signed checkpoint for each of `partitions` with records
    /// no checkpoint covers yet, if its last checkpoint is at least the
    /// interval old (or `force`).
    fn checkpoint(
        &mut self,
        partitions: &[u32],
        force: bool,
        now: u64,
        out: &mut Vec<(u32, Vec<u8>)>,
    ) {
        for p in partitions {
            let Some(w) = self.writers.get(p) else {
                continue;
            };
            let size = w.next_sequence();
            let due = match self.checkpointed.get(p) {
                Some((_, covered)) if *covered >= size => false,
                Some((at, _)) => force || at.elapsed() >= self.checkpoint_interval,
                None => true,
            };
            if due {
                out.push((*p, w.checkpoint(&self.key, now)));
                self.checkpointed.insert(*p, (Instant::now(), size));
            }
        }
    }

    /// Checkpoints alone, for partitions left uncovered (all of them when
    /// `force`, else those whose interval has passed).
    fn checkpoints_only(&mut self, force: bool) -> Sealed {
        self.apply_changes();
        let mut partitions: Vec<u32> = self.writers.keys().copied().collect();
        partitions.sort_unstable();
        let mut out = OutBatch::default();
        self.checkpoint(&partitions, force, now_us(), &mut out.lineage);
        Sealed {
            commits: Vec::new(),
            out,
            polled: Vec::new(),
            counts: [0; 16],
        }
    }

    /// Seals a group of batches: one Merkle batch and one signature over
    /// all their decisions, one lineage checkpoint per partition touched.
    fn seal_group(&mut self, mut group: Vec<Batch>) -> Result<Sealed, String> {
        self.apply_changes();
        if self.owner.managed.load(Ordering::SeqCst) {
            // INVARIANT: with partitions handed between instances, a log
            // is only extended from the tail the source read for it.
            if let Some(r) = group
                .iter()
                .flat_map(|b| &b.records)
                .find(|r| !self.writers.contains_key(&r.partition))
            {
                return Err(format!(
                    "partition {} was read before it was acquired",
                    r.partition
                ));
            }
        }
        let now = now_us();
        let limits = Limits::default();
        let current = self.policy.current();
        for batch in &mut group {
            if batch.shed {
                // Shed: read ids only; deny everything readable as overloaded.
                batch.items = batch
                    .records
                    .iter()
                    .map(|r| {
                        let (mut item, signed) = open_item(r, &limits);
                        if signed.is_some() {
                            item.done = Some(Done::deny(Reason::Overloaded));
                        }
                        item
                    })
                    .collect();
            }
            if batch.policy.is_none() {
                batch.policy.clone_from(&current);
            }
            // Deadline before emit; anything undecided is an internal error.
            for item in &mut batch.items {
                match item.done {
                    None => item.done = Some(Done::deny(Reason::InternalError)),
                    Some(d) if d.reason == Reason::Authorized => {
                        if let Some(late) = past_window(item, now) {
                            item.done = Some(Done::deny(late));
                        } else if d.until_cap_us <= now {
                            // Its authorization would end before it left.
                            item.done = Some(Done::deny(Reason::Expired));
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        let total: usize = group.iter().map(|b| b.items.len()).sum();
        let mut next: HashMap<u32, u64> = HashMap::new();
        let mut cores = Vec::with_capacity(total);
        let mut parents = Vec::with_capacity(total);
        for batch in &group {
            let (policy_hash, policy_version) = batch
                .policy
                .as_ref()
                .map_or(([0; 32], 0), |p| (p.hash(), p.version()));
            for (item, rec) in batch.items.iter().zip(&batch.records) {
                let done = item.done.unwrap_or(Done::deny(Reason::InternalError));
                let seq = next.entry(rec.partition).or_insert_with(|| {
                    self.writers
                        .get(&rec.partition)
                        .map_or(0, LineageWriter::next_sequence)
                });
                let rule_id = match (&batch.policy, done.rule) {
                    (Some(p), Some(r)) => p.rules().get(r).map_or("", |r| r.id.as_str()),
                    _ => "",
                };
                cores.push(DecisionCore {
                    intent_id: item.id,
                    intent_digest: item.digest,
                    verdict: verdict(done.reason),
                    reason: done.reason,
                    rule_id,
                    policy_hash,
                    policy_version,
                    issued_at_us: now,
                    // An authorization ends exactly where the policy
                    // stage fixed it and the replay memory recorded it (a
                    // clock stepped back since must not move it earlier).
                    valid_until_us: if done.reason == Reason::Authorized {
                        done.until_cap_us
                    } else {
                        now
                    },
                    audience: &self.audience,
                    lineage_partition: rec.partition,
                    lineage_sequence: *seq,
                });
                parents.push((item.parent, item.remembered));
                *seq += 1;
            }
        }
        let (decisions, leaves) = match seal_with_leaves(&self.key, &cores) {
            Ok(d) => d,
            Err(e) => {
                // A rule id executors would refuse: deny those intents
                // as internal errors rather than emit nothing.
                for c in &mut cores {
                    c.verdict = Verdict::Deny;
                    c.reason = Reason::InternalError;
                    c.rule_id = "";
                    c.valid_until_us = c.issued_at_us;
                }
                seal_with_leaves(&self.key, &cores)
                    .map_err(|e2| format!("cannot seal: {e}; then: {e2}"))?
            }
        };
        let mut out = OutBatch {
            decisions: Vec::with_capacity(decisions.len()),
            lineage: Vec::with_capacity(decisions.len() + next.len()),
        };
        let mut counts = [0u64; 16];
        for (((bytes, leaf), core), (parent, remembered)) in
            decisions.into_iter().zip(leaves).zip(&cores).zip(parents)
        {
            let writer = self
                .writers
                .entry(core.lineage_partition)
                .or_insert_with(|| LineageWriter::new(core.lineage_partition));
            let record = writer.append(&Entry {
                decision_digest: leaf,
                intent_id: core.intent_id,
                parent_id: parent,
                verdict: core.verdict,
                reason: core.reason,
                issued_at_us: now,
                replay: remembered,
                intent_digest: core.intent_digest,
                // 0 for a deny, as `lineage.fbs` has it.
                valid_until_us: if core.verdict == Verdict::Authorize {
                    core.valid_until_us
                } else {
                    0
                },
            });
            if let Some(c) = counts.get_mut(usize::from(core.reason.0)) {
                *c += 1;
            }
            out.lineage.push((core.lineage_partition, record));
            out.decisions.push((core.intent_id, bytes));
        }
        // Every partition due, not only those this group touched: a quiet
        // partition's tail gets its checkpoint while others stay busy.
        let mut partitions: Vec<u32> = self.writers.keys().copied().collect();
        partitions.sort_unstable();
        self.checkpoint(&partitions, false, now, &mut out.lineage);
        let mut commits = Vec::with_capacity(group.len());
        let mut polled = Vec::with_capacity(group.len());
        for batch in &group {
            let mut offsets: BTreeMap<u32, u64> = BTreeMap::new();
            for r in &batch.records {
                let o = offsets.entry(r.partition).or_insert(r.offset);
                *o = (*o).max(r.offset);
            }
            commits.push((batch.seq, offsets.into_iter().collect()));
            polled.push((batch.polled_at, batch.records.len() as u64));
        }
        Ok(Sealed {
            commits,
            out,
            polled,
            counts,
        })
    }
}

/// Emit: send, then commit offsets in batch order.
fn emit<K: Sink>(
    mut sink: K,
    rx: &Tap<Sealed>,
    commit_tx: &Sender<(u32, u64)>,
    shared: &Shared,
    owner: &Ownership,
) {
    let mut next_seq = 0u64;
    let mut acked: BTreeMap<u64, Vec<(u32, u64)>> = BTreeMap::new();
    for mut sealed in rx.iter() {
        // Whatever else is sealed and waiting goes in the same send: a
        // sink's cost is mostly its round trip (a broker's acknowledgement),
        // so while it is slow, sends grow instead of queueing up behind it.
        while sealed.out.decisions.len() < EMIT_MAX {
            match rx.try_recv() {
                Ok(more) => sealed.merge(more),
                Err(_) => break,
            }
        }
        shared.stats.depth(5, rx.len());
        let Sealed {
            commits,
            out,
            polled,
            counts,
        } = sealed;
        let sending = Instant::now();
        let mut backoff = Duration::from_millis(1);
        let mut gave_up_at: Option<Instant> = None;
        loop {
            match sink.send(&out) {
                Ok(()) => {
                    shared.stats.sink_stalled.store(false, Ordering::Relaxed);
                    shared.stats.sink_sends.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) if e.retryable() => {
                    shared.stats.sink_stalled.store(true, Ordering::Relaxed);
                    // Keep trying while running; once stopping or
                    // draining, give up after 5 s: nothing is committed,
                    // so it comes again.
                    if shared.stop.load(Ordering::SeqCst) || shared.draining.load(Ordering::SeqCst)
                    {
                        let t = *gave_up_at.get_or_insert_with(Instant::now);
                        if t.elapsed() > Duration::from_secs(5) {
                            shared.fail(format!("sink unavailable while stopping: {e}"));
                            return;
                        }
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(e) => {
                    shared.fail(format!("sink failed: {e}"));
                    return;
                }
            }
        }
        let n = out.decisions.len() as u64;
        let stats = &shared.stats;
        stats.busy(4, sending.elapsed());
        stats
            .batches
            .fetch_add(commits.len() as u64, Ordering::Relaxed);
        stats.lineage_records.fetch_add(n, Ordering::Relaxed);
        for (c, add) in stats.by_reason.iter().zip(counts) {
            c.fetch_add(add, Ordering::Relaxed);
        }
        if let Ok(mut h) = stats.latency_us.lock() {
            for (at, count) in polled {
                h.saturating_record_n(micros(at.elapsed()).max(1), count);
            }
        }
        for (seq, offsets) in commits {
            acked.insert(seq, offsets);
        }
        while let Some(offsets) = acked.remove(&next_seq) {
            for c in offsets {
                if commit_tx.send(c).is_err() {
                    return;
                }
            }
            next_seq += 1;
        }
        owner.acked.store(next_seq, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_batches_leave_in_the_order_decode_sent_them() {
        let mut q = InOrder::default();
        assert!(q.put(2, 'c').is_empty());
        assert!(q.put(1, 'b').is_empty());
        assert_eq!(q.waiting(), 2);
        assert_eq!(q.put(0, 'a'), vec!['a', 'b', 'c']);
        assert_eq!(q.put(3, 'd'), vec!['d']);
        assert!(q.put(5, 'f').is_empty());
        assert_eq!(q.put(4, 'e'), vec!['e', 'f']);
        assert_eq!(q.waiting(), 0);
    }

    /// The window is [issued, min(deadline, issued + max age)): at its
    /// end the replay cache forgets the nonce, so no stage may let the
    /// intent through at that instant, and the reason names which end.
    #[test]
    fn an_intent_is_past_its_window_at_its_end_not_after() {
        let at = |deadline_us, remember_until_us| Item {
            deadline_us,
            remember_until_us,
            ..Item::unread([0; 32])
        };
        assert_eq!(past_window(&at(100, 100), 99), None);
        // The policy stage's clock never goes back: an intent found past
        // its window stays past it when the wall clock is stepped back.
        let mut clock = SteadyClock::default();
        assert_eq!(clock.at(150), 150);
        assert_eq!(clock.at(90), 150);
        assert_eq!(
            past_window(&at(200, 100), clock.at(90)),
            Some(Reason::Expired)
        );
        assert_eq!(clock.at(160), 160);
        assert_eq!(
            past_window(&at(100, 100), 100),
            Some(Reason::DeadlineExceeded)
        );
        assert_eq!(past_window(&at(200, 100), 100), Some(Reason::Expired));
        assert_eq!(
            past_window(&at(200, 100), 200),
            Some(Reason::DeadlineExceeded)
        );
    }

    #[test]
    fn layouts_pin_to_the_cpus_the_process_has() {
        let l = Layout::for_core_ids(&[4, 5, 6, 7, 8]);
        assert_eq!((l.ingest, l.policy), (Some(4), Some(5)));
        assert_eq!((l.verify_threads, l.verify_cores), (3, vec![6, 7, 8]));
        // Below four CPUs nothing is pinned; every CPU verifies.
        let l = Layout::for_core_ids(&[2, 3]);
        assert_eq!((l.ingest, l.seal), (None, None));
        assert_eq!(l.verify_threads, 2);
        assert_eq!(Layout::for_core_ids(&[]).verify_threads, 1);
    }
}
