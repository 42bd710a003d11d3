//! docker-compose.yml stays correct without a Docker engine: its engine
//! service runs `warrant run` on a configuration that parses under the
//! schema with the environment compose gives it, every file it names is
//! mounted from the repository and loads, and the topics compose creates
//! are the ones the configuration names, partitioned as the engine needs;
//! loadgen targets the engine's broker and topics with keys the engine
//! trusts, once its `/readyz` answers; Prometheus scrapes the engine's
//! admin port, and every series the Grafana dashboard queries is one a
//! live engine exports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;
use warrant_cli::config::Config;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

/// A YAML file of the repository.
fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo().join(path)).unwrap()).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// `host:container[:ro]` volume mounts of a service: container path → host path.
fn mounts(service: &Value) -> BTreeMap<String, String> {
    strings(&service["volumes"])
        .iter()
        .map(|m| {
            let parts: Vec<&str> = m.split(':').collect();
            (parts[1].to_owned(), parts[0].to_owned())
        })
        .collect()
}

#[test]
fn the_engine_service_runs_a_configuration_the_schema_accepts() {
    let c = compose();
    let engine = &c["services"]["warrant"];
    let command = strings(&engine["command"]);
    assert_eq!(command[..2], ["run", "--config"], "{command:?}");
    let config_path = &command[2];
    let mounts = mounts(engine);
    let host = |container: &str| -> PathBuf {
        let (c, h) = mounts
            .iter()
            .filter(|(c, _)| container.starts_with(c.as_str()))
            .max_by_key(|(c, _)| c.len())
            .unwrap_or_else(|| panic!("`{container}` is not mounted into the engine"));
        let rest = container.strip_prefix(c.as_str()).unwrap();
        if h.starts_with("./") {
            let rest = rest.trim_start_matches('/');
            let p = repo().join(h);
            if rest.is_empty() { p } else { p.join(rest) }
        } else {
            // A named volume (the key): written by the `keys` service.
            assert!(!h.contains('/'), "unexpected mount {h}");
            PathBuf::from(format!("volume:{h}"))
        }
    };

    // The configuration, with exactly the environment compose sets.
    let env: Vec<(String, String)> = engine["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (k, _) in &env {
        assert!(k.starts_with("WARRANT_"), "{k}");
    }
    let text = std::fs::read_to_string(host(config_path)).unwrap();
    let mut config = Config::parse(&text, config_path, env).unwrap();
    assert_eq!(config.kafka.brokers, "kafka:9092");
    assert!(!config.engine.pin);

    // Relative paths are beside the configuration file, as `Config::load`
    // resolves them.
    let base = Path::new(config_path).parent().unwrap();
    for p in [
        &mut config.trust.file,
        &mut config.policy.path,
        &mut config.engine.key_file,
    ] {
        if Path::new(p.as_str()).is_relative() {
            *p = base.join(p.as_str()).display().to_string();
        }
    }
    // The trust store and the policy load from the files mounted.
    warrant_engine::trust::TrustStore::load(&host(&config.trust.file)).unwrap();
    warrant_policy::Policy::load(&host(&config.policy.path)).unwrap();
    // The key lives in the volume the `keys` service writes it to.
    let key = host(&config.engine.key_file);
    assert!(key.starts_with("volume:warrant-keys"), "{}", key.display());
    let keys = &c["services"]["keys"];
    let keygen = strings(&keys["command"]).join(" ");
    assert!(
        keygen.contains(&format!("warrant keygen --out {}", config.engine.key_file)),
        "{keygen}"
    );
    assert!(
        strings(&keys["volumes"])
            .iter()
            .any(|v| v.starts_with("warrant-keys:"))
    );

    // The topics compose creates are the configuration's, with lineage
    // kept forever and partitioned at least like the intents.
    let script = strings(&c["services"]["topics"]["command"]).join("\n");
    for topic in [
        &config.kafka.intents_topic,
        &config.kafka.decisions_topic,
        &config.kafka.lineage_topic,
    ] {
        assert!(script.contains(topic.as_str()), "`{topic}` is not created");
    }
    assert!(script.contains("--topic warrant.lineage --partitions 4"));
    // The keys topic: compacted (the latest record per key is the state).
    assert!(
        script.contains(&format!(
            "--topic {} --partitions 1 --replication-factor 1 --config cleanup.policy=compact",
            config.trust.topic
        )),
        "the keys topic `{}` is not created compacted",
        config.trust.topic
    );
    assert!(script.contains("retention.ms=-1"));
    assert!(script.contains("--topic $$topic --partitions 4"));

    // Same image as the one built from the repository's Dockerfile.
    assert_eq!(engine["image"], keys["image"]);
    assert_eq!(keys["build"].as_str(), Some("."));
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("--bin warrant"));
}

#[test]
fn kafka_runs_in_kraft_mode_from_the_official_image() {
    let c = compose();
    let kafka = &c["services"]["kafka"];
    assert!(
        kafka["image"]
            .as_str()
            .unwrap()
            .starts_with("apache/kafka:")
    );
    let env = &kafka["environment"];
    assert_eq!(
        env["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller")
    );
    // The engine reaches the internal listener the configuration names.
    let advertised = env["KAFKA_ADVERTISED_LISTENERS"].as_str().unwrap();
    assert!(advertised.contains("//kafka:9092"), "{advertised}");
}

fn env_of(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_owned(),
                v.as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The admin port compose gives the engine.
fn admin_port(c: &Value) -> String {
    let engine = &c["services"]["warrant"];
    let listen = env_of(engine)["WARRANT_ADMIN_LISTEN"].clone();
    let port = listen.rsplit_once(':').unwrap().1.to_owned();
    assert!(
        listen.starts_with("0.0.0.0:"),
        "{listen}: reachable from other containers"
    );
    assert!(
        strings(&engine["ports"]).contains(&format!("127.0.0.1:{port}:{port}")),
        "the admin port is published, on the host's loopback only"
    );
    port
}

#[test]
fn loadgen_drives_the_engine_through_kafka_with_keys_it_trusts() {
    let c = compose();
    let loadgen = &c["services"]["loadgen"];
    assert_eq!(loadgen["image"], c["services"]["warrant"]["image"]);
    assert_eq!(strings(&loadgen["entrypoint"]), ["loadgen"]);
    let args = strings(&loadgen["command"]);
    let arg = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .map(|i| args[i + 1].clone())
    };
    assert_eq!(arg("--target").as_deref(), Some("kafka"));
    let engine_env = env_of(&c["services"]["warrant"]);
    assert_eq!(
        arg("--brokers"),
        engine_env.get("WARRANT_KAFKA_BROKERS").cloned()
    );
    // loadgen's default topics are the engine's.
    let config = std::fs::read_to_string(repo().join("examples/compose/warrant.toml")).unwrap();
    let config = Config::parse(&config, "warrant.toml", Vec::new()).unwrap();
    let defaults = warrant_loadgen::kafka::KafkaOptions::new("x");
    assert_eq!(
        arg("--intents-topic").unwrap_or(defaults.intents_topic),
        config.kafka.intents_topic
    );
    assert_eq!(
        arg("--decisions-topic").unwrap_or(defaults.decisions_topic),
        config.kafka.decisions_topic
    );
    // It starts once the engine's /readyz answers 200.
    assert_eq!(
        loadgen["depends_on"]["warrant"]["condition"].as_str(),
        Some("service_healthy")
    );
    let port = admin_port(&c);
    let check = strings(&c["services"]["warrant"]["healthcheck"]["test"]).join(" ");
    assert!(
        check.contains(&format!("/dev/tcp/127.0.0.1/{port}")),
        "{check}"
    );
    assert!(check.contains("GET /readyz"), "{check}");
    // The engine's trust store holds exactly loadgen's principals' keys
    // (16, loadgen's default), and the policy is the one its mix expects.
    assert!(arg("--principals").is_none_or(|p| p == "16"));
    let trust =
        warrant_engine::trust::TrustStore::load(&repo().join("examples/compose/trust.toml"))
            .unwrap();
    let expected = warrant_engine::workload::trust_store(16).unwrap();
    assert_eq!(trust.to_toml(), expected.to_toml());
    assert!(
        strings(&c["services"]["warrant"]["volumes"])
            .contains(&"./examples/policy/payments.toml:/etc/warrant/policy.toml:ro".to_owned())
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("--bin loadgen"));
    assert!(dockerfile.contains("/usr/local/bin/loadgen"));
}

/// Every metric name the engine exports, from a live engine's `/metrics`
/// text.
fn exported_metrics() -> std::collections::BTreeSet<String> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use warrant_cli::admin::Admin;
    use warrant_engine::pipeline::{Config as EngineConfig, Engine};
    use warrant_engine::transport::embedded::{Collector, Topic};

    let topic = Topic::new(1, 16);
    let policy = Arc::new(warrant_policy::PolicyStore::new());
    policy.install(
        warrant_policy::Policy::load(&repo().join("examples/policy/payments.toml")).unwrap(),
    );
    let engine = Engine::start(
        EngineConfig::default(),
        topic.consumer(),
        Collector::new(),
        warrant_engine::seal::EngineKey::from_seed([7; 32]),
        Arc::new(arc_swap::ArcSwap::from_pointee(
            warrant_engine::trust::TrustStore::new(),
        )),
        policy.clone(),
    )
    .unwrap();
    let admin = Admin {
        probe: engine.probe(),
        policy,
        broker_reachable: Arc::new(AtomicBool::new(true)),
        stopping: Arc::new(AtomicBool::new(false)),
        lag: Some(Box::new(|| vec![(0, 0)])),
        queue_capacity: [4; 6],
        started: std::time::SystemTime::now(),
        trust: Arc::default(),
    };
    let text = admin.metrics();
    topic.close();
    engine.join().unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

#[test]
fn prometheus_scrapes_the_engine_and_the_dashboard_queries_what_it_exports() {
    let c = compose();
    let port = admin_port(&c);
    let prometheus = &c["services"]["prometheus"];
    assert!(
        prometheus["image"]
            .as_str()
            .unwrap()
            .starts_with("prom/prometheus:")
    );
    assert_eq!(
        mounts(prometheus)["/etc/prometheus/prometheus.yml"],
        "./examples/compose/prometheus.yml"
    );
    let scrape: Value = yaml("examples/compose/prometheus.yml");
    let job = &scrape["scrape_configs"][0];
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    assert_eq!(
        strings(&job["static_configs"][0]["targets"]),
        [format!("warrant:{port}")]
    );

    // Grafana gets the dashboard and a Prometheus data source pointing at
    // the service above.
    let grafana = &c["services"]["grafana"];
    let m = mounts(grafana);
    assert_eq!(
        m["/var/lib/grafana/dashboards"],
        "./examples/compose/grafana/dashboards"
    );
    assert_eq!(
        m["/etc/grafana/provisioning"],
        "./examples/compose/grafana/provisioning"
    );
    let ds: Value = yaml("examples/compose/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        ds["datasources"][0]["url"].as_str(),
        Some("http://prometheus:9090")
    );
    let uid = ds["datasources"][0]["uid"].as_str().unwrap().to_owned();
    let provider: Value = yaml("examples/compose/grafana/provisioning/dashboards/warrant.yml");
    assert_eq!(
        provider["providers"][0]["options"]["path"].as_str(),
        Some("/var/lib/grafana/dashboards")
    );

    // Every series a panel queries is one the engine exports.
    let exported = exported_metrics();
    for name in [
        "warrant_decisions_total",
        "warrant_decision_latency_seconds_bucket",
        "warrant_queue_depth",
        "warrant_consumer_lag",
        "warrant_ready",
    ] {
        assert!(exported.contains(name), "{name} not exported: {exported:?}");
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/compose/grafana/dashboards/warrant.json"))
            .unwrap(),
    )
    .unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"].as_str(), Some(uid.as_str()));
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("warrant_"))
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for n in names {
                assert!(
                    exported.contains(n),
                    "panel `{}` queries `{n}`, which the engine does not export",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 14, "{queried}");
}
