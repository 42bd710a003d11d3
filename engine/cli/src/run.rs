//! `warrant run`: the engine on Kafka, until SIGINT or SIGTERM.
//!
//! Logs go through `tracing` to stdout, as text or JSON lines
//! (`[admin] log_format`); the admin port serves `/metrics`, `/healthz` and
//! `/readyz` (see `admin.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};
use warrant_cli::config::{Config, warrant_env};
use warrant_cli::outln;
use warrant_connectors::kafka::{self, KafkaSink, KafkaSource, KeyChange, KeyTopic};
use warrant_engine::pipeline::{Engine, StatsSnapshot};
use warrant_engine::seal::EngineKey;
use warrant_engine::trust::{LiveTrust, TrustStore};
use warrant_policy::{Fingerprint, Policy, PolicyStore};
use warrant_schemas::wire::Reason;

use warrant_cli::admin::{self, Admin};

/// What `run` needs before it touches the broker, each part loaded and
/// checked.
struct Loaded {
    config: Config,
    key: EngineKey,
    trust: TrustStore,
    /// The trust file's bytes `trust` was parsed from.
    trust_bytes: Vec<u8>,
    policy: Policy,
    /// The policy path's content before `policy` was read from it.
    policy_read: Fingerprint,
}

/// Sets up logging from the configuration; `WARRANT_LOG` overrides the
/// level.
fn init_logs(config: &Config) -> Result<(), String> {
    let filter = std::env::var("WARRANT_LOG").unwrap_or_else(|_| config.admin.log_level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| format!("log level `{filter}`: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    let done = if config.admin.log_format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
    done.map_err(|e| format!("cannot set up logging: {e}"))
}

fn load(path: &Path) -> Result<Loaded, String> {
    let config =
        Config::load(path, warrant_env().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    init_logs(&config)?;
    info!("config  {}: ok", path.display());
    let key = EngineKey::load(Path::new(&config.engine.key_file)).map_err(|e| e.to_string())?;
    info!(
        "key     {}: engine key id {}, public key {}",
        config.engine.key_file,
        hex::encode(key.id()),
        hex::encode(key.public_key())
    );
    let trust_bytes = std::fs::read(&config.trust.file)
        .map_err(|e| format!("cannot read trust store `{}`: {e}", config.trust.file))?;
    // Strictly UTF-8, as every later reload reads it: a file accepted here
    // and refused there would refuse every live edit, revocations too.
    let trust_text = std::str::from_utf8(&trust_bytes).map_err(|e| {
        format!(
            "trust store `{}` is not UTF-8 text ({e})",
            config.trust.file
        )
    })?;
    let trust = TrustStore::parse(trust_text, &config.trust.file).map_err(|e| e.to_string())?;
    info!("trust   {}: {} keys", config.trust.file, trust.len());
    // Taken before reading: an edit made from here until the watcher
    // starts is then loaded by it, not missed.
    let policy_read = Fingerprint::of(Path::new(&config.policy.path));
    let policy = Policy::load(Path::new(&config.policy.path)).map_err(|e| e.to_string())?;
    info!(
        "policy  {}: {} v{}, {} rules, hash {}",
        config.policy.path,
        policy.name().unwrap_or("(unnamed)"),
        policy.version(),
        policy.rules().len(),
        hex::encode(&policy.hash()[..8])
    );
    Ok(Loaded {
        config,
        key,
        trust,
        trust_bytes,
        policy,
        policy_read,
    })
}

/// `d` from now, or `None` past the clock's range (never): `Instant +
/// Duration` panics there.
fn after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// Probes the broker every `every` until `stop`; the result goes to `ok`.
fn probe_broker(
    config: warrant_connectors::kafka::KafkaConfig,
    ok: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    every: Duration,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("broker-probe".into())
        .spawn(move || {
            let mut next = Some(Instant::now());
            // One client for the engine's life (made again only if making
            // it failed): a client per check reconnected every `every`.
            let mut client: Option<kafka::TopicsProbe> = None;
            while !stop.load(Ordering::Relaxed) {
                if next.is_some_and(|t| Instant::now() >= t) {
                    if client.is_none() {
                        client = kafka::TopicsProbe::new(&config).ok();
                    }
                    let reachable = client
                        .as_ref()
                        .is_some_and(|c| c.check(Duration::from_secs(3)).is_ok());
                    if ok.swap(reachable, Ordering::Relaxed) != reachable {
                        if reachable {
                            info!("broker {}: reachable again", config.brokers);
                        } else {
                            warn!("broker {}: unreachable", config.brokers);
                        }
                    }
                    next = after(every);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .map_err(|e| format!("cannot start the broker probe: {e}"))
}

/// `warrant audit`: reads the deployment's three topics and audits them
/// (`warrant_engine::audit`); Ok(()) only with no violation.
pub fn audit(
    path: &Path,
    extra_keys: &[String],
    earlier_policies: &[PathBuf],
    timeout: Duration,
    json: bool,
) -> Result<(), String> {
    use warrant_engine::audit::{Ground, audit};
    let config =
        Config::load(path, warrant_env().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let kafka_config = config.kafka_config();
    let mut engine_keys = config.peer_keys()?;
    engine_keys.push(
        EngineKey::load(Path::new(&config.engine.key_file))
            .map_err(|e| e.to_string())?
            .public_key(),
    );
    for k in extra_keys {
        let mut b = [0u8; 32];
        hex::decode_to_slice(k.trim(), &mut b)
            .map_err(|_| format!("--engine-key `{k}` is not 64 hex digits"))?;
        engine_keys.push(b);
    }
    let live =
        LiveTrust::new(TrustStore::load(Path::new(&config.trust.file)).map_err(|e| e.to_string())?);
    if !config.trust.topic.is_empty() {
        let mut t = KeyTopic::open(&kafka_config, &config.trust.topic)
            .map_err(|e| format!("keys topic: {e}"))?;
        t.catch_up(timeout, |c| apply_key(&live, c))
            .map_err(|e| format!("keys topic: {e}"))?;
    }
    let policy = Policy::load(Path::new(&config.policy.path)).map_err(|e| e.to_string())?;
    let earlier_policies = earlier_policies
        .iter()
        .map(|p| Policy::load(p).map_err(|e| format!("--policy {}: {e}", p.display())))
        .collect::<Result<Vec<Policy>, String>>()?;
    let read = |topic: &str| {
        kafka::read_all(&kafka_config, topic, timeout)
            .map_err(|e| format!("broker {}: {e}", kafka_config.brokers))
    };
    let intents = read(&config.kafka.intents_topic)?;
    let decisions: Vec<Vec<u8>> = read(&config.kafka.decisions_topic)?
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    let lineage = read(&config.kafka.lineage_topic)?;
    let trust = live.target().load_full();
    let report = audit(
        &intents,
        &decisions,
        &lineage,
        &Ground {
            trust: &trust,
            policy: &policy,
            earlier_policies: &earlier_policies,
            max_validity_us: config.engine.max_validity_s.saturating_mul(1_000_000),
            engine_keys: &engine_keys,
            audience: &config.engine.audience,
            max_clock_skew_us: config.engine.max_clock_skew_s.saturating_mul(1_000_000),
            max_intent_age_us: config.engine.max_intent_age_s.saturating_mul(1_000_000),
        },
    );
    if json {
        // With the count the exit status is judged by, so that scripts
        // need not re-add the kinds of violation (and drift from it).
        let mut value = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        if let Some(o) = value.as_object_mut() {
            o.insert("violation_count".into(), report.violation_count().into());
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
        );
    } else {
        outln!(
            "audit of {} -> {} + {} on {}",
            config.kafka.intents_topic,
            config.kafka.decisions_topic,
            config.kafka.lineage_topic,
            kafka_config.brokers
        );
        outln!("{report}");
    }
    match report.violation_count() {
        0 => Ok(()),
        n => Err(format!("{n} violations")),
    }
}

/// `warrant keys`: publishes a key record (or a tombstone) to the keys
/// topic and waits for the broker's acknowledgement.
pub fn publish_key(
    path: &Path,
    public_key: &str,
    principal: Option<String>,
    status: &str,
    withdraw: bool,
) -> Result<(), String> {
    use warrant_engine::trust::{KeyRecord, KeyState, TrustError};
    // The flags first: their errors name them, whatever the configuration.
    let state = match status {
        "active" => KeyState::Active,
        "rotating" => KeyState::Rotating,
        "revoked" => KeyState::Revoked,
        other => {
            return Err(format!(
                "--status must be active, rotating or revoked, not `{other}`"
            ));
        }
    };
    let key: [u8; 32] = hex::decode(public_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("--public-key `{public_key}` is not 64 hex digits"))?;
    let record = KeyRecord {
        principal: principal.unwrap_or_default(),
        public_key: public_key.trim().to_owned(),
        status: state,
    };
    if !withdraw {
        // The checks every engine will make, made here first.
        let mut probe = TrustStore::new();
        probe
            .add(&record.principal, key, state)
            .map_err(|e| match e {
                TrustError::BadKey { message, .. } => format!(
                    "--public-key `{public_key}` for --principal `{}`: {message}",
                    record.principal
                ),
                other => other.to_string(),
            })?;
    }
    let config =
        Config::load(path, warrant_env().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    if config.trust.topic.is_empty() {
        return Err(format!(
            "{}: `[trust] topic` is not set: there is no keys topic to publish to",
            path.display()
        ));
    }
    let kafka_config = config.kafka_config();
    kafka::publish_key(
        &kafka_config,
        &config.trust.topic,
        &key,
        (!withdraw).then_some(&record),
    )
    .map_err(|e| format!("broker {}: {e}", kafka_config.brokers))?;
    if withdraw {
        outln!(
            "withdrawn: key {public_key} (keys topic {})",
            config.trust.topic
        );
    } else {
        outln!(
            "published: key {public_key} {} for {} (keys topic {})",
            state.name(),
            record.principal,
            config.trust.topic
        );
    }
    Ok(())
}

/// Applies one keys-topic change to the live store, logging it.
fn apply_key(live: &LiveTrust, change: KeyChange) {
    match change {
        KeyChange::Record(key, record) => {
            let what = match &record {
                Some(r) => format!("{} for {}", r.status.name(), r.principal),
                None => "withdrawn".into(),
            };
            match live.apply(key, record) {
                Ok(n) => info!(
                    "trust: key {} {what} (keys topic; {n} keys)",
                    hex::encode(key)
                ),
                Err(e) => error!(
                    "trust: key {} refused: {e}; the key signs nothing (revoked if the \
                     trust file lists it, else unknown) until a valid record or a tombstone for it",
                    hex::encode(key)
                ),
            }
        }
        KeyChange::Invalid(Some(key), e) => {
            let n = live.distrust(key);
            error!(
                "trust: keys topic: {e}; the key signs nothing (revoked if the trust file \
                 lists it, else unknown) until a valid record or a tombstone for it ({n} keys)"
            );
        }
        KeyChange::Invalid(None, e) => error!("trust: keys topic: {e}"),
    }
}

/// Follows the trust file and the keys topic until `stop`.
fn follow_trust(
    live: Arc<LiveTrust>,
    file: PathBuf,
    loaded: Option<Vec<u8>>,
    watch: Duration,
    topic: Option<KeyTopic>,
    stop: Arc<AtomicBool>,
    health: Arc<admin::TrustHealth>,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("trust-follow".into())
        .spawn(move || {
            let read = |p: &Path| std::fs::read(p).ok();
            // The bytes the running store was built from: a change made
            // since, even before this thread started, is seen.
            let mut seen = loaded;
            let mut next_look = after(watch);
            while !stop.load(Ordering::Relaxed) {
                match &topic {
                    Some(t) => match t.poll(Duration::from_millis(100)) {
                        Ok(change) => {
                            health.topic(None);
                            if let Some(change) = change {
                                apply_key(&live, change);
                            }
                        }
                        Err(e) => {
                            warn!("trust: keys topic: {e}");
                            health.topic(Some(format!("keys topic: {e}")));
                        }
                    },
                    None => std::thread::sleep(Duration::from_millis(100)),
                }
                if watch.is_zero() || next_look.is_none_or(|t| Instant::now() < t) {
                    continue;
                }
                next_look = after(watch);
                let now = read(&file);
                if now == seen {
                    continue;
                }
                // Parse the very bytes compared (a second read could see
                // another state and, failing, never be retried).
                let loaded = match &now {
                    Some(bytes) => std::str::from_utf8(bytes)
                        .map_err(|e| format!("{}: not UTF-8 text: {e}", file.display()))
                        .and_then(|text| {
                            TrustStore::parse(text, &file.display().to_string())
                                .map_err(|e| e.to_string())
                        }),
                    None => TrustStore::load(&file).map_err(|e| e.to_string()),
                };
                seen = now;
                match loaded {
                    Ok(store) => match live.set_file(store) {
                        Ok(n) => {
                            health.file(None);
                            info!("trust: {} reloaded ({n} keys in force)", file.display());
                        }
                        Err(e) => {
                            error!("trust: {} refused: {e}", file.display());
                            health.file(Some(format!("{} refused: {e}", file.display())));
                        }
                    },
                    Err(e) => {
                        error!("trust: {e}; the running trust store stays");
                        health.file(Some(e));
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the trust follower: {e}"))
}

/// `warrant run --config PATH [--check]`.
pub fn run(path: &Path, check: bool, status_every: Duration) -> Result<(), String> {
    let Loaded {
        config,
        key,
        trust,
        trust_bytes,
        policy,
        policy_read,
    } = load(path)?;
    let trust_bytes = Some(trust_bytes);
    let kafka_config = config.kafka_config();
    let report = kafka::check(&kafka_config, Duration::from_secs(10))
        .map_err(|e| format!("broker {}: {e}", kafka_config.brokers))?;
    for (topic, partitions) in &report.topics {
        info!(
            "kafka   {}: topic {topic}, {partitions} partitions",
            kafka_config.brokers
        );
    }
    // The keys topic is read to its end before anything is decided: no
    // intent may be judged by a key table missing a revocation.
    let live = Arc::new(LiveTrust::new(trust));
    let key_topic = if config.trust.topic.is_empty() {
        None
    } else {
        let mut t = KeyTopic::open(&kafka_config, &config.trust.topic)
            .map_err(|e| format!("keys topic: {e}"))?;
        let n = t
            .catch_up(Duration::from_secs(30), |c| apply_key(&live, c))
            .map_err(|e| format!("keys topic: {e}"))?;
        info!(
            "trust   {}: {n} records read, {} keys in force",
            config.trust.topic,
            live.target().load().len()
        );
        Some(t)
    };
    if check {
        info!("check: ok");
        return Ok(());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot handle signals: {e}"))?;

    let source = KafkaSource::new(&kafka_config).map_err(|e| e.to_string())?;
    let partitions = source.partitions();
    let lag = source.lag();
    source.on_rebalance(|what, partitions| info!("{what} partitions {partitions:?}"));
    let sink = KafkaSink::new(
        &kafka_config,
        Duration::from_millis(config.kafka.sink_timeout_ms),
    )
    .map_err(|e| e.to_string())?;
    let store = Arc::new(PolicyStore::new());
    store.install(policy);
    let engine_config = config.engine_config(partitions);
    let depth = engine_config.queue_batches.max(1);
    let emit_depth = match engine_config.emit_queue_batches {
        0 => depth,
        n => n,
    };
    // The admin port is bound before the engine starts: a port in use is
    // an error with nothing running yet.
    let listener = match config.admin.listen.trim() {
        "" => None,
        listen => Some(admin::bind(listen)?),
    };
    let engine = Engine::start(
        engine_config,
        source,
        sink,
        key,
        live.target(),
        store.clone(),
    )
    .map_err(|e| e.to_string())?;
    info!(
        "running: group {}, {} -> {} + {}",
        config.kafka.group_id,
        config.kafka.intents_topic,
        config.kafka.decisions_topic,
        config.kafka.lineage_topic
    );

    let _watcher = (config.policy.watch_ms > 0).then(|| {
        let policy_path = PathBuf::from(&config.policy.path);
        store.watch_since(
            policy_path,
            Duration::from_millis(config.policy.watch_ms),
            policy_read,
            |result| match result {
                Ok(p) => info!(
                    "policy reloaded: {} v{}, {} rules, hash {}",
                    p.name().unwrap_or("(unnamed)"),
                    p.version(),
                    p.rules().len(),
                    hex::encode(&p.hash()[..8])
                ),
                Err(e) => error!("policy: {e}"),
            },
        )
    });
    let broker_reachable = Arc::new(AtomicBool::new(true));
    let probe_stop = Arc::new(AtomicBool::new(false));
    // From here on, a failure must stop the running engine cleanly (drain,
    // commit, leave the group), not leave it behind.
    let fail = |engine: Engine, probe_stop: &AtomicBool, e: String| -> Result<(), String> {
        probe_stop.store(true, Ordering::Relaxed);
        let _ = engine.shutdown();
        Err(e)
    };
    let trust_health = Arc::new(admin::TrustHealth::default());
    let trust_follower = match follow_trust(
        live.clone(),
        PathBuf::from(&config.trust.file),
        trust_bytes,
        Duration::from_millis(config.trust.watch_ms),
        key_topic,
        probe_stop.clone(),
        trust_health.clone(),
    ) {
        Ok(t) => t,
        Err(e) => return fail(engine, &probe_stop, e),
    };
    let prober = match probe_broker(
        kafka_config.clone(),
        broker_reachable.clone(),
        probe_stop.clone(),
        Duration::from_secs(2),
    ) {
        Ok(p) => p,
        Err(e) => return fail(engine, &probe_stop, e),
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let admin = Arc::new(Admin {
        probe: engine.probe(),
        policy: store.clone(),
        broker_reachable,
        stopping: stopping.clone(),
        lag: Some(Box::new(move || lag.get())),
        queue_capacity: [depth, depth, depth, depth, depth, emit_depth],
        started: SystemTime::now(),
        trust: trust_health,
    });
    let _server = match listener.map(|l| admin::serve_on(l, admin.clone())) {
        None => None,
        Some(Ok(server)) => {
            info!(
                "admin: listening on {} (/metrics /healthz /readyz)",
                server.addr
            );
            Some(server)
        }
        Some(Err(e)) => return fail(engine, &probe_stop, e),
    };

    let started = Instant::now();
    let mut last_status = Instant::now();
    let mut was_ready: Option<bool> = None;
    while !stop.load(Ordering::SeqCst) && engine.failure().is_none() {
        std::thread::sleep(Duration::from_millis(50));
        let why = admin.not_ready();
        if was_ready != Some(why.is_empty()) {
            was_ready = Some(why.is_empty());
            if why.is_empty() {
                info!("ready");
            } else {
                warn!("not ready: {}", why.join("; "));
            }
        }
        if !status_every.is_zero() && last_status.elapsed() >= status_every {
            last_status = Instant::now();
            status(&engine.stats(), started.elapsed());
        }
    }
    stopping.store(true, Ordering::SeqCst);
    if stop.load(Ordering::SeqCst) {
        info!("stopping: deciding and emitting what was read");
    }
    let result = engine.shutdown();
    probe_stop.store(true, Ordering::Relaxed);
    let _ = prober.join();
    let _ = trust_follower.join();
    let stats = result.map_err(|e| e.to_string())?;
    status(&stats, started.elapsed());
    info!("stopped");
    Ok(())
}

fn status(s: &StatsSnapshot, up: Duration) {
    let authorized = s.count(Reason::Authorized);
    info!(
        "status: up {:.0}s, intents {}, decisions {} (authorized {}, denied {}), \
         engine latency since start p50 {} µs p99 {} µs",
        up.as_secs_f64(),
        s.intents_in,
        s.decisions(),
        authorized,
        s.decisions() - authorized,
        s.latency_us.value_at_quantile(0.5),
        s.latency_us.value_at_quantile(0.99),
    );
}
