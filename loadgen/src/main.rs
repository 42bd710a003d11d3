//! `loadgen`: open-loop load for Warrant. See the crate docs and
//! `loadgen/README.md`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use warrant_engine::workload::{Mix, Shape};
use warrant_loadgen::drive::{Load, Ramp, Tick};
use warrant_loadgen::report;
use warrant_loadgen::target::{EmbeddedOptions, TargetSpec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Open-loop load for Warrant: signed intents at a target rate, latency from each intent's scheduled send time",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the trust store (TOML) holding loadgen's signing keys, for an
    /// engine that loadgen will drive over Kafka.
    Trust {
        /// Principals (as `--principals` of the run).
        #[arg(long, default_value_t = 16)]
        principals: usize,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TargetKind {
    /// The engine in this process, on the embedded transport.
    Embedded,
    /// A Warrant deployment on Kafka.
    Kafka,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProgressKind {
    /// A bar on a terminal, lines otherwise.
    Auto,
    /// A progress bar.
    Bar,
    /// A line per interval, on stderr.
    Lines,
    /// Nothing.
    None,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Where the load goes.
    #[arg(long, value_enum, default_value = "embedded")]
    target: TargetKind,
    /// Intents per second, offered on schedule.
    #[arg(long, default_value_t = 5_000.0)]
    rate: f64,
    /// Seconds to offer load (per step with --ramp).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    /// Find the highest rate whose p99 meets --slo-p99-ms instead of one
    /// fixed rate.
    #[arg(long)]
    ramp: bool,
    /// The p99 a ramp step must meet, ms.
    #[arg(long, default_value_t = 10.0)]
    slo_p99_ms: f64,
    /// The ramp's first rate.
    #[arg(long, default_value_t = 1_000.0)]
    ramp_start: f64,
    /// Each ramp step multiplies the rate by this.
    #[arg(long, default_value_t = 1.5)]
    ramp_factor: f64,
    /// The ramp never offers more than this.
    #[arg(long, default_value_t = 1_000_000.0)]
    ramp_max: f64,
    /// Bisection steps between the last rate that met the SLO and the
    /// first that did not.
    #[arg(long, default_value_t = 2)]
    ramp_refine: u32,

    /// Signing principals (2 treasury services, the rest agents).
    #[arg(long, default_value_t = 16)]
    principals: usize,
    /// Bytes of opaque payload in each intent (at most 7680: attributes of
    /// up to 256 bytes).
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// Deadline after the scheduled send time, ms.
    #[arg(long, default_value_t = 1_000)]
    deadline_ms: u64,
    /// % forged signatures (bad-signature denies).
    #[arg(long, default_value_t = Mix::default().forged)]
    forged: u8,
    /// % expired intents.
    #[arg(long, default_value_t = Mix::default().expired)]
    expired: u8,
    /// % new intents reusing an earlier intent's nonce (one still
    /// remembered: its principal's previous intent, sent less than half a
    /// deadline before; otherwise a valid intent is sent instead).
    #[arg(long, default_value_t = Mix::default().replayed)]
    replayed: u8,
    /// % intents a policy deny rule refuses.
    #[arg(long, default_value_t = Mix::default().denied)]
    denied: u8,
    /// % intents signed by a key the engine does not trust.
    #[arg(long, default_value_t = Mix::default().unknown_key)]
    unknown_key: u8,
    /// % truncated intents.
    #[arg(long, default_value_t = Mix::default().malformed)]
    malformed: u8,
    /// % valid children of an earlier intent (lineage links).
    #[arg(long, default_value_t = Mix::default().chained)]
    chained: u8,

    /// Embedded: partitions of the intents topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Embedded: a policy file or directory instead of the example
    /// payments policy the mix is built for.
    #[arg(long)]
    policy: Option<PathBuf>,

    /// Kafka: bootstrap servers.
    #[arg(long, env = "LOADGEN_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Kafka: the engine's intents topic.
    #[arg(long, default_value = "warrant.intents")]
    intents_topic: String,
    /// Kafka: the engine's decisions topic.
    #[arg(long, default_value = "warrant.decisions")]
    decisions_topic: String,
    /// Kafka: the producer's linger.ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// Kafka: a librdkafka property for the producer and the reader, as
    /// NAME=VALUE; repeatable. TLS (security.protocol=SSL or SASL_SSL) and
    /// SASL PLAIN, SCRAM-SHA-256/512 are in the build; GSSAPI is not.
    #[arg(short = 'X', value_name = "NAME=VALUE")]
    property: Vec<String>,

    /// Seconds to wait for the last decisions after the last send.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
    /// Seconds per progress line and per `.hlog` interval.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Write summary.txt, summary.json, latency.hlog, latency.hgrm and
    /// latency.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the JSON summary on stdout instead of the text one.
    #[arg(long)]
    json: bool,
    /// Live progress, on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressKind,
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{name} must be a number of seconds ≥ 0"))
}

impl RunArgs {
    fn target(&self) -> Result<TargetSpec, String> {
        Ok(match self.target {
            TargetKind::Embedded => TargetSpec::Embedded(Box::new(EmbeddedOptions {
                partitions: self.partitions.max(1),
                policy: self.policy.clone(),
                ..EmbeddedOptions::default()
            })),
            TargetKind::Kafka => {
                let mut o = warrant_loadgen::kafka::KafkaOptions::new(&self.brokers);
                o.intents_topic.clone_from(&self.intents_topic);
                o.decisions_topic.clone_from(&self.decisions_topic);
                o.linger_ms = self.linger_ms;
                for p in &self.property {
                    let (k, v) = p
                        .split_once('=')
                        .ok_or_else(|| format!("-X {p}: expected NAME=VALUE"))?;
                    o.properties
                        .push((k.trim().to_owned(), v.trim().to_owned()));
                }
                TargetSpec::Kafka(o)
            }
        })
    }

    fn load(&self) -> Result<Load, String> {
        let mix = Mix {
            forged: self.forged,
            expired: self.expired,
            replayed: self.replayed,
            denied: self.denied,
            unknown_key: self.unknown_key,
            malformed: self.malformed,
            chained: self.chained,
        };
        mix.check()?;
        if self.interval <= 0.0 {
            return Err("--interval must be above 0".into());
        }
        Ok(Load {
            rate: self.rate,
            duration: seconds("duration", self.duration)?,
            shape: Shape {
                principals: self.principals.max(2),
                mix,
                payload_bytes: self.payload_bytes,
                deadline: Duration::from_millis(self.deadline_ms),
                ..Shape::default()
            },
            drain_timeout: seconds("drain-timeout", self.drain_timeout)?,
            interval: seconds("interval", self.interval)?,
        })
    }
}

/// Live progress: a bar on a terminal, lines otherwise.
enum Progress {
    Bar(ProgressBar),
    Lines,
    Quiet,
}

impl Progress {
    fn new(kind: ProgressKind) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        match kind {
            ProgressKind::Bar => Progress::bar(),
            ProgressKind::Auto if terminal => Progress::bar(),
            ProgressKind::Auto | ProgressKind::Lines => Progress::Lines,
            ProgressKind::None => Progress::Quiet,
        }
    }

    fn bar() -> Progress {
        let bar = ProgressBar::new(0);
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} decided  {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress::Bar(bar)
    }

    fn step(&self, rate: f64) {
        match self {
            Progress::Bar(b) => {
                b.reset();
                b.println(format!("step: {rate:.0} intents/s"));
            }
            Progress::Lines => eprintln!("step: {rate:.0} intents/s"),
            Progress::Quiet => {}
        }
    }

    fn tick(&self, t: &Tick) {
        let errors = t.counts.errors + t.counts.conflicting + t.counts.unreadable_decisions;
        let msg = format!(
            "{:>8.0}/s  p99 {:>8.3} ms  errors {}",
            t.rate,
            t.p99_us as f64 / 1_000.0,
            errors
        );
        match self {
            Progress::Bar(b) => {
                b.set_length(t.total);
                b.set_position(t.counts.decided);
                b.set_message(msg);
            }
            Progress::Lines => eprintln!(
                "t={:>6.1}s  sent {:>9}  decided {:>9}  {msg}",
                t.elapsed.as_secs_f64(),
                t.counts.sent,
                t.counts.decided
            ),
            Progress::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

/// `summary.txt` and `summary.json`.
fn write_summary(dir: &Path, text: &str, json: &str) -> Result<(), String> {
    write(dir, "summary.txt", text.as_bytes())?;
    write(dir, "summary.json", json.as_bytes())
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string_pretty(v).map_err(|e| format!("cannot write JSON: {e}"))
}

fn run(args: &RunArgs) -> Result<bool, String> {
    let target = args.target()?;
    let load = args.load()?;
    let progress = Progress::new(args.progress);
    let mut on_tick = |t: &Tick| progress.tick(t);
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
    }
    if args.ramp {
        let ramp = Ramp {
            start: args.ramp_start,
            factor: args.ramp_factor,
            max: args.ramp_max,
            slo_p99: Duration::try_from_secs_f64(args.slo_p99_ms / 1e3)
                .map_err(|_| "--slo-p99-ms must be ≥ 0")?,
            refine: args.ramp_refine,
        };
        let outcome = warrant_loadgen::ramp(
            &target,
            &ramp,
            &load,
            &mut |rate| progress.step(rate),
            &mut on_tick,
        );
        progress.finish();
        let outcome = outcome?;
        let text = report::ramp_summary(&outcome);
        let json_text = json(&outcome)?;
        if let Some(dir) = &args.out {
            write_summary(dir, &text, &json_text)?;
            let series: Vec<(String, &hdrhistogram::Histogram<u64>)> = outcome
                .steps
                .iter()
                .map(|s| {
                    (
                        format!("{:.0}/s", s.outcome.offered_rate),
                        &s.outcome.histogram,
                    )
                })
                .collect();
            let title = format!(
                "Warrant latency by percentile, ramp ({} target)",
                target.name()
            );
            write(
                dir,
                "latency.svg",
                report::plot_svg(&title, &series).as_bytes(),
            )?;
        }
        say(&format!("{}\n", if args.json { json_text } else { text }));
        // A step that broke a guarantee fails the run, whatever else met
        // the SLO.
        let broken: Vec<String> = outcome
            .steps
            .iter()
            .flat_map(|s| s.outcome.violations())
            .collect();
        if !broken.is_empty() {
            eprintln!("loadgen: {}", broken.join("; "));
        }
        return Ok(outcome.best_rate.is_some() && broken.is_empty());
    }

    let outcome = warrant_loadgen::run(&target, &load, &mut on_tick);
    progress.finish();
    let outcome = outcome?;
    let text = report::summary(&outcome);
    let json_text = json(&outcome)?;
    if let Some(dir) = &args.out {
        write_summary(dir, &text, &json_text)?;
        write(dir, "latency.hlog", &report::hlog(&outcome)?)?;
        write(
            dir,
            "latency.hgrm",
            report::hgrm(&outcome.histogram).as_bytes(),
        )?;
        let title = format!(
            "Warrant latency by percentile, {:.0} intents/s ({} target)",
            outcome.offered_rate, outcome.target
        );
        let series = [(format!("{:.0}/s", outcome.offered_rate), &outcome.histogram)];
        write(
            dir,
            "latency.svg",
            report::plot_svg(&title, &series).as_bytes(),
        )?;
    }
    say(&format!("{}\n", if args.json { json_text } else { text }));
    Ok(outcome.violations().is_empty())
}

/// Writes `text` to standard output. A reader that has gone (`loadgen … |
/// head`) is not an error: `print!` would panic there.
fn say(text: &str) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("loadgen: cannot write to standard output: {e}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Trust { principals }) => {
            match warrant_engine::workload::trust_store(principals) {
                Ok(t) => {
                    say(&format!(
                        "# loadgen's {} test principals (keys derived from their index: for load tests only)\n{}",
                        principals.max(2),
                        t.to_toml()
                    ));
                    Ok(true)
                }
                Err(e) => Err(e.to_string()),
            }
        }
        None => run(&cli.run),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
