//! `warrant demo`: the whole governed-execution lifecycle on one machine,
//! with no Kafka and no set-up.
//!
//! It creates an engine key and intent-signing keys, loads the example
//! payments policy (`examples/policy/payments.toml`, compiled in), and runs
//! the engine on the embedded transport while an open-loop generator
//! publishes a mix of valid, chained, forged, expired, replayed,
//! policy-denied, unknown-key and malformed intents at a fixed rate.
//! Latency is measured from each intent's *scheduled* send time to the
//! moment the sink holds its decision, so a stall anywhere shows up as
//! latency (no coordinated omission).
//!
//! Then it checks what came out, as a sceptical user would: exactly one
//! decision per intent; every intent got the reason its kind calls for
//! (valid intents may instead be shed as overloaded or timed out, which is
//! counted); nothing invalid was authorized; every partition's lineage log
//! verifies against the engine public key; and a sample of decisions
//! verifies with the executor's verifier against the exact intent bytes,
//! each authorization usable once. Any failed check is an error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::wire::Reason;
use warrant_schemas::{Limits, intent_digest, open_decision};

use crate::lineage::file::{by_partition, push_frame};
use crate::lineage::verify_log;
use crate::pipeline::{Config, Engine, new_histogram, now_us};
use crate::seal::{DecisionError, EngineKey, EngineKeys, SingleUse, verify_decision};
use crate::transport::embedded::Topic;
use crate::transport::{OutBatch, Sink, TransportError};
use crate::workload::{self, Shape, Workload};
pub use crate::workload::{Kind, Mix, reason_name};

/// The example policy the demo runs.
pub const POLICY: &str = include_str!("../../examples/policy/payments.toml");

/// Demo settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long to offer load.
    pub duration: Duration,
    /// Intents per second, open loop.
    pub rate: u64,
    /// Partitions of the embedded intents topic.
    pub partitions: u32,
    /// Signing principals (2 treasury services, the rest agents).
    pub principals: usize,
    /// The kinds of intents.
    pub mix: Mix,
    /// Write lineage logs, the engine public key and sample decisions here.
    pub out: Option<PathBuf>,
    /// Engine settings (partitions are set from `partitions`).
    pub engine: Config,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(5),
            rate: 5_000,
            partitions: 4,
            principals: 16,
            mix: Mix::default(),
            out: None,
            engine: Config::default(),
        }
    }
}

/// Most intents one demo run sends: it keeps about 1 KiB for each (what
/// was sent, its schedule, its decision and lineage record) until the
/// checks at the end, so this is about 5 GiB. `loadgen` drives longer
/// runs.
pub const MAX_INTENTS: u64 = 5_000_000;

/// Most partitions of the embedded topic (each has a queue, a lineage log
/// and a replay cache).
pub const MAX_PARTITIONS: u32 = 1_024;

/// Most signing principals (each key is derived and trusted up front).
pub const MAX_PRINCIPALS: usize = 65_536;

impl Options {
    /// Whether the demo can run with these settings: every error [`run`]
    /// would give before sending anything, without doing anything.
    pub fn check(&self) -> Result<(), String> {
        self.mix.check()?;
        self.total()?;
        if !(1..=MAX_PARTITIONS).contains(&self.partitions) {
            return Err(format!(
                "partitions must be 1 to {MAX_PARTITIONS}, not {}",
                self.partitions
            ));
        }
        if !(2..=MAX_PRINCIPALS).contains(&self.principals) {
            return Err(format!(
                "principals must be 2 (the treasury services) to {MAX_PRINCIPALS}, not {}",
                self.principals
            ));
        }
        Config {
            partitions: self.partitions,
            ..self.engine.clone()
        }
        .check()
        .map_err(|e| e.to_string())?;
        if let Some(dir) = &self.out
            && dir.exists()
            && !dir.is_dir()
        {
            return Err(format!("`{}` is not a directory", dir.display()));
        }
        Ok(())
    }

    /// How many intents the run sends: `rate` × `duration`, at most
    /// [`MAX_INTENTS`].
    fn total(&self) -> Result<usize, String> {
        if self.rate == 0 || self.duration.is_zero() {
            return Err("rate and duration must be above zero".into());
        }
        let total = (self.duration.as_secs_f64() * self.rate as f64)
            .ceil()
            .max(1.0);
        if total > MAX_INTENTS as f64 {
            return Err(format!(
                "{total} intents ({} s at {}/s) in one demo run is too many: at most {MAX_INTENTS} \
                 (use loadgen for longer runs)",
                self.duration.as_secs_f64(),
                self.rate
            ));
        }
        usize::try_from(total as u64).map_err(|_| "too many intents".to_string())
    }
}

/// What one generated intent was.
#[derive(Debug, Clone)]
struct Sent {
    kind: Kind,
    digest: [u8; 32],
    /// For a replay: the index of the intent whose nonce it reuses.
    original: Option<usize>,
    /// Until when the engine remembers its nonce once it is used, µs: its
    /// deadline, or its issue time plus the engine's `max_intent_age` if
    /// that is sooner (`pipeline::decode`).
    remembered_until_us: u64,
    /// The bytes, for the first [`KEPT`] intents (sample files).
    bytes: Option<Vec<u8>>,
}

/// Intents whose bytes are kept for the sample files.
const KEPT: usize = 256;

/// What a demo run measured and checked.
#[derive(Debug, Clone)]
pub struct Report {
    /// Intents published.
    pub sent: u64,
    /// Decisions received.
    pub decisions: u64,
    /// Wall time from the first scheduled send to the last decision.
    pub elapsed: Duration,
    /// Most the publisher fell behind its schedule (the demo's own
    /// lateness: one thread signs every intent).
    pub publisher_behind: Duration,
    /// Latency, scheduled send → decision held by the sink, µs.
    pub latency_us: Histogram<u64>,
    /// Engine-side latency, first poll of a batch → sink ack, µs.
    pub engine_latency_us: Histogram<u64>,
    /// Decisions by reason.
    pub by_reason: Vec<(Reason, u64)>,
    /// Intents sent by kind.
    pub by_kind: Vec<(Kind, u64)>,
    /// Valid intents shed (overloaded) or timed out instead of authorized.
    pub shed_or_late: u64,
    /// Intents of the other kinds shed or timed out before the deny
    /// expected of them.
    pub other_shed_or_late: u64,
    /// Intents shed at ingest.
    pub shed: u64,
    /// Lineage records verified, over how many partitions and checkpoints.
    pub lineage_records: u64,
    /// Partitions whose logs verified.
    pub lineage_partitions: usize,
    /// Those partitions, by number (`lineage-<p>.log` with `out`).
    pub lineage_partition_ids: Vec<u32>,
    /// Checkpoints verified.
    pub checkpoints: usize,
    /// Lineage records linking a parent.
    pub chained_records: u64,
    /// Decisions checked with the executor verifier.
    pub sampled: u64,
    /// The engine's public key.
    pub engine_public_key: [u8; 32],
    /// Files written (with `out`).
    pub files: Vec<String>,
    /// When `out` holds a sample decision (`decision.bin`): its issue
    /// time and the end of its validity, µs since the epoch. An executor
    /// checking it later than that is rightly refused ("expired").
    pub sample_window_us: Option<(u64, u64)>,
}

fn percentile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        writeln!(f, "results")?;
        writeln!(
            f,
            "  intents sent         {:>10}   decisions {:>10}   exactly one each: yes",
            self.sent, self.decisions
        )?;
        writeln!(
            f,
            "  throughput           {:>10.0} decisions/s over {:.2} s",
            self.decisions as f64 / secs,
            secs
        )?;
        let behind_ms = self.publisher_behind.as_secs_f64() * 1e3;
        writeln!(
            f,
            "  publisher            at most {behind_ms:.1} ms behind its schedule{}",
            if behind_ms > 100.0 {
                " (the demo could not sign intents at this rate: latency and timeouts include its lag)"
            } else {
                ""
            }
        )?;
        for (name, h) in [
            ("latency, scheduled send -> decision", &self.latency_us),
            (
                "engine, batch's first read -> ack  ",
                &self.engine_latency_us,
            ),
        ] {
            writeln!(
                f,
                "  {name}  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
                percentile_ms(h, 0.5),
                percentile_ms(h, 0.99),
                percentile_ms(h, 0.999),
                h.max() as f64 / 1000.0
            )?;
        }
        writeln!(f, "  intents by kind")?;
        for (k, n) in &self.by_kind {
            writeln!(f, "    {:<22}{n:>10}", k.name())?;
        }
        writeln!(f, "  decisions by reason")?;
        for (r, n) in &self.by_reason {
            writeln!(f, "    {:<22}{n:>10}", reason_name(*r))?;
        }
        writeln!(
            f,
            "  every intent got its expected reason, or was shed or timed out ({} valid ones, {} others; {} shed at ingest)",
            self.shed_or_late, self.other_shed_or_late, self.shed
        )?;
        writeln!(
            f,
            "  lineage: {} records in {} partitions verified against the engine key ({} signed checkpoints, {} parent links)",
            self.lineage_records, self.lineage_partitions, self.checkpoints, self.chained_records
        )?;
        writeln!(
            f,
            "  executor check: {} sampled decisions verified (proof, batch signature, intent digest, validity, audience; each authorization used once)",
            self.sampled
        )?;
        write!(
            f,
            "  engine public key    {}",
            hex::encode(self.engine_public_key)
        )?;
        for file in &self.files {
            write!(f, "\n  wrote {file}")?;
        }
        Ok(())
    }
}

/// Collects decisions and measures latency from scheduled send times.
#[derive(Clone)]
struct DemoSink {
    /// When the publisher starts: after the engine has started, so that
    /// its start-up is not charged to the first intents.
    start: Arc<OnceLock<Instant>>,
    tag: [u8; 8],
    /// Scheduled send, ns after `start`, per intent index.
    scheduled: Arc<Vec<AtomicU64>>,
    /// Ids the engine gives unreadable intents (digest prefix) → index.
    unreadable: Arc<Mutex<HashMap<[u8; 16], usize>>>,
    latency: Arc<Mutex<Histogram<u64>>>,
    decided: Arc<AtomicU64>,
    out: Arc<Mutex<OutBatch>>,
}

impl DemoSink {
    fn index(&self, id: &[u8; 16]) -> Option<usize> {
        if let Some(i) = workload::index_of(id, &self.tag) {
            return usize::try_from(i).ok();
        }
        self.unreadable.lock().ok()?.get(id).copied()
    }
}

impl Sink for DemoSink {
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
        let now = self.start.get().map_or(0, |start| {
            u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
        });
        if let Ok(mut h) = self.latency.lock() {
            for (id, _) in &batch.decisions {
                if let Some(s) = self.index(id).and_then(|i| self.scheduled.get(i)) {
                    let at = s.load(Ordering::Acquire);
                    h.saturating_record((now.saturating_sub(at) / 1000).max(1));
                }
            }
        }
        let mut out = self
            .out
            .lock()
            .map_err(|_| TransportError::Unavailable("demo sink poisoned".into()))?;
        out.decisions.extend(batch.decisions.iter().cloned());
        out.lineage.extend(batch.lineage.iter().cloned());
        self.decided
            .fetch_add(batch.decisions.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Runs the demo; `progress` gets a line about once a second.
pub fn run(opts: &Options, mut progress: impl FnMut(&str)) -> Result<Report, String> {
    opts.check()?;
    let principals = opts.principals;
    let total = opts.total()?;

    let policy = Policy::from_sources(&[("payments.toml", POLICY)])
        .map_err(|e| format!("the example policy does not compile: {e}"))?;
    let trust = workload::trust_store(principals).map_err(|e| e.to_string())?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness for the engine key: {e}"))?;
    let engine_key = EngineKey::from_seed(seed);
    let engine_public = engine_key.public_key();
    if let Some(dir) = &opts.out {
        // Before any load: a directory that cannot be made or written
        // fails the run now, not after it.
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let path = dir.join("engine.pub");
        std::fs::write(&path, hex::encode(engine_public))
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    }
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).map_err(|e| format!("no randomness: {e}"))?;

    let topic = Topic::new(opts.partitions, 65_536);
    let sink = DemoSink {
        start: Arc::new(OnceLock::new()),
        tag,
        scheduled: Arc::new((0..total).map(|_| AtomicU64::new(u64::MAX)).collect()),
        unreadable: Arc::new(Mutex::new(HashMap::new())),
        latency: Arc::new(Mutex::new(new_histogram())),
        decided: Arc::new(AtomicU64::new(0)),
        out: Arc::new(Mutex::new(OutBatch::default())),
    };
    let store = Arc::new(PolicyStore::new());
    store.install(policy);
    let audience = opts.engine.audience.clone();
    let engine = Engine::start(
        Config {
            partitions: opts.partitions,
            ..opts.engine.clone()
        },
        topic.consumer(),
        sink.clone(),
        engine_key,
        Arc::new(ArcSwap::from_pointee(trust)),
        store,
    )
    .map_err(|e| e.to_string())?;

    // Generator: signs ahead of the schedule into a bounded queue.
    let (tx, rx) = crossbeam_channel::bounded::<(usize, String, Vec<u8>)>(4_096);
    let shape = Shape {
        principals,
        mix: opts.mix,
        ..Shape::default()
    };
    // Every intent that can be authorized is issued at its scheduled time.
    let remembered_us = u64::try_from(shape.deadline.min(opts.engine.max_intent_age).as_micros())
        .unwrap_or(u64::MAX);
    let mut workload = Workload::new(shape, tag)?;
    let start_wall = now_us();
    let interval_ns = 1e9 / opts.rate as f64;
    let unreadable = sink.unreadable.clone();
    let generator = std::thread::Builder::new()
        .name("demo-generator".into())
        .spawn(move || -> Vec<Sent> {
            // Grown as intents are made: a long run's full size is not
            // claimed up front.
            let mut sent = Vec::with_capacity(total.min(1 << 16));
            for i in 0..total {
                let scheduled_us = start_wall + (i as f64 * interval_ns / 1000.0) as u64;
                let g = workload.generate(i as u64, scheduled_us);
                if g.kind == Kind::Malformed
                    && let Ok(mut u) = unreadable.lock()
                {
                    u.insert(g.decision_id(&tag), i);
                }
                sent.push(Sent {
                    kind: g.kind,
                    digest: intent_digest(&g.bytes),
                    original: g.original.and_then(|o| usize::try_from(o).ok()),
                    remembered_until_us: scheduled_us.saturating_add(remembered_us),
                    bytes: (i < KEPT).then(|| g.bytes.clone()),
                });
                if tx.send((i, g.key, g.bytes)).is_err() {
                    break;
                }
            }
            sent
        })
        .map_err(|e| e.to_string())?;

    // Publisher: open loop, on schedule; a late publish is latency. The
    // clock starts now, with the engine running.
    let start = *sink.start.get_or_init(Instant::now);
    let mut next_report = Duration::from_secs(1);
    let mut published = 0u64;
    let mut behind = Duration::ZERO;
    for (i, key, bytes) in rx.iter() {
        let due = Duration::from_nanos((i as f64 * interval_ns) as u64);
        loop {
            let now = start.elapsed();
            if now >= due {
                break;
            }
            // Sleep, never spin: a spinning publisher would take a core
            // from the engine. A late send counts as latency.
            std::thread::sleep(due - now);
        }
        if let Some(s) = sink.scheduled.get(i) {
            s.store(
                u64::try_from(due.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Release,
            );
        }
        // A full partition pushes back; the wait counts as latency.
        loop {
            match topic.publish(key.as_bytes(), bytes.clone()) {
                Ok(_) => break,
                Err(TransportError::Unavailable(_)) => {
                    // A full partition drains only while the engine runs:
                    // one that stopped leaves it full for good.
                    if let Some(e) = engine.failure() {
                        return Err(format!("the engine stopped: {e}"));
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(format!("cannot publish: {e}")),
            }
        }
        published += 1;
        // How far behind its schedule the publisher fell (signing on one
        // thread, a full partition): reported apart, since it is the
        // demo's own lateness, charged to the latency above all the same.
        behind = behind.max(start.elapsed().saturating_sub(due));
        if start.elapsed() >= next_report {
            let p99 = sink
                .latency
                .lock()
                .map(|h| percentile_ms(&h, 0.99))
                .unwrap_or(0.0);
            progress(&format!(
                "  t={:>4.1}s  sent {:>8}  decided {:>8}  p99 {:.3} ms",
                start.elapsed().as_secs_f64(),
                published,
                sink.decided.load(Ordering::Relaxed),
                p99
            ));
            next_report += Duration::from_secs(1);
        }
    }
    let sent = generator
        .join()
        .map_err(|_| "the intent generator panicked".to_string())?;
    topic.close();
    let stats = engine.join().map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    let out = sink
        .out
        .lock()
        .map(|o| o.clone())
        .map_err(|_| "demo sink poisoned".to_string())?;
    let latency = sink
        .latency
        .lock()
        .map(|h| h.clone())
        .map_err(|_| "demo sink poisoned".to_string())?;
    let mut report = check(
        opts,
        &sink,
        &sent,
        &out,
        stats,
        latency,
        elapsed,
        engine_public,
        &audience,
    )?;
    report.publisher_behind = behind;
    Ok(report)
}

/// Of the intents sharing a nonce (an original and its replays), each
/// authorization after the first must be decided at or after the end of
/// the one before it's memory ([`Sent::remembered_until_us`]): the engine
/// remembers a used nonce until then. `decided_at(i)` is when intent `i`'s
/// decision was issued.
fn nonce_used_once(
    sent: &[Sent],
    reason_of: &[Option<Reason>],
    decided_at: impl Fn(usize) -> Option<u64>,
) -> Result<(), String> {
    let root = |mut i: usize| {
        // Replays refer to earlier intents; `o < i` also ends the walk.
        while let Some(o) = sent.get(i).and_then(|s| s.original).filter(|&o| o < i) {
            i = o;
        }
        i
    };
    let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, r) in reason_of.iter().enumerate() {
        if *r == Some(Reason::Authorized) {
            groups.entry(root(i)).or_default().push(i);
        }
    }
    for members in groups.values().filter(|m| m.len() > 1) {
        let mut uses: Vec<(u64, u64, usize)> = Vec::with_capacity(members.len());
        for &i in members {
            let at = decided_at(i).ok_or_else(|| format!("intent {i}: unreadable decision"))?;
            let deadline = sent.get(i).map_or(u64::MAX, |s| s.remembered_until_us);
            uses.push((at, deadline, i));
        }
        uses.sort_unstable();
        for pair in uses.windows(2) {
            if let [(_, remembered_until, first), (at, _, second)] = *pair
                && at < remembered_until
            {
                return Err(format!(
                    "intents {first} and {second} share a nonce and were both authorized, \
                     the second at {at} µs while the first's nonce was remembered \
                     (until {remembered_until} µs)"
                ));
            }
        }
    }
    Ok(())
}

#[expect(clippy::too_many_arguments, reason = "one call site, all distinct")]
fn check(
    opts: &Options,
    sink: &DemoSink,
    sent: &[Sent],
    out: &OutBatch,
    stats: crate::pipeline::StatsSnapshot,
    latency: Histogram<u64>,
    elapsed: Duration,
    engine_public: [u8; 32],
    audience: &str,
) -> Result<Report, String> {
    let limits = Limits::default();
    // Exactly one decision per intent, with the expected reason.
    let mut reason_of: Vec<Option<Reason>> = vec![None; sent.len()];
    let mut decision_of: Vec<Option<&[u8]>> = vec![None; sent.len()];
    for (id, bytes) in &out.decisions {
        let i = sink
            .index(id)
            .filter(|&i| i < sent.len())
            .ok_or_else(|| format!("a decision for an intent never sent ({})", hex::encode(id)))?;
        let d = open_decision(bytes, &limits).map_err(|e| format!("unreadable decision: {e}"))?;
        if (d.verdict() == warrant_schemas::wire::Verdict::Authorize)
            != (d.reason() == Reason::Authorized)
        {
            return Err(format!(
                "intent {i}: its decision's verdict and reason `{}` disagree",
                reason_name(d.reason())
            ));
        }
        let slot = reason_of.get_mut(i).ok_or("index out of range")?;
        if slot.is_some() {
            return Err(format!("intent {i} got two decisions"));
        }
        *slot = Some(d.reason());
        if let Some(s) = decision_of.get_mut(i) {
            *s = Some(bytes);
        }
    }
    // When intent `i`'s decision was issued (opened again only where a
    // replay's verdict depends on it).
    let decided_at = |i: usize| {
        decision_of
            .get(i)
            .copied()
            .flatten()
            .and_then(|d| open_decision(d, &limits).ok())
            .map(|d| d.issued_at_us())
    };
    let mut shed_or_late = 0;
    let mut other_transient = 0;
    let mut by_reason: HashMap<u16, u64> = HashMap::new();
    let mut by_kind: HashMap<Kind, u64> = HashMap::new();
    for (i, (s, r)) in sent.iter().zip(&reason_of).enumerate() {
        let r = r.ok_or_else(|| format!("intent {i} ({}) got no decision", s.kind.name()))?;
        *by_reason.entry(r.0).or_default() += 1;
        *by_kind.entry(s.kind).or_default() += 1;
        if r == s.kind.expected() {
            continue;
        }
        let transient = matches!(r, Reason::Overloaded | Reason::DeadlineExceeded);
        // A replay of an intent that was itself never authorized (shed)
        // is the first use of its nonce: authorizing it is right. So is
        // one decided once its original's deadline had passed: the engine
        // remembers a nonce until then, and no longer (a late run, with
        // a long linger or a loaded machine).
        let replay_may_pass = || {
            let Some((o, Some(first))) = s.original.and_then(|o| sent.get(o).zip(reason_of.get(o)))
            else {
                return false;
            };
            *first != Reason::Authorized
                || decided_at(i).is_some_and(|at| at >= o.remembered_until_us)
        };
        match (s.kind, r) {
            (kind, _) if transient && kind.is_valid() => shed_or_late += 1,
            (_, _) if transient => other_transient += 1,
            (Kind::Replayed, Reason::Authorized) if replay_may_pass() => {}
            _ => {
                return Err(format!(
                    "intent {i} ({}) got `{}`, expected `{}`",
                    s.kind.name(),
                    reason_name(r),
                    reason_name(s.kind.expected())
                ));
            }
        }
    }

    // A replay may be authorized when its original was not, but a nonce
    // is still used once while remembered, however many replays carry it.
    nonce_used_once(sent, &reason_of, decided_at)?;

    // Every valid intent shed or timed out means the engine decided
    // nothing on its merits: fail rather than print a success.
    let valid = sent.iter().filter(|s| s.kind.is_valid()).count() as u64;
    let authorized = by_reason.get(&Reason::Authorized.0).copied().unwrap_or(0);
    if valid > 0 && authorized == 0 {
        return Err(format!(
            "none of the {valid} valid intents was authorized ({shed_or_late} shed or timed out): \
             the engine decided nothing on its merits"
        ));
    }

    // Lineage, per partition, against the engine public key.
    let logs = by_partition(&out.lineage);
    let (mut lineage_records, mut checkpoints, mut chained_records) = (0, 0, 0);
    let mut lineage_authorized = 0;
    for (p, f) in &logs {
        let r = verify_log(*p, &f.records, &f.checkpoints, &[engine_public])
            .map_err(|e| format!("lineage of partition {p} does not verify: {e}"))?;
        lineage_records += r.records;
        checkpoints += r.checkpoints;
        chained_records += r.chained;
        lineage_authorized += r.authorized;
    }
    if lineage_records != sent.len() as u64 {
        return Err(format!(
            "{lineage_records} lineage records for {} intents",
            sent.len()
        ));
    }
    // The log says what the decisions say: as many authorizations, and a
    // parent link for every chained intent.
    if lineage_authorized != authorized {
        return Err(format!(
            "the lineage logs {lineage_authorized} authorizations, the decisions {authorized}"
        ));
    }
    let chained_sent = sent.iter().filter(|s| s.kind == Kind::Chained).count() as u64;
    if chained_records != chained_sent {
        return Err(format!(
            "{chained_records} lineage records link a parent, for {chained_sent} chained intents"
        ));
    }

    // The executor's view of a sample of decisions.
    let mut keys = EngineKeys::new();
    keys.add(&engine_public).map_err(|e| e.to_string())?;
    let mut guard = SingleUse::new(4_096);
    // About 1,000 of them, at a stride that shares no factor with the
    // mix's period of 100 intents, so that every kind is sampled.
    let mut step = (sent.len() / 1_000).max(1);
    while step > 1 && (step.is_multiple_of(2) || step.is_multiple_of(5)) {
        step += 1;
    }
    // One decision as an executor would have checked it on receipt: at its
    // issue time (an authorization valid for 30 s has expired by the end
    // of a longer run), each authorization usable once. Returns, for an
    // authorization whose intent bytes were kept, what `--out` writes.
    type Sample<'b> = (&'b [u8], &'b [u8], (u64, u64));
    let mut check_one = |i: usize| -> Result<Option<Sample<'_>>, String> {
        let (Some(s), Some(Some(bytes)), Some(Some(reason))) =
            (sent.get(i), decision_of.get(i), reason_of.get(i))
        else {
            return Ok(None);
        };
        let now = open_decision(bytes, &limits)
            .map(|d| d.issued_at_us())
            .map_err(|e| format!("intent {i}: its decision does not open: {e}"))?;
        match verify_decision(bytes, &keys, &s.digest, audience, now) {
            Ok(auth) if *reason == Reason::Authorized => {
                guard.consume(&auth, now).map_err(|e| e.to_string())?;
                if guard.consume(&auth, now).is_ok() {
                    return Err(format!("intent {i}: an authorization was usable twice"));
                }
                Ok(s.bytes
                    .as_deref()
                    .map(|intent| (intent, *bytes, (now, auth.valid_until_us))))
            }
            Err(DecisionError::Denied(r)) if r == *reason => Ok(None),
            other => Err(format!(
                "intent {i}: the executor verifier said {other:?} for a `{}` decision",
                reason_name(*reason)
            )),
        }
    };
    let mut sampled = 0;
    let mut sample: Option<Sample<'_>> = None;
    for i in (0..sent.len()).step_by(step) {
        let found = check_one(i)?;
        sample = sample.or(found);
        sampled += 1;
    }
    // The sample decision for `--out` is an authorization among the
    // intents whose bytes were kept: if the stride met none, the first
    // of them (never one the stride checked: it would have been kept).
    if sample.is_none()
        && let Some(i) =
            (0..sent.len().min(KEPT)).find(|&i| reason_of.get(i) == Some(&Some(Reason::Authorized)))
    {
        sample = check_one(i)?;
        sampled += 1;
    }
    let (sample, sample_window_us) = match sample {
        Some((intent, decision, window)) => (Some((intent, decision)), Some(window)),
        None => (None, None),
    };

    let mut files = Vec::new();
    if let Some(dir) = &opts.out {
        // `run` wrote the engine public key before the load.
        files.push(dir.join("engine.pub").display().to_string());
        let mut write = |name: String, bytes: &[u8]| -> Result<(), String> {
            let path = dir.join(&name);
            std::fs::write(&path, bytes)
                .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            files.push(path.display().to_string());
            Ok(())
        };
        for p in logs.keys() {
            let mut data = Vec::new();
            for (q, bytes) in &out.lineage {
                if q == p {
                    push_frame(&mut data, bytes);
                }
            }
            write(format!("lineage-{p}.log"), &data)?;
        }
        if let Some((intent, decision)) = sample {
            write("intent.bin".into(), intent)?;
            write("decision.bin".into(), decision)?;
        }
    }

    let mut by_reason: Vec<(Reason, u64)> =
        by_reason.into_iter().map(|(r, n)| (Reason(r), n)).collect();
    by_reason.sort_by_key(|(r, _)| r.0);
    let mut by_kind: Vec<(Kind, u64)> = by_kind.into_iter().collect();
    by_kind.sort();
    Ok(Report {
        sent: sent.len() as u64,
        decisions: out.decisions.len() as u64,
        elapsed,
        publisher_behind: Duration::ZERO,
        latency_us: latency,
        engine_latency_us: stats.latency_us,
        by_reason,
        by_kind,
        shed_or_late,
        other_shed_or_late: other_transient,
        shed: stats.shed_intents,
        lineage_records,
        lineage_partitions: logs.len(),
        lineage_partition_ids: logs.keys().copied().collect(),
        checkpoints,
        chained_records,
        sampled,
        engine_public_key: engine_public,
        files,
        sample_window_us: sample_window_us.filter(|_| opts.out.is_some()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An original shed (denied "overloaded") and two replays of it: one
    /// replay authorized is the first use of the nonce, two while it is
    /// remembered is a replay let through, and a second decided after the
    /// first's deadline is a fresh use.
    #[test]
    fn a_nonce_is_authorized_once_while_remembered_however_many_replays_carry_it() {
        let sent_of = |kind, original| Sent {
            kind,
            digest: [0; 32],
            original,
            remembered_until_us: 1_000,
            bytes: None,
        };
        let sent = [
            sent_of(Kind::Valid, None),
            sent_of(Kind::Replayed, Some(0)),
            sent_of(Kind::Replayed, Some(1)),
        ];
        let auth = Some(Reason::Authorized);
        let shed = Some(Reason::Overloaded);
        let replay = Some(Reason::ReplayedNonce);
        let at = |times: [u64; 3]| move |i: usize| times.get(i).copied();
        assert_eq!(
            nonce_used_once(&sent, &[shed, auth, replay], at([10, 20, 30])),
            Ok(())
        );
        let twice = nonce_used_once(&sent, &[shed, auth, auth], at([10, 20, 30]));
        assert!(
            twice
                .as_ref()
                .is_err_and(|e| e.contains("intents 1 and 2 share a nonce")),
            "{twice:?}"
        );
        // The original authorized and a replay of a replay too.
        assert!(nonce_used_once(&sent, &[auth, replay, auth], at([10, 20, 30])).is_err());
        // The second after the first's deadline: the engine had forgotten.
        assert_eq!(
            nonce_used_once(&sent, &[shed, auth, auth], at([10, 20, 1_000])),
            Ok(())
        );
    }

    #[test]
    fn options_out_of_range_are_refused_before_anything_runs() {
        let ok = Options::default();
        assert_eq!(ok.check(), Ok(()));
        for (opts, want) in [
            (
                Options {
                    rate: u64::MAX,
                    ..Options::default()
                },
                "too many",
            ),
            (
                Options {
                    partitions: u32::MAX,
                    ..Options::default()
                },
                "partitions must be 1 to 1024",
            ),
            (
                Options {
                    partitions: 0,
                    ..Options::default()
                },
                "partitions must be 1 to 1024",
            ),
            (
                Options {
                    principals: 0,
                    ..Options::default()
                },
                "principals must be 2",
            ),
            (
                Options {
                    duration: Duration::ZERO,
                    ..Options::default()
                },
                "above zero",
            ),
            (
                Options {
                    out: Some(PathBuf::from("/dev/null")),
                    ..Options::default()
                },
                "is not a directory",
            ),
        ] {
            let e = opts.check().err().unwrap_or_default();
            assert!(e.contains(want), "{opts:?}: `{e}`");
            // `run` refuses them the same way, before any load.
            let e = run(&opts, |_| {}).err().unwrap_or_default();
            assert!(e.contains(want), "{opts:?}: `{e}`");
        }
    }
}
