//! Open-loop runs: a fixed rate for a duration, and the ramp that finds
//! the highest rate whose p99 meets an SLO.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use warrant_engine::pipeline::now_us;
use warrant_engine::workload::{Kind, Shape, Workload, reason_name};
use warrant_schemas::wire::Reason;

use crate::collect::{Collector, Counts};
use crate::target::TargetSpec;

/// One fixed-rate run.
#[derive(Debug, Clone)]
pub struct Load {
    /// Intents per second, offered on schedule whatever the target does.
    pub rate: f64,
    /// How long to offer them.
    pub duration: Duration,
    /// What the intents are.
    pub shape: Shape,
    /// How long to wait for the last decisions once everything is sent.
    pub drain_timeout: Duration,
    /// Progress and `.hlog` interval.
    pub interval: Duration,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            rate: 5_000.0,
            duration: Duration::from_secs(10),
            shape: Shape::default(),
            drain_timeout: Duration::from_secs(30),
            interval: Duration::from_secs(1),
        }
    }
}

/// Live figures, once per interval.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Since the first scheduled send.
    pub elapsed: Duration,
    /// Intents the run will send.
    pub total: u64,
    /// Counters.
    pub counts: Counts,
    /// Decisions per second over the last interval.
    pub rate: f64,
    /// p99 of the last interval's decisions, µs (0: none).
    pub p99_us: u64,
}

/// One interval's latency, for the `.hlog`.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Start, after the run's start.
    pub start: Duration,
    /// Length.
    pub length: Duration,
    /// Latencies of the decisions that arrived in it, µs.
    pub histogram: Histogram<u64>,
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th.
    pub p90_ms: f64,
    /// 99th.
    pub p99_ms: f64,
    /// 99.9th.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Percentiles {
    /// From a histogram of µs.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1_000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1_000.0,
        }
    }
}

/// One kind of intent: how many were sent and what they got.
#[derive(Debug, Clone, Serialize)]
pub struct KindRow {
    /// The kind.
    pub kind: &'static str,
    /// Its share of the mix, %.
    pub mix_percent: u8,
    /// Sent.
    pub sent: u64,
    /// Its share of what was sent, %.
    pub sent_percent: f64,
    /// The reason it must get.
    pub expected: &'static str,
    /// Got that reason.
    pub as_expected: u64,
    /// Valid intents denied "overloaded" or "deadline exceeded" instead:
    /// the target could not keep up (not a violation).
    pub shed_or_late: u64,
    /// Any other reason, by reason.
    pub unexpected: BTreeMap<&'static str, u64>,
    /// No decision.
    pub missing: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `embedded` or `kafka`.
    pub target: &'static str,
    /// Offered intents per second.
    pub offered_rate: f64,
    /// Offered for, s.
    pub duration_s: f64,
    /// Intents sent.
    pub sent: u64,
    /// Intents with a decision.
    pub decided: u64,
    /// Intents without one when the drain ended.
    pub missing: u64,
    /// Decisions for an intent already decided (redelivery).
    pub duplicates: u64,
    /// Of those, with a different verdict (a violation).
    pub conflicting: u64,
    /// Decisions for no intent of this run.
    pub strays: u64,
    /// Decisions that did not parse.
    pub unreadable_decisions: u64,
    /// Transport errors (each failed delivery attempt included).
    pub errors: u64,
    /// Intents the target never accepted, after every retry (not the
    /// engine's doing; a failure of the run all the same).
    pub undelivered: u64,
    /// Decisions per second, first scheduled send to last decision.
    pub throughput: f64,
    /// First scheduled send to last decision, s.
    pub elapsed_s: f64,
    /// Sends more than 1 ms behind their schedule (the target pushed
    /// back, or this machine could not keep up). Their latency still
    /// counts from the schedule.
    pub late_sends: u64,
    /// The furthest any send fell behind, ms.
    pub max_send_lag_ms: f64,
    /// Scheduled send → decision received.
    pub latency: Percentiles,
    /// Inside the engine (first poll of a batch → sink ack), embedded only.
    pub engine_latency: Option<Percentiles>,
    /// Decisions by reason.
    pub by_reason: BTreeMap<&'static str, u64>,
    /// Intents by kind, with their verdicts.
    pub by_kind: Vec<KindRow>,
    /// Hostile intents authorized (must be 0).
    pub hostile_authorized: u64,
    /// Intents that got an unexpected reason (not shed or late).
    pub unexpected: u64,
    /// The whole run's latency, µs.
    #[serde(skip)]
    pub histogram: Histogram<u64>,
    /// Per-interval latency.
    #[serde(skip)]
    pub intervals: Vec<Interval>,
    /// Wall clock at the run's start, µs since the Unix epoch.
    pub start_unix_us: u64,
}

impl Outcome {
    /// Everything that makes the run a failure: lost intents, conflicting
    /// verdicts, hostile intents authorized, wrong reasons, unreadable
    /// decisions.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.missing > 0 {
            v.push(format!("{} intents got no decision", self.missing));
        }
        if self.undelivered > 0 {
            v.push(format!(
                "{} intents could not be delivered to the target",
                self.undelivered
            ));
        }
        if self.conflicting > 0 {
            v.push(format!(
                "{} intents got two different verdicts",
                self.conflicting
            ));
        }
        if self.hostile_authorized > 0 {
            v.push(format!(
                "{} hostile intents were authorized",
                self.hostile_authorized
            ));
        }
        if self.unexpected > 0 {
            v.push(format!(
                "{} intents got a reason their kind does not call for",
                self.unexpected
            ));
        }
        if self.unreadable_decisions > 0 {
            v.push(format!(
                "{} decisions did not parse",
                self.unreadable_decisions
            ));
        }
        v
    }

    /// Valid intents shed or late: the target was over capacity.
    pub fn shed_or_late(&self) -> u64 {
        self.by_kind.iter().map(|k| k.shed_or_late).sum()
    }
}

/// Runs `load` against a freshly started `target`; `on_tick` gets live
/// figures once per interval.
pub fn run(
    target: &TargetSpec,
    load: &Load,
    on_tick: &mut (dyn FnMut(&Tick) + Send),
) -> Result<Outcome, String> {
    load.shape.mix.check()?;
    if !load.rate.is_finite() || load.rate <= 0.0 || load.duration.is_zero() {
        return Err("rate and duration must be above zero".into());
    }
    let total_f = (load.duration.as_secs_f64() * load.rate).ceil().max(1.0);
    if total_f > 1e9 {
        return Err(format!("{total_f} intents in one run is too many"));
    }
    let total = total_f as u64;
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).map_err(|e| format!("no randomness: {e}"))?;
    let principals = load.shape.principals.max(2);

    // The collector's clock starts now; the schedule starts once the
    // target is up, `lead` later.
    let created = Instant::now();
    let collector = Arc::new(Collector::new(
        usize::try_from(total).map_err(|_| "too many intents")?,
        tag,
        created,
    ));
    // Everything that can fail before the target starts does.
    let mut workload = Workload::new(load.shape.clone(), tag)?;
    let mut target_run = target.start(collector.clone(), principals)?;
    let lead = created.elapsed() + Duration::from_millis(50);
    let start_unix_us =
        now_us() + u64::try_from(lead.saturating_sub(created.elapsed()).as_micros()).unwrap_or(0);
    let interval_ns = 1e9 / load.rate;
    let due = move |i: u64| lead + Duration::from_nanos((i as f64 * interval_ns) as u64);

    // Signs ahead of the schedule into a bounded queue, on its own thread:
    // signing must not delay sends.
    let (tx, rx) = crossbeam_channel::bounded::<warrant_engine::workload::Generated>(8_192);
    let generator = std::thread::Builder::new()
        .name("loadgen-sign".into())
        .spawn(move || {
            for i in 0..total {
                let at = start_unix_us + (i as f64 * interval_ns / 1_000.0) as u64;
                if tx.send(workload.generate(i, at)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the signer: {e}"))?;

    let done = AtomicBool::new(false);
    let mut intervals = Vec::new();
    let mut late_sends = 0u64;
    let mut max_lag = Duration::ZERO;
    let mut failure = None;
    // When the last decision came (or the drain gave up): the end of the
    // throughput interval, before the threads are joined.
    let mut drained_at = None;
    std::thread::scope(|scope| {
        let ticker = scope.spawn(|| {
            let mut next = lead + load.interval;
            let mut last_decided = 0;
            let mut last_at = lead;
            while !done.load(Ordering::Relaxed) {
                let now = created.elapsed();
                if now < next {
                    std::thread::sleep((next - now).min(Duration::from_millis(50)));
                    continue;
                }
                let h = collector.take_interval();
                let counts = collector.counts();
                let secs = (now - last_at).as_secs_f64().max(1e-9);
                on_tick(&Tick {
                    elapsed: now.saturating_sub(lead),
                    total,
                    counts,
                    rate: counts.decided.saturating_sub(last_decided) as f64 / secs,
                    p99_us: if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(0.99)
                    },
                });
                intervals.push(Interval {
                    start: last_at.saturating_sub(lead),
                    length: now - last_at,
                    histogram: h,
                });
                last_decided = counts.decided;
                last_at = now;
                next += load.interval;
            }
            let now = created.elapsed();
            let h = collector.take_interval();
            if !h.is_empty() {
                intervals.push(Interval {
                    start: last_at.saturating_sub(lead),
                    length: now - last_at,
                    histogram: h,
                });
            }
        });

        // Open loop: each intent is sent when due, however late the
        // previous one was; a late send is the target's latency.
        for g in rx.iter() {
            let at = due(g.index);
            let now = created.elapsed();
            if now < at {
                // Sleep, never spin: a spinning publisher would take a
                // core from an embedded engine.
                std::thread::sleep(at - now);
            } else if now - at > Duration::from_millis(1) {
                late_sends += 1;
                max_lag = max_lag.max(now - at);
            }
            let decision_id = (g.kind == Kind::Malformed).then(|| g.decision_id(&tag));
            collector.sending(g.index, g.kind, at, g.original, decision_id);
            if let Err(e) = target_run.publish(g.index, &g.key, g.bytes) {
                failure = Some(e);
                break;
            }
        }
        drop(rx);
        if failure.is_none()
            && let Err(e) = target_run.flush()
        {
            failure = Some(e);
        }
        // Drain: wait for the last decisions.
        let sent = collector.counts().sent;
        let give_up = Instant::now() + load.drain_timeout;
        while failure.is_none() && Instant::now() < give_up {
            let c = collector.counts();
            if c.decided + c.undelivered >= sent {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // What is decided by now is the run's: the target may decide the
        // rest while it shuts down (an embedded engine drains its
        // backlog), past the drain timeout.
        collector.close();
        drained_at = Some(
            collector
                .last_decision_at()
                .unwrap_or_else(|| created.elapsed()),
        );
        done.store(true, Ordering::Relaxed);
        let _ = ticker.join();
    });
    let _ = generator.join();
    let last = drained_at.unwrap_or_else(|| created.elapsed());
    let finished = target_run.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    let finished = finished?;
    let counts = collector.counts();
    let histogram = collector.total();
    let elapsed = last.saturating_sub(lead);
    let mut outcome = Outcome {
        target: target.name(),
        offered_rate: load.rate,
        duration_s: load.duration.as_secs_f64(),
        sent: counts.sent,
        decided: counts.decided,
        missing: 0,
        undelivered: counts.undelivered,
        duplicates: counts.duplicates,
        conflicting: counts.conflicting,
        strays: counts.strays,
        unreadable_decisions: counts.unreadable_decisions,
        errors: counts.errors,
        throughput: counts.decided as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed_s: elapsed.as_secs_f64(),
        late_sends,
        max_send_lag_ms: max_lag.as_secs_f64() * 1e3,
        latency: Percentiles::of(&histogram),
        engine_latency: finished
            .engine
            .as_ref()
            .map(|s| Percentiles::of(&s.latency_us)),
        by_reason: BTreeMap::new(),
        by_kind: Vec::new(),
        hostile_authorized: 0,
        unexpected: 0,
        histogram,
        intervals,
        start_unix_us,
    };
    tally(&collector, &load.shape, &mut outcome);
    // Delivered, and no decision: counted from the verdicts themselves (an
    // intent given up on as undelivered may still have been decided).
    outcome.missing = outcome.by_kind.iter().map(|k| k.missing).sum();
    Ok(outcome)
}

/// Fills in the verdicts by kind and reason, and the violations.
fn tally(collector: &Collector, shape: &Shape, o: &mut Outcome) {
    let verdicts = collector.verdicts();
    // Intents whose nonce a replay used first and was authorized for: the
    // replay reached the engine before them (a retried delivery reorders),
    // so their own "replayed nonce" deny is right.
    let taken: std::collections::HashSet<u64> = verdicts
        .iter()
        .filter(|v| v.kind == Kind::Replayed && v.reason == Some(Reason::Authorized))
        .filter_map(|v| v.original)
        .collect();
    let mut rows: BTreeMap<Kind, KindRow> = BTreeMap::new();
    for (index, v) in verdicts.iter().enumerate().filter(|(_, v)| v.delivered) {
        let row = rows.entry(v.kind).or_insert_with(|| KindRow {
            kind: v.kind.name(),
            mix_percent: shape.mix.percent(v.kind),
            sent: 0,
            sent_percent: 0.0,
            expected: reason_name(v.kind.expected()),
            as_expected: 0,
            shed_or_late: 0,
            unexpected: BTreeMap::new(),
            missing: 0,
        });
        row.sent += 1;
        let Some(r) = v.reason else {
            row.missing += 1;
            continue;
        };
        *o.by_reason.entry(reason_name(r)).or_default() += 1;
        if r == v.kind.expected() {
            row.as_expected += 1;
            continue;
        }
        let transient = matches!(r, Reason::Overloaded | Reason::DeadlineExceeded);
        // A replay of an intent that was never authorized (shed) is the
        // first use of its nonce: authorizing it is right.
        let original_unused = v
            .original
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| verdicts.get(i))
            .is_some_and(|orig| orig.reason != Some(Reason::Authorized));
        if transient {
            row.shed_or_late += 1;
        } else if (v.kind == Kind::Replayed && r == Reason::Authorized && original_unused)
            || (v.kind.is_valid() && r == Reason::ReplayedNonce && taken.contains(&(index as u64)))
        {
            row.as_expected += 1;
        } else {
            *row.unexpected.entry(reason_name(r)).or_default() += 1;
            o.unexpected += 1;
            if r == Reason::Authorized && !v.kind.is_valid() {
                o.hostile_authorized += 1;
            }
        }
    }
    let sent = verdicts.iter().filter(|v| v.delivered).count().max(1) as f64;
    o.by_kind = rows
        .into_values()
        .map(|mut r| {
            r.sent_percent = r.sent as f64 * 100.0 / sent;
            r
        })
        .collect();
}

/// The ramp: fixed-rate steps of increasing rate until one misses the SLO.
#[derive(Debug, Clone)]
pub struct Ramp {
    /// First step's rate.
    pub start: f64,
    /// Each step's rate is the last one's times this (> 1).
    pub factor: f64,
    /// Never offer more than this.
    pub max: f64,
    /// p99 a step must meet.
    pub slo_p99: Duration,
    /// Steps of bisection between the last rate that met the SLO and the
    /// first that did not.
    pub refine: u32,
}

/// One ramp step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What it measured.
    pub outcome: Outcome,
    /// Whether it met the SLO: p99 within it, nothing lost, shed or late,
    /// no violation, and throughput within 5 % of the offered rate.
    pub passed: bool,
    /// Why not, if it did not.
    pub why: Option<String>,
}

/// What the ramp found.
#[derive(Debug, Clone, Serialize)]
pub struct RampOutcome {
    /// The p99 SLO, ms.
    pub slo_p99_ms: f64,
    /// Every step, in the order run.
    pub steps: Vec<Step>,
    /// The highest rate that met the SLO, if any did.
    pub best_rate: Option<f64>,
}

fn judge(o: &Outcome, slo: Duration) -> Option<String> {
    let v = o.violations();
    if !v.is_empty() {
        return Some(v.join("; "));
    }
    if o.shed_or_late() > 0 {
        return Some(format!(
            "{} valid intents shed or late: over capacity",
            o.shed_or_late()
        ));
    }
    let slo_ms = slo.as_secs_f64() * 1e3;
    if o.latency.p99_ms > slo_ms {
        return Some(format!(
            "p99 {:.3} ms over the {slo_ms:.3} ms SLO",
            o.latency.p99_ms
        ));
    }
    if o.throughput < 0.95 * o.offered_rate {
        return Some(format!(
            "{:.0} decisions/s for {:.0} offered",
            o.throughput, o.offered_rate
        ));
    }
    None
}

/// Runs the ramp: each step is a fixed-rate run of `step.duration` at a
/// higher rate, until one misses the SLO or `max` is reached; then
/// `refine` bisection steps between the last pass and the first miss.
/// `on_step` hears of each step as it starts.
pub fn ramp(
    target: &TargetSpec,
    ramp: &Ramp,
    step: &Load,
    on_step: &mut dyn FnMut(f64),
    on_tick: &mut (dyn FnMut(&Tick) + Send),
) -> Result<RampOutcome, String> {
    if !ramp.factor.is_finite()
        || ramp.factor <= 1.0
        || !ramp.start.is_finite()
        || ramp.start <= 0.0
    {
        return Err("the ramp needs a start rate above 0 and a factor above 1".into());
    }
    let mut steps = Vec::new();
    let mut run_step = |rate: f64, steps: &mut Vec<Step>| -> Result<bool, String> {
        on_step(rate);
        let outcome = run(
            target,
            &Load {
                rate,
                ..step.clone()
            },
            on_tick,
        )?;
        let why = judge(&outcome, ramp.slo_p99);
        let passed = why.is_none();
        steps.push(Step {
            outcome,
            passed,
            why,
        });
        Ok(passed)
    };
    let mut pass: Option<f64> = None;
    let mut fail: Option<f64> = None;
    let mut rate = ramp.start.min(ramp.max);
    loop {
        if run_step(rate, &mut steps)? {
            pass = Some(rate);
            if rate >= ramp.max {
                break;
            }
            rate = (rate * ramp.factor).min(ramp.max);
        } else {
            fail = Some(rate);
            break;
        }
    }
    if let (Some(mut lo), Some(mut hi)) = (pass, fail) {
        for _ in 0..ramp.refine {
            let mid = ((lo + hi) / 2.0).round();
            if mid <= lo || mid >= hi {
                break;
            }
            if run_step(mid, &mut steps)? {
                lo = mid;
                pass = Some(mid);
            } else {
                hi = mid;
            }
        }
    }
    Ok(RampOutcome {
        slo_p99_ms: ramp.slo_p99.as_secs_f64() * 1e3,
        steps,
        best_rate: pass,
    })
}
