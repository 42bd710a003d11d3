//! docker-compose.yml stays correct without a Docker engine: its engine
//! service runs `warrant run` on a configuration that parses under the
//! schema with the environment compose gives it, every file it names is
//! mounted from the repository and loads, and the topics compose creates
//! are the ones the configuration names, partitioned as the engine needs.
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
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
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
