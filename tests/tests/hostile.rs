//! The hostile corpus (`tests/corpus/hostile/`), end to end: every file is
//! published to the engine (embedded transport, the corpus' trust store
//! and policy) in order, and every one gets exactly one decision with the
//! reason its manifest names. Nothing but the controls is authorized; every
//! decision verifies with the executor verifier against the exact bytes
//! sent, and a deny verifies as that deny. The committed files must be
//! exactly what `tests/src/hostile.rs` generates.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use warrant_engine::pipeline::{Config, Engine, now_us};
use warrant_engine::seal::{DecisionError, EngineKey, EngineKeys, verify_decision};
use warrant_engine::transport::embedded::{Collector, Topic};
use warrant_engine::trust::TrustStore;
use warrant_engine::workload::first16;
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::wire::Reason;
use warrant_schemas::{Limits, intent_digest, open_decision, open_signed_intent};
use warrant_tests::hostile;

fn dir() -> PathBuf {
    warrant_tests::workspace_root().join("tests/corpus/hostile")
}

#[derive(serde::Deserialize)]
struct Manifest {
    case: Vec<Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    file: String,
    expect: String,
    control: bool,
    what: String,
}

fn manifest() -> Manifest {
    toml::from_str(&std::fs::read_to_string(dir().join("manifest.toml")).unwrap()).unwrap()
}

#[test]
fn the_committed_corpus_is_what_the_generator_writes() {
    let cases = hostile::cases();
    let fix = "regenerate it: cargo run -p warrant-tests --example hostile_corpus";
    assert_eq!(
        std::fs::read_to_string(dir().join("manifest.toml")).unwrap(),
        hostile::manifest(&cases),
        "manifest differs; {fix}"
    );
    for c in &cases {
        let committed = std::fs::read(dir().join(&c.file)).unwrap_or_default();
        assert!(committed == c.bytes, "{} differs; {fix}", c.file);
    }
    let files = std::fs::read_dir(dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "bin")
        })
        .count();
    assert_eq!(files, cases.len(), "stray files; {fix}");
    assert_eq!(
        std::fs::read_to_string(dir().join("trust.toml")).unwrap(),
        hostile::trust_toml()
    );
    assert_eq!(
        std::fs::read_to_string(dir().join("policy.toml")).unwrap(),
        hostile::POLICY
    );
}

#[test]
fn every_hostile_intent_is_denied_with_its_reason() {
    let m = manifest();
    assert!(m.case.len() >= 30, "{} cases", m.case.len());
    let trust = TrustStore::load(&dir().join("trust.toml")).unwrap();
    let store = Arc::new(PolicyStore::new());
    store.install(Policy::load(&dir().join("policy.toml")).unwrap());
    let key = EngineKey::from_seed([9; 32]);
    let engine_public = key.public_key();
    // One partition: the cases are decided in the order published (the
    // replay comes after the intent whose nonce it reuses).
    let topic = Topic::new(1, 1_024);
    let sink = Collector::new();
    let engine = Engine::start(
        Config {
            partitions: 1,
            max_intent_age: Duration::from_secs(hostile::MAX_AGE_S),
            ..Config::default()
        },
        topic.consumer(),
        sink.clone(),
        key,
        Arc::new(ArcSwap::from_pointee(trust)),
        store,
    )
    .unwrap();

    // Several cases are the same intent with another signature: a
    // decision is matched to its case by the digest of the exact bytes it
    // is bound to. Its id is the intent's, or for bytes that do not open,
    // the first 16 bytes of that digest.
    let mut by_digest: BTreeMap<[u8; 32], usize> = BTreeMap::new();
    let mut sent = Vec::new();
    for (i, c) in m.case.iter().enumerate() {
        let bytes = std::fs::read(dir().join(&c.file)).unwrap();
        assert!(
            by_digest.insert(intent_digest(&bytes), i).is_none(),
            "{}: the same bytes as another case",
            c.file
        );
        topic.publish(b"corpus", bytes.clone()).unwrap();
        sent.push(bytes);
    }
    topic.close();
    engine.join().unwrap();

    let out = sink.take_snapshot();
    assert_eq!(out.decisions.len(), m.case.len(), "one decision per case");
    let mut keys = EngineKeys::new();
    keys.add(&engine_public).unwrap();
    let mut seen = vec![false; m.case.len()];
    let mut report = String::new();
    for (id, decision) in &out.decisions {
        let d = open_decision(decision, &Limits::default()).unwrap();
        let i = by_digest[&d.intent_digest().0];
        let c = &m.case[i];
        assert!(!seen[i], "{}: two decisions", c.file);
        seen[i] = true;
        let want_id = match open_signed_intent(&sent[i], &Limits::default()) {
            Ok(s) => s.intent.id().0,
            Err(_) => first16(&intent_digest(&sent[i])),
        };
        assert_eq!(*id, want_id, "{}: keyed by its intent id", c.file);
        let got = d.reason().variant_name().unwrap();
        report.push_str(&format!("  {:<34} {got:<18} {}\n", c.file, c.what));
        assert_eq!(got, c.expect, "{}: {}", c.file, c.what);
        assert_eq!(c.expect == "Authorized", c.control, "{}", c.file);
        // The executor's check against the exact bytes sent.
        match verify_decision(
            decision,
            &keys,
            &intent_digest(&sent[i]),
            "executor",
            now_us(),
        ) {
            Ok(_) => assert!(c.control, "{}: usable as an authorization", c.file),
            Err(DecisionError::Denied(r)) => assert_eq!(Some(c.expect.as_str()), r.variant_name()),
            Err(e) => panic!("{}: the decision does not verify: {e}", c.file),
        }
    }
    assert!(seen.iter().all(|s| *s));
    // Every deny reason an attacker can reach from the topic is covered.
    for reason in [
        Reason::Malformed,
        Reason::UnknownKey,
        Reason::RevokedKey,
        Reason::BadSignature,
        Reason::NotYetValid,
        Reason::Expired,
        Reason::DeadlineExceeded,
        Reason::ReplayedNonce,
        Reason::NoMatchingRule,
        Reason::DenyRule,
    ] {
        let name = reason.variant_name().unwrap();
        assert!(
            m.case.iter().any(|c| c.expect == name),
            "no case for {name}"
        );
    }
    println!("hostile corpus: {} cases\n{report}", m.case.len());
}
