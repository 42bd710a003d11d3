//! loadgen against the embedded engine: it counts every intent and
//! decision, reports the injected mix back, sees an injected stall in its
//! percentiles (no coordinated omission), and writes outputs that
//! HdrHistogram's readers accept.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use warrant_engine::pipeline::{Config, Layout};
use warrant_engine::workload::{Mix, Shape};
use warrant_loadgen::drive::{Load, Outcome, Ramp};
use warrant_loadgen::report;
use warrant_loadgen::target::{EmbeddedOptions, TargetSpec};

fn embedded(engine: Config, partition_capacity: usize) -> TargetSpec {
    TargetSpec::Embedded(Box::new(EmbeddedOptions {
        partitions: 4,
        partition_capacity,
        engine,
        policy: None,
    }))
}

fn row<'a>(o: &'a Outcome, kind: &str) -> &'a warrant_loadgen::drive::KindRow {
    o.by_kind.iter().find(|k| k.kind == kind).unwrap()
}

#[test]
fn every_intent_is_counted_and_the_mix_comes_back() {
    let mix = Mix {
        forged: 10,
        expired: 3,
        replayed: 4,
        denied: 7,
        unknown_key: 2,
        malformed: 2,
        chained: 12,
    };
    let load = Load {
        rate: 2_000.0,
        duration: Duration::from_secs(2),
        shape: Shape {
            mix,
            principals: 8,
            payload_bytes: 200,
            // Generous: this machine is shared; a shed intent would be
            // counted, but not as its kind's reason.
            deadline: Duration::from_secs(30),
            ..Shape::default()
        },
        ..Load::default()
    };
    let mut ticks = 0;
    let o = warrant_loadgen::run(&embedded(Config::default(), 65_536), &load, &mut |_| {
        ticks += 1
    })
    .unwrap();
    println!("{}", report::summary(&o));
    assert_eq!(o.sent, 4_000);
    assert_eq!(o.decided, 4_000);
    assert_eq!((o.missing, o.duplicates, o.strays), (0, 0, 0));
    assert!(o.violations().is_empty(), "{:?}", o.violations());
    assert_eq!(o.latency.count, 4_000);
    assert!(ticks >= 1, "progress ticks");
    // The kinds are spread exactly per 100 consecutive intents: 10 %
    // forged is 400 intents, and each got "bad signature".
    for (kind, pct, reason) in [
        ("forged", 10, "BadSignature"),
        ("expired", 3, "Expired"),
        ("policy-denied", 7, "DenyRule"),
        ("unknown key", 2, "UnknownKey"),
        ("malformed", 2, "Malformed"),
    ] {
        let r = row(&o, kind);
        assert_eq!(r.sent, 40 * pct, "{kind}");
        assert_eq!(r.mix_percent, u8::try_from(pct).unwrap());
        assert_eq!(r.as_expected, r.sent, "{kind}");
        assert_eq!(o.by_reason.get(reason), Some(&r.sent), "{reason}");
    }
    // Replays and children need an earlier valid intent of the same
    // principal: the first few become valid ones.
    let replayed = row(&o, "replayed");
    assert!(replayed.sent > 140 && replayed.sent <= 160);
    assert_eq!(
        o.by_reason.get("ReplayedNonce"),
        Some(&replayed.as_expected)
    );
    let valid = row(&o, "valid").as_expected + row(&o, "chained").as_expected;
    let shed = row(&o, "valid").shed_or_late + row(&o, "chained").shed_or_late;
    assert_eq!(o.by_reason.get("Authorized").copied().unwrap_or(0), valid);
    assert_eq!(
        valid + shed,
        row(&o, "valid").sent + row(&o, "chained").sent
    );
}

#[test]
fn an_engine_stall_shows_in_the_percentiles() {
    // Small queues and partitions, so the stalled engine pushes back on
    // the publisher within a few hundred intents: a generator that timed
    // from the actual send (coordinated omission) would then see short
    // latencies for the intents it sent late, and miss the stall.
    let engine = Config {
        max_batch: 32,
        queue_batches: 1,
        emit_queue_batches: 1,
        // After 1,000 intents (1 s at 1,000/s), verification stops for
        // 1.5 s.
        verify_pause: Some((1_000, Duration::from_millis(1_500))),
        shed_after: Duration::from_secs(60),
        ..Config::default()
    };
    let load = Load {
        rate: 1_000.0,
        duration: Duration::from_secs(4),
        shape: Shape {
            mix: Mix::valid_only(),
            deadline: Duration::from_secs(30),
            ..Shape::default()
        },
        ..Load::default()
    };
    let o = warrant_loadgen::run(&embedded(engine, 16), &load, &mut |_| {}).unwrap();
    println!("{}", report::summary(&o));
    assert_eq!(o.decided, 4_000);
    assert!(o.violations().is_empty(), "{:?}", o.violations());
    // The publisher was held up: the stall reached the sender...
    assert!(o.late_sends > 500, "{} late sends", o.late_sends);
    assert!(o.max_send_lag_ms > 1_000.0, "{}", o.max_send_lag_ms);
    // ...and still shows in the latency of the intents due during it:
    // 1,500 of 4,000 were due in the stall, waiting from 1.5 s down to 0,
    // so the slowest 1 % waited at least 1.4 s.
    assert!(o.latency.max_ms >= 1_400.0, "max {}", o.latency.max_ms);
    assert!(o.latency.p99_ms >= 1_000.0, "p99 {}", o.latency.p99_ms);
    assert!(o.latency.p90_ms >= 400.0, "p90 {}", o.latency.p90_ms);
}

/// The drain timeout is the run's end: intents the engine decides only
/// after it (here, while it shuts down after a stall) are missing, and no
/// number counts them: not the decided count, not the throughput, not the
/// histogram.
#[test]
fn decisions_after_the_drain_timeout_are_not_the_runs() {
    let engine = Config {
        max_batch: 32,
        // After 500 intents, verification stops for 2 s.
        verify_pause: Some((500, Duration::from_secs(2))),
        shed_after: Duration::from_secs(60),
        ..Config::default()
    };
    let load = Load {
        rate: 1_000.0,
        duration: Duration::from_secs(1),
        drain_timeout: Duration::from_millis(200),
        shape: Shape {
            mix: Mix::valid_only(),
            deadline: Duration::from_secs(30),
            ..Shape::default()
        },
        ..Load::default()
    };
    let o = warrant_loadgen::run(&embedded(engine, 4_096), &load, &mut |_| {}).unwrap();
    println!("{}", report::summary(&o));
    assert_eq!(o.sent, 1_000);
    assert!(o.missing > 0, "{} missing", o.missing);
    assert_eq!(o.decided + o.missing, o.sent);
    assert_eq!(o.histogram.len(), o.decided);
    assert!(
        o.throughput <= 1.1 * load.rate,
        "throughput {} at {} offered",
        o.throughput,
        load.rate
    );
    assert!(!o.violations().is_empty());
}

#[test]
fn the_hlog_reads_back_and_the_plot_and_distribution_are_written() {
    let load = Load {
        rate: 1_000.0,
        duration: Duration::from_millis(2_500),
        interval: Duration::from_millis(500),
        ..Load::default()
    };
    let o = warrant_loadgen::run(&embedded(Config::default(), 65_536), &load, &mut |_| {}).unwrap();
    let log = report::hlog(&o).unwrap();
    let text = String::from_utf8(log.clone()).unwrap();
    assert!(text.contains("#[StartTime: "));
    assert!(text.contains("#[BaseTime: "));
    let mut total = 0;
    let mut intervals = 0;
    let mut last_start = -1.0;
    let mut d = Deserializer::new();
    for entry in IntervalLogIterator::new(&log) {
        if let LogEntry::Interval(i) = entry.unwrap() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(i.encoded_histogram())
                .unwrap();
            let h: hdrhistogram::Histogram<u64> = d.deserialize(&mut raw.as_slice()).unwrap();
            total += h.len();
            intervals += 1;
            let start = i.start_timestamp().as_secs_f64();
            assert!(start > last_start, "intervals in order");
            last_start = start;
        }
    }
    assert_eq!(total, o.decided, "every decision is in one interval");
    assert!(intervals >= 4, "{intervals} intervals of 0.5 s");

    let hgrm = report::hgrm(&o.histogram);
    assert!(hgrm.contains(&format!("Total count    = {:>12}", o.decided)));
    // The TotalCount column is cumulative: it rises to every decision.
    let counts: Vec<u64> = hgrm
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .skip(1)
        .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{hgrm}");
    assert_eq!(counts.last().copied(), Some(o.decided), "{hgrm}");
    let svg = report::plot_svg("t", &[("1000/s".into(), &o.histogram)]);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 1);
    let json = serde_json::to_value(&o).unwrap();
    assert_eq!(json["decided"], o.decided);
    assert_eq!(json["by_reason"]["Authorized"], o.by_reason["Authorized"]);
}

#[test]
fn the_ramp_stops_at_the_first_rate_over_the_slo() {
    // Which step misses is fixed by construction, not by this machine's
    // speed. Each step runs a fresh engine with one verify lane, which
    // stops verifying for 8 s once it has verified 5 intents. The first
    // step (0.5/s for 4 s) sends 2 intents and never pauses: it passes
    // unless a decision takes seconds (its p99 must be within the 3 s SLO,
    // and its throughput within 5 % of 0.5/s: the second decision within
    // about 2.2 s). The second step (50/s) sends 200 within 4 s; those
    // after the 5th all wait out the pause, over 4 s each, so its p99 is
    // over the SLO. A third step (5,000/s) would pause and miss as well:
    // the ramp must stop before it.
    let engine = Config {
        layout: Layout::unpinned(1),
        verify_pause: Some((5, Duration::from_secs(8))),
        // Nothing shed or late: the miss is the p99, nothing else.
        shed_after: Duration::from_secs(60),
        ..Config::default()
    };
    let ramp = Ramp {
        start: 0.5,
        factor: 100.0,
        max: 1_000_000.0,
        slo_p99: Duration::from_secs(3),
        refine: 0,
    };
    let step = Load {
        duration: Duration::from_secs(4),
        shape: Shape {
            mix: Mix::valid_only(),
            deadline: Duration::from_secs(60),
            ..Shape::default()
        },
        ..Load::default()
    };
    let mut rates = Vec::new();
    let r = warrant_loadgen::ramp(
        &embedded(engine, 65_536),
        &ramp,
        &step,
        &mut |rate| rates.push(rate),
        &mut |_| {},
    )
    .unwrap();
    println!("{}", report::ramp_summary(&r));
    assert_eq!(rates, [0.5, 50.0], "one step that passes, one that misses");
    assert_eq!(r.steps.len(), 2);
    let (first, last) = (&r.steps[0], &r.steps[1]);
    assert!(first.passed, "{:?}", first.why);
    assert_eq!((first.outcome.sent, first.outcome.decided), (2, 2));
    assert!(!last.passed, "the ramp ends on a miss");
    assert_eq!((last.outcome.sent, last.outcome.decided), (200, 200));
    let why = last.why.as_deref().unwrap();
    assert!(why.contains("over the 3000.000 ms SLO"), "{why}");
    assert!(last.outcome.latency.p99_ms > 4_000.0, "{why}");
    assert_eq!(r.best_rate, Some(0.5));
}
