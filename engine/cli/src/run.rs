//! `warrant run`: the engine on Kafka, until SIGINT or SIGTERM.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use warrant_cli::config::Config;
use warrant_connectors::kafka::{self, KafkaSink, KafkaSource};
use warrant_engine::pipeline::{Engine, StatsSnapshot};
use warrant_engine::seal::EngineKey;
use warrant_engine::trust::TrustStore;
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::wire::Reason;

/// What `run` needs before it touches the broker, each part loaded and
/// checked.
struct Loaded {
    config: Config,
    key: EngineKey,
    trust: TrustStore,
    policy: Policy,
}

fn load(path: &Path) -> Result<Loaded, String> {
    let config = Config::load(path, std::env::vars()).map_err(|e| e.to_string())?;
    println!("config  {}: ok", path.display());
    let key = EngineKey::load(Path::new(&config.engine.key_file)).map_err(|e| e.to_string())?;
    println!(
        "key     {}: engine key id {}, public key {}",
        config.engine.key_file,
        hex::encode(key.id()),
        hex::encode(key.public_key())
    );
    let trust = TrustStore::load(Path::new(&config.trust.file)).map_err(|e| e.to_string())?;
    println!("trust   {}: {} keys", config.trust.file, trust.len());
    let policy = Policy::load(Path::new(&config.policy.path)).map_err(|e| e.to_string())?;
    println!(
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
        println!(
            "kafka   {}: topic {topic}, {partitions} partitions",
            kafka_config.brokers
        );
    }
    if check {
        println!("check: ok");
        return Ok(());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || s.store(true, Ordering::SeqCst))
        .map_err(|e| format!("cannot handle signals: {e}"))?;

    let source = KafkaSource::new(&kafka_config).map_err(|e| e.to_string())?;
    let partitions = source.partitions();
    source.on_rebalance(|what, partitions| println!("{what} partitions {partitions:?}"));
    let sink = KafkaSink::new(
        &kafka_config,
        Duration::from_millis(config.kafka.sink_timeout_ms),
    )
    .map_err(|e| e.to_string())?;
    let store = PolicyStore::new();
    store.install(policy);
    let engine = Engine::start(
        config.engine_config(partitions),
        source,
        sink,
        key,
        Arc::new(ArcSwap::from_pointee(trust)),
        Arc::new(store),
    )
    .map_err(|e| e.to_string())?;
    println!(
        "running: group {}, {} -> {} + {}",
        config.kafka.group_id,
        config.kafka.intents_topic,
        config.kafka.decisions_topic,
        config.kafka.lineage_topic
    );

    let started = Instant::now();
    let mut last_status = Instant::now();
    let mut was_stalled = false;
    while !stop.load(Ordering::SeqCst) && engine.failure().is_none() {
        std::thread::sleep(Duration::from_millis(50));
        let stats = engine.stats();
        if stats.sink_stalled != was_stalled {
            was_stalled = stats.sink_stalled;
            println!(
                "{}",
                if was_stalled {
                    "not ready: the broker does not acknowledge decisions; retrying, committing nothing"
                } else {
                    "ready: the broker acknowledges decisions again"
                }
            );
        }
        if !status_every.is_zero() && last_status.elapsed() >= status_every {
            last_status = Instant::now();
            println!("{}", status(&stats, started.elapsed()));
        }
    }
    if stop.load(Ordering::SeqCst) {
        println!("stopping: deciding and emitting what was read");
    }
    let stats = engine.shutdown().map_err(|e| e.to_string())?;
    println!("{}", status(&stats, started.elapsed()));
    println!("stopped");
    Ok(())
}

fn status(s: &StatsSnapshot, up: Duration) -> String {
    let authorized = s.count(Reason::Authorized);
    format!(
        "status: up {:.0}s, intents {}, decisions {} (authorized {}, denied {}), \
         engine latency p50 {} µs p99 {} µs",
        up.as_secs_f64(),
        s.intents_in,
        s.decisions(),
        authorized,
        s.decisions() - authorized,
        s.latency_us.value_at_quantile(0.5),
        s.latency_us.value_at_quantile(0.99),
    )
}
