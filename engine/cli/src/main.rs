//! `warrant`: the command-line front of the engine.
//!
//! Subcommands: `run` (the engine on Kafka, from `warrant.toml`), `demo`
//! (the engine end to end on the embedded transport,
//! checked), `selftest` (sign, open and batch-verify a generated mix of
//! valid and forged intents, cross-checked against single verification),
//! `verify` (an executor's offline check of a decision), `lineage verify`,
//! `policy check|test|explain`, `keygen` (write an ed25519 key file) and
//! `backend` (which SIMD backend verification runs on).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::builder::{RangedI64ValueParser, RangedU64ValueParser};
use clap::{Parser, Subcommand};
use warrant_cli::outln;
use warrant_engine::pipeline::{Config, Layout};
use warrant_engine::verify::{PublicKey, SigItem, verify_all, verify_one};
use warrant_engine::{backend, demo};
use warrant_schemas::{
    INTENT_SIGNING_DOMAIN, IntentFields, IntentSigner, Limits, encode_intent, encode_signed_intent,
    open_signed_intent,
};

mod policy_cli;
#[cfg(feature = "kafka")]
mod run;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "warrant",
    version,
    about = "Governed execution: nothing runs until it holds a warrant"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole lifecycle on this machine with no set-up: an engine on
    /// the embedded transport, the example payments policy, and an
    /// open-loop generator of valid, chained, forged, expired, replayed,
    /// policy-denied, unknown-key and malformed intents. Prints throughput,
    /// latency percentiles and decisions by reason, then checks every
    /// decision, the lineage log and a sample with the executor verifier.
    /// Exits 1 if any check fails.
    Demo {
        /// Seconds of load (rate × duration: at most 100,000,000 intents).
        #[arg(long, default_value = "5", value_parser = seconds)]
        duration: Duration,
        /// Intents per second (open loop: latency counts from the schedule).
        #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
        rate: u64,
        /// Partitions of the embedded intents topic (1 to 1024).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=i64::from(demo::MAX_PARTITIONS)))]
        partitions: u32,
        /// Signing principals (2 to 65536; the first two are the treasury
        /// services).
        #[arg(long, default_value_t = 16, value_parser = RangedU64ValueParser::<usize>::new().range(2..=demo::MAX_PRINCIPALS as u64))]
        principals: usize,
        /// Percent of intents with a forged signature.
        #[arg(long, default_value_t = 5, value_parser = percent())]
        forged: u8,
        /// Percent issued too long ago.
        #[arg(long, default_value_t = 2, value_parser = percent())]
        expired: u8,
        /// Percent reusing an earlier intent's nonce (one still remembered:
        /// its principal's previous intent, sent less than half a deadline
        /// before; otherwise a valid intent is sent instead).
        #[arg(long, default_value_t = 2, value_parser = percent())]
        replayed: u8,
        /// Percent a policy deny rule refuses.
        #[arg(long, default_value_t = 5, value_parser = percent())]
        denied: u8,
        /// Percent signed by a key the engine does not trust.
        #[arg(long, default_value_t = 1, value_parser = percent())]
        unknown_key: u8,
        /// Percent of truncated buffers.
        #[arg(long, default_value_t = 1, value_parser = percent())]
        malformed: u8,
        /// Percent chained to an earlier intent (parent link).
        #[arg(long, default_value_t = 10, value_parser = percent())]
        chained: u8,
        /// Most intents per engine batch (1 to 65536).
        #[arg(long, default_value_t = 256, value_parser = RangedU64ValueParser::<usize>::new().range(1..=65_536))]
        max_batch: usize,
        /// Longest a batch waits to fill, µs (at most 1 s).
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
        linger_us: u64,
        /// Do not pin stages to cores (nothing is pinned below 4 cores anyway).
        #[arg(long)]
        no_pin: bool,
        /// Write the lineage logs, the engine public key and a sample
        /// intent and decision here, to check with `warrant lineage verify`
        /// and `warrant verify`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the engine on Kafka: read intents in a consumer group, write
    /// decisions and lineage, until SIGINT or SIGTERM (then decide and emit
    /// what was read, commit, and exit). Settings come from the file, then
    /// `WARRANT_<SECTION>_<KEY>` environment variables; every setting and
    /// its default is documented in `engine/cli/src/config.rs`.
    #[cfg(feature = "kafka")]
    Run {
        /// The configuration file.
        #[arg(long, default_value = "warrant.toml")]
        config: PathBuf,
        /// Check the configuration, key, trust store and policy, connect to
        /// the broker and check the topics, then exit (0: all good).
        #[arg(long)]
        check: bool,
        /// Seconds between status lines (0: none).
        #[arg(long, default_value_t = 10)]
        status_every: u64,
    },
    /// Publish an intent-signing key's state to the keys topic (`[trust]
    /// topic` of the configuration): every running engine applies it as
    /// soon as it reads it (rotation: publish the new key `active` and the
    /// old one `rotating`; revocation: `revoked`).
    #[cfg(feature = "kafka")]
    Keys {
        /// The configuration file (broker and `[trust] topic`).
        #[arg(long, default_value = "warrant.toml")]
        config: PathBuf,
        /// The key, 64 hex digits.
        #[arg(long)]
        public_key: String,
        /// The principal it signs for (not with --withdraw).
        #[arg(
            long,
            required_unless_present = "withdraw",
            conflicts_with = "withdraw"
        )]
        principal: Option<String>,
        /// `active`, `rotating` or `revoked` (not with --withdraw).
        #[arg(long, default_value = "active", conflicts_with = "withdraw")]
        status: String,
        /// Withdraw the topic's record for the key (a tombstone): the trust
        /// file's entry for it, if any, applies again.
        #[arg(long)]
        withdraw: bool,
    },
    /// Audit a deployment's topics: every intent decided, no intent with two
    /// verdicts, every authorization re-derived (trusted key, signature,
    /// validity, policy, unique nonce, decision signature), every
    /// partition's lineage verified and every decision in it. Prints the
    /// figures; exit 1 on any violation.
    #[cfg(feature = "kafka")]
    Audit {
        /// The configuration file (broker, topics, trust, policy, engine key).
        #[arg(long, default_value = "warrant.toml")]
        config: PathBuf,
        /// Another engine public key that signed (64 hex digits); the
        /// configured key and `engine.peer_keys` are always accepted.
        #[arg(long)]
        engine_key: Vec<String>,
        /// A policy in force before the configured one (file or directory;
        /// repeat for each): an authorization is judged by the policy whose
        /// hash it names, and one naming a policy not given is a violation.
        #[arg(long)]
        policy: Vec<PathBuf>,
        /// Seconds to read the topics in (at most one day).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign a mix of valid and forged intents, open them through the wire
    /// readers, batch-verify them and cross-check every verdict against
    /// single verification. Exits non-zero on any disagreement.
    Selftest {
        /// How many intents to generate (1 to 1,000,000).
        #[arg(long, default_value_t = 20_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..=SELFTEST_MAX_COUNT as u64))]
        count: usize,
        /// Percentage of intents whose signature is forged (0-100).
        #[arg(long, default_value_t = 10, value_parser = percent())]
        forged_percent: u8,
        /// Number of distinct signing principals (1 to 65536).
        #[arg(long, default_value_t = 64, value_parser = RangedU64ValueParser::<usize>::new().range(1..=65_536))]
        principals: usize,
    },
    /// Write a new ed25519 secret key (hex seed, file mode 0600) and print its
    /// public key and key id. Refuses to overwrite an existing file.
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the ed25519 arithmetic backend in use on this CPU.
    Backend,
    /// Verify a decision offline, as an executor must before running an
    /// intent: engine key, Merkle proof, batch signature, binding to the
    /// intent, verdict, validity window and audience. Exits 0 only if the
    /// decision authorizes the intent now; anything else prints why not and
    /// exits 1. It keeps no memory: single use (a decision run once, not
    /// twice) is the executor's to enforce, with the library's
    /// `seal::SingleUse` or its own store.
    Verify {
        /// The `Decision` bytes, as received.
        #[arg(long)]
        decision: PathBuf,
        /// The `SignedIntent` bytes the executor is about to run.
        #[arg(long, required_unless_present = "intent_digest")]
        intent: Option<PathBuf>,
        /// Instead of `--intent`: the intent's digest (64 hex digits,
        /// `warrant_schemas::intent_digest`: SHA-256 of
        /// "warrant.intent-digest.v1\0", the signed Intent bytes and the
        /// signature), for an executor that holds the digest only.
        #[arg(long, conflicts_with = "intent")]
        intent_digest: Option<String>,
        /// A trusted engine public key (64 hex digits); repeat during a key rotation.
        #[arg(long = "engine-key", required = true)]
        engine_keys: Vec<String>,
        /// This executor's audience name.
        #[arg(long)]
        audience: String,
        /// Check validity at this instant, µs since the Unix epoch (default: now).
        #[arg(long)]
        now_us: Option<u64>,
        /// How far this machine's clock may be behind the engine's, in
        /// milliseconds: a decision issued up to this long "in the future"
        /// is accepted. Only the start of the window moves; a decision is
        /// never accepted after it expires.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(..=3_600_000))]
        max_skew_ms: u64,
    },
    /// Check, test and explain policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Audit the lineage log.
    #[command(subcommand)]
    Lineage(LineageCommand),
}

#[derive(Subcommand)]
enum LineageCommand {
    /// Verify one partition's lineage log file end to end: sequence, hash
    /// chain, every checkpoint's signature and root, and that the last
    /// checkpoint covers every record. Reports the first bad record and
    /// exits 1, or prints what the log holds. A log cut back to one of its
    /// own checkpoints still verifies on its own: give `--min-records`
    /// (a size you saw signed before) to detect that.
    Verify {
        /// Log file: length-prefixed LineageRecord and Checkpoint frames.
        #[arg(long)]
        log: PathBuf,
        /// Partition the log belongs to.
        #[arg(long)]
        partition: u32,
        /// A trusted engine public key (64 hex digits); repeat during a key rotation.
        #[arg(long = "engine-key", required = true)]
        engine_keys: Vec<String>,
        /// Fewest records the log must hold (default 1: an empty log is
        /// refused). Pass the size of a checkpoint seen earlier to detect a
        /// log truncated back to an older checkpoint.
        #[arg(long, default_value_t = 1)]
        min_records: u64,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Compile a policy file or directory and report what the analysis
    /// finds: rules that never match, shadowed rules, allow/deny overlaps.
    /// Exits 1 if the policy does not compile (or, with --deny-warnings,
    /// if the analysis finds anything).
    Check {
        /// Policy file, or directory of *.toml files.
        path: PathBuf,
        /// Treat analysis findings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Run a cases file (requests with expected verdicts and rules).
    /// Exits 1 on any failed case.
    Test {
        /// Cases file (TOML; names its policy).
        cases: PathBuf,
    },
    /// Explain the verdict for one request: which rules each field
    /// selects, which rules match, and which one decides.
    Explain {
        /// Policy file or directory.
        path: PathBuf,
        /// Request file (TOML, the fields of a case's `request`).
        #[arg(long)]
        request: Option<PathBuf>,
        /// Set a request field, e.g. `--set principal=svc-a --set amount=250`
        /// (unknown keys are attributes). Repeatable; applied after --request.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

/// Most intents `warrant selftest` generates: it holds every one, signed,
/// opened and verified, in memory at once.
const SELFTEST_MAX_COUNT: usize = 1_000_000;

/// A percentage flag: 0 to 100.
fn percent() -> RangedI64ValueParser<u8> {
    clap::value_parser!(u8).range(0..=100)
}

/// A duration flag in seconds, fractions allowed: above zero.
fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if secs.is_nan() {
        return Err(format!("`{s}` is not a number of seconds"));
    }
    if secs <= 0.0 {
        return Err(format!("`{s}` must be above zero"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` seconds is out of range"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Selftest {
            count,
            forged_percent,
            principals,
        } => selftest(count, forged_percent, principals),
        Command::Keygen { out } => keygen(&out),
        #[cfg(feature = "kafka")]
        Command::Run {
            config,
            check,
            status_every,
        } => run::run(&config, check, Duration::from_secs(status_every)),
        #[cfg(feature = "kafka")]
        Command::Audit {
            config,
            engine_key,
            policy,
            timeout,
            json,
        } => run::audit(
            &config,
            &engine_key,
            &policy,
            Duration::from_secs(timeout),
            json,
        ),
        #[cfg(feature = "kafka")]
        Command::Keys {
            config,
            public_key,
            principal,
            status,
            withdraw,
        } => run::publish_key(&config, &public_key, principal, &status, withdraw),
        Command::Backend => {
            outln!("{}", backend::describe());
            Ok(())
        }
        Command::Policy(cmd) => policy_cli::run(cmd),
        Command::Demo {
            duration,
            rate,
            partitions,
            principals,
            forged,
            expired,
            replayed,
            denied,
            unknown_key,
            malformed,
            chained,
            max_batch,
            linger_us,
            no_pin,
            out,
        } => demo(demo::Options {
            duration,
            rate,
            partitions,
            principals,
            mix: demo::Mix {
                forged,
                expired,
                replayed,
                denied,
                unknown_key,
                malformed,
                chained,
            },
            out,
            engine: Config {
                max_batch,
                linger: Duration::from_micros(linger_us),
                layout: if no_pin {
                    Layout::unpinned(rayon::current_num_threads())
                } else {
                    Layout::auto()
                },
                ..Config::default()
            },
        }),
        Command::Lineage(LineageCommand::Verify {
            log,
            partition,
            engine_keys,
            min_records,
        }) => lineage_verify(&log, partition, &engine_keys, min_records),
        Command::Verify {
            decision,
            intent,
            intent_digest,
            engine_keys,
            audience,
            now_us,
            max_skew_ms,
        } => verify_cmd(
            &decision,
            intent.as_deref(),
            intent_digest.as_deref(),
            &engine_keys,
            &audience,
            (now_us, max_skew_ms),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_engine_key(k: &str) -> Result<[u8; 32], String> {
    hex::decode(k.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("engine key `{k}` is not 64 hex digits"))
}

fn lineage_verify(
    log: &std::path::Path,
    partition: u32,
    engine_keys: &[String],
    min_records: u64,
) -> Result<(), String> {
    // A device or a pipe (`/dev/zero`) could be read forever: only a
    // regular file is a log.
    let meta =
        std::fs::metadata(log).map_err(|e| format!("cannot read `{}`: {e}", log.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "cannot read `{}`: not a regular file",
            log.display()
        ));
    }
    let data = std::fs::read(log).map_err(|e| format!("cannot read `{}`: {e}", log.display()))?;
    let keys = engine_keys
        .iter()
        .map(|k| parse_engine_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    match warrant_engine::lineage::file::verify(partition, &data, &keys) {
        Ok(r) if r.records < min_records => Err(format!(
            "lineage verification failed: the log holds {} records, fewer than the {min_records} \
             expected (truncated back to a checkpoint, or the wrong file)",
            r.records
        )),
        Ok(r) => {
            outln!(
                "lineage ok: partition {partition}, {} records ({} authorized, {} chained to a parent), {} checkpoints",
                r.records,
                r.authorized,
                r.chained,
                r.checkpoints
            );
            Ok(())
        }
        Err(e) => Err(format!("lineage verification failed: {e}")),
    }
}

fn verify_cmd(
    decision: &std::path::Path,
    intent: Option<&std::path::Path>,
    intent_digest: Option<&str>,
    engine_keys: &[String],
    audience: &str,
    (now_us, max_skew_ms): (Option<u64>, u64),
) -> Result<(), String> {
    use warrant_engine::seal::{EngineKeys, verify_decision_with_skew};
    // Both are single FlatBuffers: read at most one byte past the largest
    // buffer accepted, so a wrong path (a log, /dev/zero) is refused
    // without being loaded.
    let limit = warrant_schemas::Limits::default().max_buffer_bytes;
    let read = |p: &std::path::Path| -> Result<Vec<u8>, String> {
        use std::io::Read;
        let mut buf = Vec::new();
        std::fs::File::open(p)
            .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut buf))
            .map_err(|e| format!("cannot read `{}`: {e}", p.display()))?;
        if buf.len() > limit {
            return Err(format!(
                "`{}` is larger than {limit} bytes: not a single decision or intent",
                p.display()
            ));
        }
        Ok(buf)
    };
    let decision_bytes = read(decision)?;
    // What the intent claims, for the executor to hold against itself:
    // the decision binds these bytes, not the executor's environment.
    let mut claims = None;
    let digest: [u8; 32] = match (intent, intent_digest) {
        (Some(path), _) => {
            let bytes = read(path)?;
            // Only a whole SignedIntent can be what a decision is bound to:
            // say so, rather than "bound to a different intent".
            let opened =
                warrant_schemas::open_signed_intent(&bytes, &warrant_schemas::Limits::default())
                    .map_err(|e| format!("`{}` is not a SignedIntent: {e}", path.display()))?;
            let i = opened.intent;
            claims = Some(format!(
                "  the intent: principal `{}`, action `{}`, resource `{}`, environment `{}`, \
                 region `{}`; run it only if these are this executor's",
                printable(i.principal()),
                printable(i.action()),
                printable(i.resource()),
                printable(i.environment()),
                printable(i.region())
            ));
            opened.digest()
        }
        (None, Some(hex_digest)) => hex::decode(hex_digest.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("intent digest `{hex_digest}` is not 64 hex digits"))?,
        (None, None) => return Err("give --intent or --intent-digest".into()),
    };
    let mut keys = EngineKeys::new();
    for k in engine_keys {
        let bytes = parse_engine_key(k)?;
        keys.add(&bytes)
            .map_err(|e| format!("engine key `{k}`: {e}"))?;
    }
    let now = match now_us {
        Some(n) => n,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| format!("system clock is before 1970: {e}"))?
            .as_micros()
            .try_into()
            .unwrap_or(u64::MAX),
    };
    let skew_us = max_skew_ms.saturating_mul(1_000);
    match verify_decision_with_skew(&decision_bytes, &keys, &digest, audience, now, skew_us) {
        Ok(auth) => {
            outln!(
                "AUTHORIZED: intent {} by rule `{}` (policy version {}), valid until {} µs",
                hex::encode(auth.intent_id),
                printable(&auth.rule_id),
                auth.policy_version,
                auth.valid_until_us
            );
            if let Some(claims) = claims {
                outln!("{claims}");
            }
            Ok(())
        }
        Err(e) => {
            outln!("DO NOT EXECUTE: {}", printable(&e.to_string()));
            Err("the decision does not authorize this intent".into())
        }
    }
}

/// `s` with control, bidirectional-formatting and line-separator characters escaped
/// (`\n`, `\u{1b}`, `\u{202e}`): the strings an intent carries are the
/// producer's, and must not be able to forge or hide a line of the
/// verdict an operator reads.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{061c}' | '\u{0085}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn keygen(out: &std::path::Path) -> Result<(), String> {
    let key = warrant_engine::seal::EngineKey::generate(out).map_err(|e| e.to_string())?;
    outln!("public key: {}", hex::encode(key.public_key()));
    outln!("key id:     {}", hex::encode(key.id()));
    Ok(())
}

/// `n` and `word`, with an `s` unless `n` is 1.
fn plural(n: impl Into<u64>, word: &str) -> String {
    match n.into() {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}

fn demo(opts: demo::Options) -> Result<(), String> {
    // Every setting checked before anything is printed or run.
    opts.check()?;
    outln!("{}", backend::describe());
    outln!(
        "warrant demo: {:.1} s at {} intents/s over {}, {}, example policy `payments`",
        opts.duration.as_secs_f64(),
        opts.rate,
        plural(opts.partitions, "partition"),
        plural(opts.principals as u64, "principal")
    );
    let layout = &opts.engine.layout;
    let cores = if layout.verify_cores.is_empty() {
        "not pinned".to_owned()
    } else {
        format!(
            "pinned to cores {}",
            layout
                .verify_cores
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    outln!(
        "engine: batches of up to {} or {} µs; {}, {cores}",
        opts.engine.max_batch,
        opts.engine.linger.as_micros(),
        plural(layout.verify_threads as u64, "verify thread"),
    );
    let report = demo::run(&opts, |line| outln!("{line}"))?;
    outln!("{report}");
    if let Some(dir) = &opts.out {
        let key = hex::encode(report.engine_public_key);
        outln!("check it yourself:");
        if let Some(p) = report.lineage_partition_ids.first() {
            outln!(
                "  warrant lineage verify --log {} --partition {p} --engine-key {key}",
                dir.join(format!("lineage-{p}.log")).display()
            );
        }
        if let Some((issued_at_us, valid_until_us)) = report.sample_window_us {
            outln!(
                "  warrant verify --decision {} --intent {} --engine-key {key} --audience executor --now-us {issued_at_us}",
                dir.join("decision.bin").display(),
                dir.join("intent.bin").display()
            );
            outln!(
                "  (--now-us checks it as of its issue time: it authorizes the intent for {:.0} s \
                 only, until {valid_until_us} µs since the epoch, and a later check refuses it as expired)",
                valid_until_us.saturating_sub(issued_at_us) as f64 / 1e6
            );
        }
    }
    Ok(())
}

fn selftest(count: usize, forged_percent: u8, principals: usize) -> Result<(), String> {
    // The flags' ranges, as clap checked them: nothing is clamped.
    if !(1..=SELFTEST_MAX_COUNT).contains(&count) || principals == 0 || forged_percent > 100 {
        return Err(format!(
            "--count must be 1 to {SELFTEST_MAX_COUNT}, --principals at least 1, \
             --forged-percent 0 to 100"
        ));
    }
    outln!("{}", backend::describe());
    let signers: Vec<(String, IntentSigner)> = (0..principals)
        .map(|i| {
            let mut seed = [0u8; 32];
            for (dst, src) in seed.iter_mut().zip((i as u64).to_le_bytes()) {
                *dst = src;
            }
            (format!("svc-{i:04}"), IntentSigner::from_seed(seed))
        })
        .collect();
    let keys: HashMap<[u8; 16], PublicKey> = signers
        .iter()
        .map(|(_, s)| (s.key_id(), PublicKey::from_bytes(s.public_key())))
        .collect();

    let started = Instant::now();
    let mut buffers = Vec::with_capacity(count);
    let mut forged = Vec::with_capacity(count);
    for i in 0..count {
        let (principal, signer) = signers.get(i % principals).ok_or("no signer")?;
        let id = u128::try_from(i).unwrap_or(u128::MAX).to_le_bytes();
        let fields = IntentFields {
            id,
            nonce: id,
            principal,
            key_id: signer.key_id(),
            ..IntentFields::example()
        };
        let intent = encode_intent(&fields);
        let mut signature = signer.sign(&intent);
        // A deterministic spread of forgeries: flip one bit of S.
        let is_forged = (i * 7919) % 100 < usize::from(forged_percent);
        if is_forged && let Some(byte) = signature.get_mut(40) {
            *byte ^= 0x01;
        }
        let buf = encode_signed_intent(&intent, &signature);
        buffers.push(buf);
        forged.push(is_forged);
    }
    outln!(
        "signed {count} intents by {principals} principals in {:.2?}",
        started.elapsed()
    );

    let limits = Limits::default();
    let opened: Vec<_> = buffers
        .iter()
        .map(|b| open_signed_intent(b, &limits))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("a generated intent failed to open: {e}"))?;
    let mut items = Vec::with_capacity(count);
    for o in &opened {
        let key = keys
            .get(&o.intent.key_id().0)
            .ok_or("a generated intent names an unknown key")?;
        items.push(SigItem {
            key,
            prefix: INTENT_SIGNING_DOMAIN,
            message: o.intent_bytes,
            signature: o.signature,
        });
    }

    let started = Instant::now();
    let verdicts = verify_all(&items);
    let batch_time = started.elapsed();
    let started = Instant::now();
    let singles: Vec<_> = items.iter().map(verify_one).collect();
    let single_time = started.elapsed();

    let accepted = verdicts.iter().filter(|v| v.is_ok()).count();
    let disagreements = verdicts
        .iter()
        .zip(&singles)
        .filter(|(a, b)| a != b)
        .count();
    let forged_accepted = verdicts
        .iter()
        .zip(&forged)
        .filter(|(v, f)| **f && v.is_ok())
        .count();
    let valid_rejected = verdicts
        .iter()
        .zip(&forged)
        .filter(|(v, f)| !**f && v.is_err())
        .count();
    let per_sig = |d: std::time::Duration| d.as_secs_f64() * 1e6 / count.max(1) as f64;
    outln!(
        "batch verify (all cores): {:.2} µs/signature wall, {:.0} signatures/s",
        per_sig(batch_time),
        count as f64 / batch_time.as_secs_f64()
    );
    outln!(
        "single verify (one core):  {:.2} µs/signature, {:.0} signatures/s",
        per_sig(single_time),
        count as f64 / single_time.as_secs_f64()
    );
    outln!(
        "accepted {accepted}, rejected {} (forged {}); forged accepted: {forged_accepted}, \
         valid rejected: {valid_rejected}, batch/single disagreements: {disagreements}",
        count - accepted,
        forged.iter().filter(|f| **f).count()
    );
    if disagreements + forged_accepted + valid_rejected > 0 {
        return Err("selftest failed".into());
    }
    outln!("selftest passed");
    Ok(())
}
