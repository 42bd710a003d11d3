//! `warrant run`: the engine on Kafka, until SIGINT or SIGTERM.
//!
//! Logs go through `tracing` to stdout, as text or JSON lines
//! (`[admin] log_format`); the admin port serves `/metrics`, `/healthz` and
//! `/readyz` (see `admin.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tracing::{error, info, warn};
use warrant_cli::config::Config;
use warrant_connectors::kafka::{self, KafkaSink, KafkaSource};
use warrant_engine::pipeline::{Engine, StatsSnapshot};
use warrant_engine::seal::EngineKey;
use warrant_engine::trust::TrustStore;
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::wire::Reason;

use warrant_cli::admin::{self, Admin};

/// What `run` needs before it touches the broker, each part loaded and
/// checked.
struct Loaded {
    config: Config,
    key: EngineKey,
    trust: TrustStore,
    policy: Policy,
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
    let config = Config::load(path, std::env::vars()).map_err(|e| e.to_string())?;
    init_logs(&config)?;
    info!("config  {}: ok", path.display());
    let key = EngineKey::load(Path::new(&config.engine.key_file)).map_err(|e| e.to_string())?;
    info!(
        "key     {}: engine key id {}, public key {}",
        config.engine.key_file,
        hex::encode(key.id()),
        hex::encode(key.public_key())
    );
    let trust = TrustStore::load(Path::new(&config.trust.file)).map_err(|e| e.to_string())?;
    info!("trust   {}: {} keys", config.trust.file, trust.len());
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
        policy,
    })
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
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    let reachable = kafka::check(&config, Duration::from_secs(3)).is_ok();
                    if ok.swap(reachable, Ordering::Relaxed) != reachable {
                        if reachable {
                            info!("broker {}: reachable again", config.brokers);
                        } else {
                            warn!("broker {}: unreachable", config.brokers);
                        }
                    }
                    next = Instant::now() + every;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .map_err(|e| format!("cannot start the broker probe: {e}"))
}

/// `warrant run --config PATH [--check]`.
pub fn run(path: &Path, check: bool, status_every: Duration) -> Result<(), String> {
    let Loaded {
        config,
        key,
        trust,
        policy,
    } = load(path)?;
    let kafka_config = config.kafka_config();
    let report = kafka::check(&kafka_config, Duration::from_secs(10))
        .map_err(|e| format!("broker {}: {e}", kafka_config.brokers))?;
    for (topic, partitions) in &report.topics {
        info!(
            "kafka   {}: topic {topic}, {partitions} partitions",
            kafka_config.brokers
        );
    }
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
    let engine = Engine::start(
        engine_config,
        source,
        sink,
        key,
        Arc::new(ArcSwap::from_pointee(trust)),
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
        store.watch(
            policy_path,
            Duration::from_millis(config.policy.watch_ms),
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
    let prober = probe_broker(
        kafka_config.clone(),
        broker_reachable.clone(),
        probe_stop.clone(),
        Duration::from_secs(2),
    )?;
    let stopping = Arc::new(AtomicBool::new(false));
    let admin = Arc::new(Admin {
        probe: engine.probe(),
        policy: store.clone(),
        broker_reachable,
        stopping: stopping.clone(),
        lag: Some(Box::new(move || lag.get())),
        queue_capacity: [depth, depth, depth, depth, depth, emit_depth],
        started: SystemTime::now(),
    });
    let _server = if config.admin.listen.trim().is_empty() {
        None
    } else {
        let server = admin::serve(config.admin.listen.trim(), admin.clone())?;
        info!(
            "admin: listening on {} (/metrics /healthz /readyz)",
            server.addr
        );
        Some(server)
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
    let stats = result.map_err(|e| e.to_string())?;
    status(&stats, started.elapsed());
    info!("stopped");
    Ok(())
}

fn status(s: &StatsSnapshot, up: Duration) {
    let authorized = s.count(Reason::Authorized);
    info!(
        "status: up {:.0}s, intents {}, decisions {} (authorized {}, denied {}), \
         engine latency p50 {} µs p99 {} µs",
        up.as_secs_f64(),
        s.intents_in,
        s.decisions(),
        authorized,
        s.decisions() - authorized,
        s.latency_us.value_at_quantile(0.5),
        s.latency_us.value_at_quantile(0.99),
    );
}
