//! What a run leaves behind: the text summary, the HdrHistogram interval
//! log (`.hlog`), the percentile distribution (`.hgrm`) and a
//! latency-by-percentile plot (SVG).
//!
//! The `.hlog` is the format of HdrHistogram's `HistogramLogWriter`
//! (V2 compressed histograms, values in µs, `MaxValueDivisor` 1000 so the
//! interval maxima read in ms): `HistogramLogProcessor`,
//! `HistogramLogAnalyzer` and the HdrHistogram libraries read it. The
//! `.hgrm` is `outputPercentileDistribution`'s text, in ms, which the
//! HdrHistogram plotter reads.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;

use crate::drive::{Outcome, RampOutcome};

/// The text summary of one run.
pub fn summary(o: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "loadgen: {} target, {:.0} intents/s offered for {:.1} s",
        o.target, o.offered_rate, o.duration_s
    );
    let _ = writeln!(
        s,
        "  intents sent     {:>10}   decided {:>10}   missing {}   duplicates {} ({} with another verdict)",
        o.sent, o.decided, o.missing, o.duplicates, o.conflicting
    );
    let _ = writeln!(
        s,
        "  throughput       {:>10.0} decisions/s over {:.2} s",
        o.throughput, o.elapsed_s
    );
    let l = &o.latency;
    let _ = writeln!(
        s,
        "  latency (scheduled send -> decision)  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    if let Some(e) = &o.engine_latency {
        let _ = writeln!(
            s,
            "  inside the engine (poll -> sink ack)  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
            e.p50_ms, e.p90_ms, e.p99_ms, e.p999_ms, e.max_ms
        );
    }
    if o.late_sends > 0 {
        let _ = writeln!(
            s,
            "  {} sends fell behind schedule (by up to {:.1} ms); their latency counts from the schedule",
            o.late_sends, o.max_send_lag_ms
        );
    }
    let _ = writeln!(
        s,
        "  {:<16}{:>6}{:>10}{:>8}   {:<18}{:>10}{:>8}  other",
        "kind", "mix %", "sent", "sent %", "expected", "got it", "shed"
    );
    for k in &o.by_kind {
        let other: Vec<String> = k
            .unexpected
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .chain((k.missing > 0).then(|| format!("missing {}", k.missing)))
            .collect();
        let _ = writeln!(
            s,
            "  {:<16}{:>6}{:>10}{:>8.2}   {:<18}{:>10}{:>8}  {}",
            k.kind,
            k.mix_percent,
            k.sent,
            k.sent_percent,
            k.expected,
            k.as_expected,
            k.shed_or_late,
            if other.is_empty() {
                "-".to_string()
            } else {
                other.join(", ")
            }
        );
    }
    let _ = writeln!(s, "  decisions by reason");
    for (r, n) in &o.by_reason {
        let _ = writeln!(s, "    {r:<22}{n:>10}");
    }
    if o.errors > 0 || o.strays > 0 || o.undelivered > 0 {
        let _ = writeln!(
            s,
            "  transport errors {} (failed deliveries are retried), undelivered {}, decisions of other traffic {}",
            o.errors, o.undelivered, o.strays
        );
    }
    let v = o.violations();
    if v.is_empty() {
        let _ = write!(
            s,
            "  ok: every intent decided once, every verdict as its kind calls for"
        );
    } else {
        let _ = write!(s, "  FAILED: {}", v.join("; "));
    }
    s
}

/// The text summary of a ramp.
pub fn ramp_summary(r: &RampOutcome) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "loadgen ramp: p99 SLO {:.3} ms", r.slo_p99_ms);
    let _ = writeln!(
        s,
        "  {:>10} {:>12} {:>10} {:>10} {:>10}  verdict",
        "offered/s", "decided/s", "p50 ms", "p99 ms", "max ms"
    );
    for step in &r.steps {
        let o = &step.outcome;
        let _ = writeln!(
            s,
            "  {:>10.0} {:>12.0} {:>10.3} {:>10.3} {:>10.3}  {}",
            o.offered_rate,
            o.throughput,
            o.latency.p50_ms,
            o.latency.p99_ms,
            o.latency.max_ms,
            match &step.why {
                None => "meets the SLO".to_string(),
                Some(w) => format!("misses: {w}"),
            }
        );
    }
    match r.best_rate {
        Some(rate) => {
            let _ = write!(s, "  highest rate meeting the SLO: {rate:.0} intents/s");
        }
        None => {
            let _ = write!(s, "  no rate met the SLO");
        }
    }
    s
}

/// The run's per-interval histograms as an HdrHistogram interval log.
pub fn hlog(o: &Outcome) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let start = UNIX_EPOCH + Duration::from_micros(o.start_unix_us);
    let mut writer = IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "warrant loadgen: {} target, {:.0} intents/s offered for {:.1} s; values in µs",
            o.target, o.offered_rate, o.duration_s
        ))
        .add_comment("latency from each intent's scheduled send time to its decision")
        .with_start_time(start)
        .with_base_time(start)
        .with_max_value_divisor(1_000.0)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(|e| format!("cannot write the log: {e}"))?;
    for i in &o.intervals {
        writer
            .write_histogram(&i.histogram, i.start, i.length, None)
            .map_err(|e| format!("cannot write the log: {e}"))?;
    }
    drop(writer);
    Ok(out)
}

/// The percentile distribution, as HdrHistogram's
/// `outputPercentileDistribution` prints it (values in ms).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    // TotalCount is cumulative: every value up to this row's.
    let mut total = 0u64;
    for v in h.iter_quantiles(5) {
        total = total.saturating_add(v.count_since_last_iteration());
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            1.0 / (1.0 - q)
        } else {
            f64::INFINITY
        };
        let _ = writeln!(
            s,
            "{:>12.3} {:>14.12} {:>10} {:>14.2}",
            v.value_iterated_to() as f64 / 1_000.0,
            q,
            total,
            inv
        );
    }
    let std_dev = h.stdev() / 1_000.0;
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1_000.0,
        std_dev
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1_000.0,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A latency-by-percentile plot of one or more histograms (µs), as SVG:
/// the x axis is `1/(1-percentile)` on a log scale (50 %, 90 %, 99 %,
/// 99.9 %, ...), the y axis latency in ms.
pub fn plot_svg(title: &str, series: &[(String, &Histogram<u64>)]) -> String {
    let (w, h) = (900.0_f64, 520.0_f64);
    let (left, right, top, bottom) = (80.0, 200.0, 50.0, 60.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    // The x range: up to the deepest percentile the data resolves.
    let max_count = series
        .iter()
        .map(|(_, h)| h.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let x_decades = (max_count as f64).log10().ceil().clamp(1.0, 6.0);
    let y_max_ms = series
        .iter()
        .map(|(_, h)| h.max() as f64 / 1_000.0)
        .fold(0.0_f64, f64::max)
        .max(0.001)
        * 1.05;
    let x_of = |q: f64| {
        let inv = if q >= 1.0 {
            10f64.powf(x_decades)
        } else {
            1.0 / (1.0 - q)
        };
        left + (inv.log10() / x_decades).min(1.0) * pw
    };
    let y_of = |ms: f64| top + ph - (ms / y_max_ms).min(1.0) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="16" text-anchor="middle">{}</text>"#,
        left + pw / 2.0,
        escape(title)
    );
    // Grid and axes.
    for d in 0..=(x_decades as u32) {
        let inv = 10f64.powi(i32::try_from(d).unwrap_or(0));
        let x = left + f64::from(d) / x_decades * pw;
        let label = match d {
            0 => "0%".to_string(),
            _ => {
                let pct = 100.0 * (1.0 - 1.0 / inv);
                format!("{}%", trim(pct))
            }
        };
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            top + ph,
            top + ph + 18.0
        );
    }
    for i in 0..=5 {
        let ms = y_max_ms * f64::from(i) / 5.0;
        let y = y_of(ms);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            y + 4.0,
            trim(ms)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        left + pw / 2.0,
        h - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">latency (ms), scheduled send to decision</text>"#,
        top + ph / 2.0
    );
    for (n, (name, hist)) in series.iter().enumerate() {
        let color = COLORS.get(n % COLORS.len()).copied().unwrap_or("#000");
        let mut points = String::new();
        let mut prev_y = None;
        for v in hist.iter_quantiles(5) {
            let x = x_of(v.quantile_iterated_to());
            let y = y_of(v.value_iterated_to() as f64 / 1_000.0);
            // A step plot: the value holds until the next percentile.
            if let Some(py) = prev_y {
                let _ = write!(points, "{x:.1},{py:.1} ");
            }
            let _ = write!(points, "{x:.1},{y:.1} ");
            prev_y = Some(y);
        }
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.trim_end()
        );
        let ly = top + 10.0 + 20.0 * n as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            left + pw + 12.0,
            left + pw + 36.0,
            left + pw + 42.0,
            ly + 4.0,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A number without trailing zeros.
fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
