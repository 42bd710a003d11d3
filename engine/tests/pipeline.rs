//! End to end on the embedded transport: a crafted intent for each deny
//! reason gets that reason, exactly one decision per intent under
//! concurrent load, authorize only for fully valid intents, every decision
//! verifies with the executor's verifier, the lineage log verifies, and
//! tampering with a decision or a lineage record is detected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use warrant_engine::lineage::file::by_partition;
use warrant_engine::lineage::verify_log;
use warrant_engine::pipeline::{Config, Engine, Layout, StatsSnapshot, now_us};
use warrant_engine::seal::{
    DecisionError, EngineKey, EngineKeys, decision_leaf_hash, verify_decision,
};
use warrant_engine::transport::embedded::{Collector, Topic};
use warrant_engine::transport::{OutBatch, partition_for};
use warrant_engine::trust::{KeyState, TrustStore};
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::wire::Reason;
use warrant_schemas::{
    Attr, AttrValue, IntentFields, IntentSigner, encode_signed_intent, intent_digest,
    open_decision, open_signed_intent,
};

const POLICY: &str = r#"
[policy]
name = "pipeline-test"
version = 7

[[rule]]
id = "deny-big"
effect = "deny"
action = "pay"
when = { amount = { min = 1000 } }

[[rule]]
id = "allow-pay"
effect = "allow"
action = "pay"
max_validity = "1m"
"#;

const PARTITIONS: u32 = 4;
const AUDIENCE: &str = "executor";

fn signer(n: u8) -> IntentSigner {
    IntentSigner::from_seed([n; 32])
}

/// Principals `svc-1` (active), `svc-2` (rotating) and `svc-3` (revoked);
/// `svc-9`'s key is not in the store.
fn trust() -> TrustStore {
    let mut t = TrustStore::new();
    t.add("svc-1", signer(1).public_key(), KeyState::Active)
        .unwrap();
    t.add("svc-2", signer(2).public_key(), KeyState::Rotating)
        .unwrap();
    t.add("svc-3", signer(3).public_key(), KeyState::Revoked)
        .unwrap();
    t
}

fn id(n: u64) -> [u8; 16] {
    u128::from(n).to_le_bytes()
}

/// A valid payment intent of `principal` signed by `signer`.
struct Spec {
    n: u64,
    principal: &'static str,
    signer: u8,
    amount: i64,
    action: &'static str,
    issued_at_us: u64,
    deadline_us: u64,
    nonce: Option<u64>,
    parent: Option<u64>,
    validity_us: u64,
}

impl Spec {
    fn new(n: u64) -> Spec {
        let now = now_us();
        Spec {
            n,
            principal: "svc-1",
            signer: 1,
            amount: 10,
            action: "pay",
            issued_at_us: now,
            deadline_us: now + 20_000_000,
            nonce: None,
            parent: None,
            validity_us: 300_000_000,
        }
    }

    fn signed(&self) -> Vec<u8> {
        let attrs = [Attr {
            key: "amount",
            value: AttrValue::Int(self.amount),
        }];
        signer(self.signer).sign_intent(&IntentFields {
            id: id(self.n),
            principal: self.principal,
            action: self.action,
            attributes: &attrs,
            issued_at_us: self.issued_at_us,
            deadline_us: self.deadline_us,
            requested_validity_us: self.validity_us,
            nonce: id(self.nonce.unwrap_or(self.n) + 1_000_000),
            parent_id: self.parent.map(id),
            ..IntentFields::example()
        })
    }
}

/// The same intent with one bit of its signature's S flipped.
fn forge(signed: &[u8]) -> Vec<u8> {
    let s = open_signed_intent(signed, &Default::default()).unwrap();
    let mut sig = *s.signature;
    sig[40] ^= 0x01;
    encode_signed_intent(s.intent_bytes, &sig)
}

struct Run {
    out: OutBatch,
    stats: StatsSnapshot,
    engine_public: [u8; 32],
}

impl Run {
    /// Decisions by intent id.
    fn decisions(&self) -> HashMap<[u8; 16], Vec<Vec<u8>>> {
        let mut m: HashMap<[u8; 16], Vec<Vec<u8>>> = HashMap::new();
        for (id, d) in &self.out.decisions {
            m.entry(*id).or_default().push(d.clone());
        }
        m
    }

    fn reason_of(&self, n: u64) -> Reason {
        let d = self.decisions();
        let ds = d
            .get(&id(n))
            .unwrap_or_else(|| panic!("no decision for {n}"));
        assert_eq!(ds.len(), 1, "intent {n} got {} decisions", ds.len());
        open_decision(&ds[0], &Default::default()).unwrap().reason()
    }

    /// Every partition's lineage log verifies; returns records verified.
    fn verify_lineage(&self) -> u64 {
        let mut total = 0;
        for (p, f) in by_partition(&self.out.lineage) {
            total += verify_log(p, &f.records, &f.checkpoints, &[self.engine_public])
                .unwrap_or_else(|e| panic!("partition {p}: {e}"))
                .records;
        }
        total
    }
}

/// The final stats say what CPU each engine thread used, every stage and
/// every verify thread named, so that a bench can split the pipeline's
/// cost into verification and the rest as they ran side by side.
#[cfg(target_os = "linux")]
#[test]
fn the_final_stats_carry_every_threads_cpu_time() {
    // Where the kernel keeps no scheduler statistics (`0 0 0`) or a
    // sandbox hides them, the engine reports none, as documented: nothing
    // to check. (A thread's CPU time there is as of its last context
    // switch: this fresh thread may read 0 with a non-zero count.)
    let reported = std::fs::read_to_string("/proc/thread-self/schedstat")
        .is_ok_and(|s| s.split_whitespace().any(|f| f != "0"));
    if !reported {
        eprintln!("no /proc/thread-self/schedstat here: not checked");
        return;
    }
    let done = run(
        config(),
        &(0..200)
            .map(|i| ("svc-1", Spec::new(i).signed()))
            .collect::<Vec<_>>(),
        Some(policy()),
    );
    let cpu = &done.stats.thread_cpu;
    let names: Vec<&str> = cpu.iter().map(|(n, _)| n.as_str()).collect();
    for name in [
        "ingest", "decode", "vlane0", "vlane1", "verify-0", "verify-1", "policy", "seal", "emit",
    ] {
        assert_eq!(
            names.iter().filter(|n| **n == name).count(),
            1,
            "{name} in {names:?}"
        );
    }
    assert_eq!(cpu.len(), 9, "{names:?}");
    // Each ran: a thread's CPU time counts from its start.
    assert!(cpu.iter().all(|(_, d)| !d.is_zero()), "{cpu:?}");
    // And each is the thread's own, not the process's: together they are
    // no more than the process has used since it started (utime + stime
    // in `/proc/self/stat`, in ticks of 10 ms; one tick of slack each).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let process = Duration::from_millis(10 * (fields[11] + fields[12] + 2));
    let threads: Duration = cpu.iter().map(|(_, d)| *d).sum();
    assert!(threads <= process, "{threads:?} > {process:?}: {cpu:?}");
}

fn config() -> Config {
    Config {
        partitions: PARTITIONS,
        layout: Layout::unpinned(2),
        ..Config::default()
    }
}

/// Publishes `records` (key, payload), closes the topic, runs the engine
/// until it has decided everything.
fn run(config: Config, records: &[(&str, Vec<u8>)], policy: Option<Policy>) -> Run {
    let topic = Topic::new(PARTITIONS, 100_000);
    for (key, payload) in records {
        topic.publish(key.as_bytes(), payload.clone()).unwrap();
    }
    topic.close();
    let collector = Collector::new();
    let key = EngineKey::from_seed([42; 32]);
    let engine_public = key.public_key();
    let store = Arc::new(PolicyStore::new());
    if let Some(p) = policy {
        store.install(p);
    }
    let engine = Engine::start(
        config,
        topic.consumer(),
        collector.clone(),
        key,
        Arc::new(ArcSwap::from_pointee(trust())),
        store,
    )
    .unwrap();
    let stats = engine.join().unwrap();
    // Everything read was committed: nothing is left in the topic.
    assert!(topic.snapshot().is_empty(), "uncommitted records remain");
    Run {
        out: collector.take_snapshot(),
        stats,
        engine_public,
    }
}

fn policy() -> Policy {
    Policy::from_sources(&[("test.toml", POLICY)]).unwrap()
}

/// A key that lands on a different partition than `principal`.
fn other_partition_key(principal: &str) -> String {
    let p = partition_for(principal.as_bytes(), PARTITIONS);
    (0..)
        .map(|i| format!("k{i}"))
        .find(|k| partition_for(k.as_bytes(), PARTITIONS) != p)
        .unwrap()
}

#[test]
fn each_crafted_intent_gets_its_reason() {
    let now = now_us();
    let mut cases: Vec<(u64, &str, Vec<u8>, Reason)> = Vec::new();
    let mut add = |n: u64, key: &'static str, bytes: Vec<u8>, reason: Reason| {
        cases.push((n, key, bytes, reason));
    };
    add(1, "svc-1", Spec::new(1).signed(), Reason::Authorized);
    // A rotating key is still accepted.
    add(
        2,
        "svc-2",
        Spec {
            principal: "svc-2",
            signer: 2,
            ..Spec::new(2)
        }
        .signed(),
        Reason::Authorized,
    );
    add(
        3,
        "svc-3",
        Spec {
            principal: "svc-3",
            signer: 3,
            ..Spec::new(3)
        }
        .signed(),
        Reason::RevokedKey,
    );
    add(
        4,
        "svc-9",
        Spec {
            principal: "svc-9",
            signer: 9,
            ..Spec::new(4)
        }
        .signed(),
        Reason::UnknownKey,
    );
    // svc-2 signing as svc-1: a key of another principal.
    add(
        5,
        "svc-1",
        Spec {
            signer: 2,
            ..Spec::new(5)
        }
        .signed(),
        Reason::UnknownKey,
    );
    add(
        6,
        "svc-1",
        forge(&Spec::new(6).signed()),
        Reason::BadSignature,
    );
    add(
        7,
        "svc-1",
        Spec {
            issued_at_us: now + 600_000_000,
            deadline_us: now + 700_000_000,
            ..Spec::new(7)
        }
        .signed(),
        Reason::NotYetValid,
    );
    add(
        8,
        "svc-1",
        Spec {
            issued_at_us: now - 600_000_000,
            ..Spec::new(8)
        }
        .signed(),
        Reason::Expired,
    );
    add(
        9,
        "svc-1",
        Spec {
            issued_at_us: now - 1_000_000,
            deadline_us: now - 1_000,
            ..Spec::new(9)
        }
        .signed(),
        Reason::DeadlineExceeded,
    );
    add(
        10,
        "svc-1",
        Spec {
            amount: 5_000,
            ..Spec::new(10)
        }
        .signed(),
        Reason::DenyRule,
    );
    add(
        11,
        "svc-1",
        Spec {
            action: "read",
            ..Spec::new(11)
        }
        .signed(),
        Reason::NoMatchingRule,
    );
    // Intent 12 reuses intent 1's nonce: a replay.
    add(
        12,
        "svc-1",
        Spec {
            nonce: Some(1),
            ..Spec::new(12)
        }
        .signed(),
        Reason::ReplayedNonce,
    );
    // A chained child of intent 1.
    add(
        13,
        "svc-1",
        Spec {
            parent: Some(1),
            ..Spec::new(13)
        }
        .signed(),
        Reason::Authorized,
    );
    let mut records: Vec<(&str, Vec<u8>)> =
        cases.iter().map(|(_, k, b, _)| (*k, b.clone())).collect();
    // Garbage: denied as malformed, keyed by its digest.
    let garbage = b"not a flatbuffer at all".to_vec();
    records.push(("svc-1", garbage.clone()));
    // Larger than any intent: the source keeps only its digest, and it is
    // denied as malformed, bound to the bytes published.
    let oversize = vec![0xab; 200 * 1024];
    records.push(("svc-1", oversize.clone()));
    // A valid intent published under a key that routes it to another
    // partition than its principal's: malformed (misrouted).
    let misrouted = Spec::new(14).signed();
    let key = other_partition_key("svc-1");
    records.push((Box::leak(key.into_boxed_str()), misrouted.clone()));

    let run = run(config(), &records, Some(policy()));
    for (n, _, _, reason) in &cases {
        assert_eq!(run.reason_of(*n), *reason, "intent {n}");
    }
    assert_eq!(run.reason_of(14), Reason::Malformed, "misrouted");
    let garbage_id: [u8; 16] = intent_digest(&garbage)[..16].try_into().unwrap();
    let d = &run.decisions()[&garbage_id];
    assert_eq!(d.len(), 1);
    assert_eq!(
        open_decision(&d[0], &Default::default()).unwrap().reason(),
        Reason::Malformed
    );
    let oversize_id: [u8; 16] = intent_digest(&oversize)[..16].try_into().unwrap();
    let decisions = run.decisions();
    let d = open_decision(&decisions[&oversize_id][0], &Default::default()).unwrap();
    assert_eq!(
        (d.reason(), d.intent_digest().0),
        (Reason::Malformed, intent_digest(&oversize))
    );
    assert_eq!(run.stats.decisions(), records.len() as u64);
    assert_eq!(run.stats.intents_in, records.len() as u64);

    // Every decision verifies with the executor's verifier: authorize ones
    // are accepted, deny ones refused with their reason, all bound to the
    // exact bytes published.
    let mut keys = EngineKeys::new();
    keys.add(&run.engine_public).unwrap();
    let at = now_us() + 1_000;
    for (key, payload) in &records {
        let digest = intent_digest(payload);
        let (_, bytes) = run
            .out
            .decisions
            .iter()
            .find(|(_, d)| {
                open_decision(d, &Default::default())
                    .unwrap()
                    .intent_digest()
                    .0
                    == digest
            })
            .unwrap_or_else(|| panic!("no decision bound to a record of {key}"));
        let d = open_decision(bytes, &Default::default()).unwrap();
        match verify_decision(bytes, &keys, &digest, AUDIENCE, at) {
            Ok(a) => {
                assert_eq!(d.reason(), Reason::Authorized);
                assert_eq!(a.rule_id, "allow-pay");
                assert_eq!(a.policy_version, 7);
                // The rule grants one minute of the five requested,
                // counted from the policy stage (a moment before the
                // seal stamps `issued_at`).
                let validity = d.valid_until_us() - d.issued_at_us();
                assert!((59_000_000..=60_000_000).contains(&validity), "{validity}");
            }
            Err(DecisionError::Denied(r)) => assert_eq!(r, d.reason()),
            Err(e) => panic!("decision failed verification: {e}"),
        }
    }
    // Deny rules are named.
    let deny = &run.decisions()[&id(10)][0];
    assert_eq!(
        open_decision(deny, &Default::default()).unwrap().rule_id(),
        Some("deny-big")
    );
    assert_eq!(run.verify_lineage(), records.len() as u64);
    // The lineage links the child to its parent.
    let chained = run
        .out
        .lineage
        .iter()
        .filter_map(|(_, b)| warrant_schemas::open_lineage_record(b, &Default::default()).ok())
        .find(|r| r.intent_id().0 == id(13))
        .unwrap();
    assert_eq!(chained.parent_id().map(|p| p.0), Some(id(1)));
    // Each lineage record names its decision by the decision's leaf hash.
    let decision = &run.decisions()[&id(13)][0];
    assert_eq!(
        chained.decision_digest().0,
        decision_leaf_hash(decision).unwrap()
    );
    // A record logs its decision's end, and 0 for a deny (lineage.fbs).
    let decisions = run.decisions();
    for r in run
        .out
        .lineage
        .iter()
        .filter_map(|(_, b)| warrant_schemas::open_lineage_record(b, &Default::default()).ok())
    {
        let d = open_decision(&decisions[&r.intent_id().0][0], &Default::default()).unwrap();
        let expected = if r.reason() == Reason::Authorized {
            d.valid_until_us()
        } else {
            0
        };
        assert_eq!(r.valid_until_us(), expected, "{:?}", r.reason());
    }
}

#[test]
fn no_policy_denies_everything_and_redelivery_keeps_its_verdict() {
    let valid = Spec::new(1).signed();
    let run1 = run(config(), &[("svc-1", valid.clone())], None);
    assert_eq!(run1.reason_of(1), Reason::NoPolicy);

    // The same intent delivered twice (as after a crash before commit) gets
    // the same verdict twice, not a replay deny.
    let again = run(
        config(),
        &[("svc-1", valid.clone()), ("svc-1", valid)],
        Some(policy()),
    );
    let ds = &again.decisions()[&id(1)];
    assert_eq!(ds.len(), 2);
    for d in ds {
        assert_eq!(
            open_decision(d, &Default::default()).unwrap().reason(),
            Reason::Authorized
        );
    }
}

/// A replay cache full of live nonces denies new intents "overloaded"
/// rather than forget a nonce that could then be replayed; an intent it
/// already holds keeps its verdict, and a nonce it holds is still refused
/// to another intent.
#[test]
fn a_full_replay_cache_denies_overloaded_and_forgets_nothing() {
    let one = Spec::new(1).signed();
    let run1 = run(
        Config {
            replay_capacity: 2,
            ..config()
        },
        &[
            ("svc-1", one.clone()),
            ("svc-1", Spec::new(2).signed()),
            ("svc-1", Spec::new(3).signed()),
            ("svc-1", one),
            // Intent 1's nonce reused by another intent: still a replay.
            (
                "svc-1",
                Spec {
                    nonce: Some(1),
                    ..Spec::new(4)
                }
                .signed(),
            ),
        ],
        Some(policy()),
    );
    assert_eq!(run1.reason_of(2), Reason::Authorized);
    assert_eq!(run1.reason_of(3), Reason::Overloaded);
    assert_eq!(run1.reason_of(4), Reason::ReplayedNonce);
    let ds = &run1.decisions()[&id(1)];
    assert_eq!(ds.len(), 2);
    for d in ds {
        assert_eq!(
            open_decision(d, &Default::default()).unwrap().reason(),
            Reason::Authorized
        );
    }
    assert_eq!(run1.verify_lineage(), 5);
}

/// The replay memory tells intents apart by their signed bytes, not by
/// the id their producer chose: another intent reusing a nonce *and* an id
/// is a replay. The same bytes again (a redelivery, or a republish) get
/// the same verdict, valid until the same instant as the first time (an
/// executor's single-use memory ends with the decision it consumed: a
/// longer second decision would outlive it, a shorter one would free the
/// first for reuse). And an intent asking for no validity at all is malformed,
/// not authorized for zero microseconds.
#[test]
fn replays_are_told_by_content_and_a_redelivery_never_extends_an_authorization() {
    let first = Spec::new(1).signed();
    let same_id_and_nonce = Spec {
        amount: 20,
        ..Spec::new(1)
    }
    .signed();
    let no_validity = Spec {
        validity_us: 0,
        ..Spec::new(2)
    }
    .signed();
    let topic = Topic::new(PARTITIONS, 100_000);
    let (engine, collector) = start(config(), &topic);
    topic.publish(b"svc-1", first.clone()).unwrap();
    let t = Instant::now();
    while collector.take_snapshot().decisions.is_empty() {
        assert!(t.elapsed() < Duration::from_secs(20), "no decision");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Later, so that a fresh grant would end later.
    std::thread::sleep(Duration::from_millis(20));
    for payload in [&first, &same_id_and_nonce, &no_validity] {
        topic.publish(b"svc-1", payload.clone()).unwrap();
    }
    topic.close();
    engine.join().unwrap();
    let out = collector.take_snapshot();
    let by_digest = |payload: &[u8]| -> Vec<(Reason, u64, u64)> {
        out.decisions
            .iter()
            .map(|(_, d)| open_decision(d, &Default::default()).unwrap())
            .filter(|d| d.intent_digest().0 == intent_digest(payload))
            .map(|d| (d.reason(), d.issued_at_us(), d.valid_until_us()))
            .collect()
    };
    let again = by_digest(&first);
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again.iter().all(|d| d.0 == Reason::Authorized), "{again:?}");
    assert!(again[1].1 > again[0].1, "{again:?}");
    // The same end, not just no later: an executor remembers a consumed
    // decision until its end, so a redelivery ending sooner would free the
    // first decision for a second use once it had been consumed.
    assert_eq!(
        again[1].2, again[0].2,
        "another end the second time: {again:?}"
    );
    let replay = by_digest(&same_id_and_nonce);
    assert_eq!(replay.len(), 1);
    assert_eq!(replay[0].0, Reason::ReplayedNonce);
    let none = by_digest(&no_validity);
    assert_eq!(none.len(), 1);
    assert_eq!(none[0].0, Reason::Malformed);
}

/// The engine's own ceiling on validity cuts what the rule would grant
/// (the test policy's rule grants one minute of the five requested).
#[test]
fn no_authorization_outlasts_the_engines_max_validity() {
    let run = run(
        Config {
            max_validity: Duration::from_secs(10),
            ..config()
        },
        &[("svc-1", Spec::new(1).signed())],
        Some(policy()),
    );
    let d = &run.decisions()[&id(1)][0];
    let d = open_decision(d, &Default::default()).unwrap();
    assert_eq!(d.reason(), Reason::Authorized);
    // Granted when policy decided, so it ends the engine's pipeline time
    // (well under a second) short of ten seconds after the seal's clock.
    let validity = d.valid_until_us() - d.issued_at_us();
    assert!(
        (9_000_000..=10_000_000).contains(&validity),
        "{validity} µs"
    );
}

/// Times at the ends of `u64`, as anyone can sign them: denied or capped,
/// never overflowed into a wrong answer.
#[test]
fn extreme_timestamps_are_denied_or_capped_not_overflowed() {
    let now = now_us();
    let cases = [
        (
            1,
            Spec {
                issued_at_us: u64::MAX,
                deadline_us: u64::MAX,
                ..Spec::new(1)
            },
            Reason::NotYetValid,
        ),
        (
            2,
            Spec {
                issued_at_us: 0,
                ..Spec::new(2)
            },
            Reason::Expired,
        ),
        (
            3,
            Spec {
                deadline_us: 0,
                ..Spec::new(3)
            },
            Reason::DeadlineExceeded,
        ),
        (
            4,
            Spec {
                deadline_us: u64::MAX,
                validity_us: u64::MAX,
                ..Spec::new(4)
            },
            Reason::Authorized,
        ),
        (
            5,
            Spec {
                issued_at_us: now + 20_000_000,
                deadline_us: u64::MAX,
                validity_us: u64::MAX,
                ..Spec::new(5)
            },
            Reason::Authorized,
        ),
    ];
    let records: Vec<(&str, Vec<u8>)> = cases
        .iter()
        .map(|(_, s, _)| ("svc-1", s.signed()))
        .collect();
    let run = run(
        Config {
            max_validity: Duration::from_secs(10),
            ..config()
        },
        &records,
        Some(policy()),
    );
    for (n, _, reason) in &cases {
        assert_eq!(run.reason_of(*n), *reason, "intent {n}");
    }
    let decisions = run.decisions();
    for n in [4, 5] {
        let d = open_decision(&decisions[&id(n)][0], &Default::default()).unwrap();
        let validity = d.valid_until_us() - d.issued_at_us();
        assert!(
            (9_000_000..=10_000_000).contains(&validity),
            "intent {n}: {validity} µs"
        );
    }
    assert_eq!(run.verify_lineage(), cases.len() as u64);
}

#[test]
fn a_stall_inside_the_pipeline_turns_into_deadline_denies() {
    let now = now_us();
    let tight = Spec {
        deadline_us: now + 150_000,
        ..Spec::new(1)
    }
    .signed();
    let loose = Spec::new(2).signed();
    let run = run(
        Config {
            verify_stall: Duration::from_millis(400),
            ..config()
        },
        &[("svc-1", tight), ("svc-1", loose)],
        Some(policy()),
    );
    assert_eq!(run.reason_of(1), Reason::DeadlineExceeded);
    assert_eq!(run.reason_of(2), Reason::Authorized);
}

/// A backlog drains without sheds while the pipeline keeps moving, even
/// in steps longer than the old 20 ms default of `shed_after`: here every
/// verify group takes 25 ms or more (with one batch queued between
/// stages), so a full batch waits about that long for room each time.
/// Only a pipeline stuck for `shed_after` sheds. (`shed_after` is 400 ms
/// here, not the default 100: a group of two batches stalls 50 ms, and on
/// a loaded 2-core CI machine a thread can wait tens of milliseconds more
/// for a CPU; the test failed once that way with the default.)
#[test]
fn a_backlog_drains_without_sheds_through_steps_shorter_than_shed_after() {
    const N: u64 = 400;
    let records: Vec<(&str, Vec<u8>)> = (0..N).map(|i| ("svc-1", Spec::new(i).signed())).collect();
    let run = run(
        Config {
            max_batch: 8,
            queue_batches: 1,
            verify_stall: Duration::from_millis(25),
            shed_after: Duration::from_millis(400),
            ..config()
        },
        &records,
        Some(policy()),
    );
    assert_eq!(run.stats.shed_intents, 0, "a moving backlog was shed");
    for i in 0..N {
        assert_eq!(run.reason_of(i), Reason::Authorized, "intent {i}");
    }
}

/// However verification is scheduled (groups, lanes, pool threads), policy
/// must see a partition's intents in the order they were read, or the
/// second user of a nonce could win over the first. (Checked with policy
/// taking batches as lanes finish them: it failed 5 runs in 6.)
#[test]
fn the_first_user_of_a_nonce_wins_however_verification_groups_finish() {
    const PAIRS: u64 = 2_000;
    let records: Vec<(&str, Vec<u8>)> = (0..PAIRS)
        .flat_map(|i| {
            let first = Spec {
                nonce: Some(2 * i),
                ..Spec::new(2 * i)
            };
            let second = Spec {
                nonce: Some(2 * i),
                ..Spec::new(2 * i + 1)
            };
            [("svc-1", first.signed()), ("svc-1", second.signed())]
        })
        .collect();
    let run = run(
        Config {
            // Small batches, so that pairs straddle batches and groups
            // of several sizes meet the two verify lanes; a stall per
            // batch makes a lane holding a larger group finish after the
            // other lane's later one.
            max_batch: 5,
            verify_stall: Duration::from_millis(1),
            shed_after: Duration::from_secs(60),
            ..config()
        },
        &records,
        Some(policy()),
    );
    for i in 0..PAIRS {
        assert_eq!(
            run.reason_of(2 * i),
            Reason::Authorized,
            "first of pair {i}"
        );
        assert_eq!(
            run.reason_of(2 * i + 1),
            Reason::ReplayedNonce,
            "second of pair {i}"
        );
    }
    assert_eq!(run.verify_lineage(), 2 * PAIRS);
}

/// `shutdown` stops reading but decides everything already read, even
/// while one verify lane is paused and the other has filled policy's
/// reordering with later batches, so that decode waits for a permit.
#[test]
fn shutdown_decides_everything_read_while_a_verify_lane_is_paused() {
    const N: u64 = 200;
    let topic = Topic::new(PARTITIONS, 100_000);
    for i in 0..N {
        topic.publish(b"svc-1", Spec::new(i).signed()).unwrap();
    }
    let (engine, collector) = start(
        Config {
            max_batch: 4,
            verify_pause: Some((40, Duration::from_secs(3))),
            shed_after: Duration::from_secs(60),
            ..config()
        },
        &topic,
    );
    // Into the pause, the other lane uses every permit (on a busy machine
    // that takes a while: look until well inside the pause). Its batches
    // wait in policy for the paused lane's: the policy queue's gauge
    // counts them (more than its channel's 4 can hold), or an operator
    // would see a short queue where the pipeline is held up.
    let looking = Instant::now();
    let mut queues = engine.stats().queues;
    while queues[2] <= 4 && looking.elapsed() < Duration::from_millis(2_500) {
        std::thread::sleep(Duration::from_millis(10));
        queues = engine.stats().queues;
    }
    assert!(
        queues[2] > 4,
        "policy holds batches, its gauge says {queues:?}"
    );
    let stats = engine.shutdown().unwrap();
    let out = collector.take_snapshot();
    assert!(stats.intents_in > 0 && stats.intents_in < N, "{stats:?}");
    assert_eq!(stats.decisions(), stats.intents_in, "read but not decided");
    assert_eq!(out.decisions.len() as u64, stats.intents_in);
    let ids: std::collections::HashSet<_> = out.decisions.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), out.decisions.len(), "an intent decided twice");
}

/// An engine reading `topic` with the test policy and trust store, and
/// the collector it emits to.
fn start(config: Config, topic: &Topic) -> (Engine, Collector) {
    let collector = Collector::new();
    let engine = start_on(config, topic.consumer(), collector.clone());
    (engine, collector)
}

/// An engine (key seed 42) with the test policy and trust store, on any
/// source and sink.
fn start_on<S, K>(config: Config, source: S, sink: K) -> Engine
where
    S: warrant_engine::transport::Source + 'static,
    K: warrant_engine::transport::Sink + 'static,
{
    let store = Arc::new(PolicyStore::new());
    store.install(policy());
    Engine::start(
        config,
        source,
        sink,
        EngineKey::from_seed([42; 32]),
        Arc::new(ArcSwap::from_pointee(trust())),
        store,
    )
    .unwrap()
}

/// Runs an engine on a live topic while `publish` feeds it, then closes
/// the topic and returns the engine's stats.
fn run_live(config: Config, publish: impl FnOnce(&Topic)) -> StatsSnapshot {
    let topic = Topic::new(PARTITIONS, 100_000);
    let (engine, collector) = start(config, &topic);
    publish(&topic);
    topic.close();
    let stats = engine.join().unwrap();
    assert_eq!(
        collector.take_snapshot().decisions.len() as u64,
        stats.intents_in
    );
    stats
}

/// The batch rules: a batch closes when it holds `max_batch` records, or
/// when `linger` has passed since its first record, and until then it
/// takes in whatever arrives. The gaps between publishes are many times
/// the linger (or a small part of it), so a loaded machine does not change
/// the outcome.
#[test]
fn batches_close_on_size_or_on_the_linger() {
    // Size: a backlog of 40 in batches of at most 8, however long the linger.
    let backlog = run(
        Config {
            max_batch: 8,
            linger: Duration::from_secs(10),
            ..config()
        },
        &(0..40)
            .map(|i| ("svc-1", Spec::new(i).signed()))
            .collect::<Vec<_>>(),
        Some(policy()),
    );
    assert_eq!(backlog.stats.batches, 5, "{:?}", backlog.stats.batch_sizes);
    let at_most_8 = backlog
        .stats
        .batch_sizes
        .bounds
        .iter()
        .position(|&b| b == 8)
        .unwrap();
    assert_eq!(backlog.stats.batch_sizes.cumulative[at_most_8], 5);

    // Size, while lingering: a batch that fills up during an hour's linger
    // closes then, not some part of an hour later.
    let topic = Topic::new(PARTITIONS, 100_000);
    let (engine, _collector) = start(
        Config {
            max_batch: 8,
            linger: Duration::from_secs(3600),
            ..config()
        },
        &topic,
    );
    for i in 0..8 {
        topic.publish(b"svc-1", Spec::new(i).signed()).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let waiting = Instant::now();
    while engine.stats().decisions() < 8 && waiting.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(engine.stats().decisions(), 8, "a full batch kept lingering");
    topic.close();
    assert_eq!(engine.join().unwrap().batches, 1);

    // `n` intents `gap` apart under `linger`: (intents read, batches).
    let trickle = |linger: Duration, n: u64, gap: Duration| {
        let stats = run_live(Config { linger, ..config() }, |topic| {
            for i in 0..n {
                topic.publish(b"svc-1", Spec::new(i).signed()).unwrap();
                std::thread::sleep(gap);
            }
        });
        (stats.intents_in, stats.batches)
    };
    // Linger: intents 20 ms apart all land in the batch the first opened,
    // which stays open for 2 s.
    let gathered = trickle(Duration::from_secs(2), 10, Duration::from_millis(20));
    assert_eq!(gathered, (10, 1));
    // Linger: intents 300 ms apart each close their own batch, 5 ms after
    // it opened.
    let apart = trickle(Duration::from_millis(5), 4, Duration::from_millis(300));
    assert_eq!(apart, (4, 4));
}

#[test]
fn exactly_one_decision_per_intent_under_concurrent_load() {
    const PRODUCERS: u64 = 4;
    const EACH: u64 = 1_500;
    let topic = Topic::new(PARTITIONS, 256);
    let collector = Collector::new();
    let key = EngineKey::from_seed([42; 32]);
    let engine_public = key.public_key();
    let store = Arc::new(PolicyStore::new());
    store.install(policy());
    let engine = Engine::start(
        Config {
            max_batch: 64,
            ..config()
        },
        topic.consumer(),
        collector.clone(),
        key,
        Arc::new(ArcSwap::from_pointee(trust())),
        store,
    )
    .unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|t| {
            let topic = topic.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let n = t * EACH + i;
                    let (principal, signer) = if n.is_multiple_of(2) {
                        ("svc-1", 1)
                    } else {
                        ("svc-2", 2)
                    };
                    let mut bytes = Spec {
                        principal,
                        signer,
                        ..Spec::new(n)
                    }
                    .signed();
                    if n.is_multiple_of(7) {
                        bytes = forge(&bytes);
                    }
                    // A full partition pushes back: retry, as a producer would.
                    while topic.publish(principal.as_bytes(), bytes.clone()).is_err() {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    topic.close();
    let stats = engine.join().unwrap();
    let run = Run {
        out: collector.take_snapshot(),
        stats,
        engine_public,
    };
    let total = PRODUCERS * EACH;
    let decisions = run.decisions();
    assert_eq!(decisions.len() as u64, total);
    let mut authorized = 0;
    for n in 0..total {
        let ds = &decisions[&id(n)];
        assert_eq!(ds.len(), 1, "intent {n}");
        let reason = open_decision(&ds[0], &Default::default()).unwrap().reason();
        if n.is_multiple_of(7) {
            assert!(
                matches!(reason, Reason::BadSignature | Reason::Overloaded),
                "forged intent {n}: {reason:?}"
            );
        } else {
            assert!(
                matches!(reason, Reason::Authorized | Reason::Overloaded),
                "valid intent {n}: {reason:?}"
            );
            authorized += u64::from(reason == Reason::Authorized);
        }
    }
    assert_eq!(authorized, run.stats.count(Reason::Authorized));
    assert_eq!(run.verify_lineage(), total);
    assert!(topic.snapshot().is_empty());
}

#[test]
fn tampering_with_a_decision_or_lineage_record_is_detected() {
    let valid = Spec::new(1).signed();
    let run = run(config(), &[("svc-1", valid.clone())], Some(policy()));
    let digest = intent_digest(&valid);
    let mut keys = EngineKeys::new();
    keys.add(&run.engine_public).unwrap();
    let decision = &run.decisions()[&id(1)][0];
    let at = now_us() + 1_000;
    let original = verify_decision(decision, &keys, &digest, AUDIENCE, at).unwrap();
    // Flip every bit of every byte: no altered decision authorizes anything
    // but what the original did (flatbuffer padding may flip harmlessly).
    let fields = |b: &[u8]| {
        open_decision(b, &Default::default()).map(|d| {
            format!(
                "{:?}{:?}{:?}{:?}{:?}{}{}{:?}{:?}{}{}{}{}",
                d.intent_id(),
                d.intent_digest(),
                d.verdict(),
                d.reason(),
                d.rule_id(),
                d.issued_at_us(),
                d.valid_until_us(),
                d.audience(),
                d.policy_hash(),
                d.policy_version(),
                d.lineage_partition(),
                d.lineage_sequence(),
                d.leaf_index()
            )
        })
    };
    let before = fields(decision).unwrap();
    let mut accepted_changes = 0;
    for i in 0..decision.len() {
        for bit in 0..8 {
            let mut t = decision.clone();
            t[i] ^= 1 << bit;
            if let Ok(a) = verify_decision(&t, &keys, &digest, AUDIENCE, at) {
                assert_eq!(a, original);
                assert_eq!(fields(&t).unwrap(), before, "byte {i} bit {bit}");
                accepted_changes += 1;
            }
        }
    }
    assert!(accepted_changes < decision.len(), "{accepted_changes}");

    // Lineage: any flipped byte of the record breaks the log.
    let (p, record) = run
        .out
        .lineage
        .iter()
        .find(|(_, b)| b.get(4..8) == Some(b"WLR1"))
        .unwrap()
        .clone();
    let checkpoints: Vec<Vec<u8>> = run
        .out
        .lineage
        .iter()
        .filter(|(_, b)| b.get(4..8) == Some(b"WCP1"))
        .map(|(_, b)| b.clone())
        .collect();
    verify_log(
        p,
        std::slice::from_ref(&record),
        &checkpoints,
        &[run.engine_public],
    )
    .unwrap();
    for i in 0..record.len() {
        let mut t = record.clone();
        t[i] ^= 0x01;
        assert!(
            verify_log(p, &[t], &checkpoints, &[run.engine_public]).is_err(),
            "byte {i}"
        );
    }
}

/// A sink that is never available.
struct Down;

impl warrant_engine::transport::Sink for Down {
    fn send(&mut self, _: &OutBatch) -> Result<(), warrant_engine::transport::TransportError> {
        Err(warrant_engine::transport::TransportError::Unavailable(
            "broker down".into(),
        ))
    }
}

#[test]
fn a_sink_that_stays_down_ends_the_drain_with_an_error_and_commits_nothing() {
    let topic = Topic::new(PARTITIONS, 100);
    topic.publish(b"svc-1", Spec::new(1).signed()).unwrap();
    topic.close();
    let engine = start_on(config(), topic.consumer(), Down);
    let err = engine.join().unwrap_err();
    assert!(err.to_string().contains("broker down"), "{err}");
    // Nothing was acknowledged, so nothing was committed: the intent is
    // still there to be read again, and the next consumer reads it (it
    // starts at the committed offset, not where the last one stopped).
    assert_eq!(topic.snapshot().len(), 1);
    let collector = Collector::new();
    let engine = start_on(config(), topic.consumer(), collector.clone());
    engine.join().unwrap();
    assert_eq!(collector.take_snapshot().decisions.len(), 1);
    assert!(topic.snapshot().is_empty());
}

/// An engine restarted on the same embedded topic with the lineage the
/// first one wrote (`Topic::consumer_resuming`) keeps its replay memory and
/// its chains, as a Kafka instance taking partitions over does: the
/// intent redelivered gets its first verdict, valid until the same
/// instant; another intent reusing its nonce is a replay; and the two
/// runs' lineage is one log per partition that verifies. Started with a
/// plain `consumer()`, the same engine has no memory (the contrast).
#[test]
fn a_restarted_engine_keeps_its_replay_memory_and_its_chains() {
    let first = Spec::new(1).signed();
    let reuse = Spec {
        nonce: Some(1),
        ..Spec::new(12)
    }
    .signed();
    let key = EngineKey::from_seed([42; 32]);
    let engine_public = key.public_key();
    let start = |source: warrant_engine::transport::embedded::Consumer, sink: &Collector| {
        start_on(config(), source, sink.clone())
    };
    let valid_until = |d: &[u8]| {
        open_decision(d, &Default::default())
            .unwrap()
            .valid_until_us()
    };
    let topic = Topic::new(PARTITIONS, 100);
    let log = Collector::new();
    let engine = start(topic.consumer(), &log);
    topic.publish(b"svc-1", first.clone()).unwrap();
    while log.take_snapshot().decisions.is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    engine.shutdown().unwrap();
    let until = valid_until(&log.take_snapshot().decisions[0].1);

    // The restart: the same intent again (redelivered), and another
    // intent with its nonce.
    topic.publish(b"svc-1", first).unwrap();
    topic.publish(b"svc-1", reuse).unwrap();
    topic.close();
    let fresh = Collector::new();
    let resumed = start(topic.consumer_resuming(log.take_snapshot().lineage), &log);
    resumed.join().unwrap();
    let out = log.take_snapshot();
    assert_eq!(out.decisions.len(), 3);
    let of = |n: u64| -> Vec<Vec<u8>> {
        out.decisions
            .iter()
            .filter(|(i, _)| *i == id(n))
            .map(|(_, d)| d.clone())
            .collect()
    };
    let again = of(1);
    assert_eq!(again.len(), 2);
    for d in &again {
        assert_eq!(
            open_decision(d, &Default::default()).unwrap().reason(),
            Reason::Authorized
        );
        assert_eq!(valid_until(d), until, "a redelivery never extends");
    }
    assert_eq!(
        open_decision(&of(12)[0], &Default::default())
            .unwrap()
            .reason(),
        Reason::ReplayedNonce
    );
    let mut records = 0;
    for (p, f) in by_partition(&out.lineage) {
        records += verify_log(p, &f.records, &f.checkpoints, &[engine_public])
            .unwrap_or_else(|e| panic!("partition {p}: {e}"))
            .records;
    }
    assert_eq!(records, 3, "one chain per partition across both runs");

    // Without the lineage, a new engine remembers nothing: the reused
    // nonce would pass (what `consumer_resuming` exists to prevent).
    let topic = Topic::new(PARTITIONS, 100);
    topic
        .publish(
            b"svc-1",
            Spec {
                nonce: Some(1),
                ..Spec::new(12)
            }
            .signed(),
        )
        .unwrap();
    topic.close();
    start(topic.consumer(), &fresh).join().unwrap();
    assert_eq!(
        open_decision(&fresh.take_snapshot().decisions[0].1, &Default::default())
            .unwrap()
            .reason(),
        Reason::Authorized
    );
}

/// A source whose consumer group assigns it a partition the engine was not
/// started with (the topic grew): the engine must stop, not deny that
/// partition's intents "malformed" and commit them. (`Resumed`, below,
/// handing over that one partition.)
#[test]
fn a_partition_beyond_the_count_the_engine_started_with_stops_it() {
    let topic = Topic::new(PARTITIONS, 1_000);
    // Records the same poll hands on: none may be sealed on a fresh chain
    // or committed.
    for n in 0..20 {
        topic.publish(b"svc-1", Spec::new(n).signed()).unwrap();
    }
    let store = Arc::new(PolicyStore::new());
    store.install(policy());
    let collector = Collector::new();
    let engine = Engine::start(
        Config {
            partitions: PARTITIONS,
            ..Config::default()
        },
        Resumed {
            inner: topic.consumer(),
            handover: None,
            tails: vec![(
                PARTITIONS + 1,
                warrant_engine::lineage::LineageTail::empty(),
            )],
        },
        collector.clone(),
        EngineKey::from_seed([42; 32]),
        Arc::new(ArcSwap::from_pointee(trust())),
        store,
    )
    .unwrap();
    let err = engine.join().expect_err("the engine must stop");
    let message = err.to_string();
    assert!(
        message.contains(&format!("partition {} was assigned", PARTITIONS + 1)),
        "{message}"
    );
    let out = collector.take_snapshot();
    assert!(
        out.decisions.is_empty() && out.lineage.is_empty(),
        "{} decisions, {} lineage frames",
        out.decisions.len(),
        out.lineage.len()
    );
    assert_eq!(topic.snapshot().len(), 20, "records were committed");
}

/// A source that, the first time the engine asks it to keep its place
/// while the pipeline is full, takes back every record the engine holds
/// (as a consumer group does with a revoked partition's).
struct TakesBack {
    inner: warrant_engine::transport::embedded::Consumer,
    calls: Arc<std::sync::atomic::AtomicUsize>,
    taken: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl warrant_engine::transport::Source for TakesBack {
    fn poll(
        &mut self,
        out: &mut Vec<warrant_engine::transport::InRecord>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, warrant_engine::transport::TransportError> {
        self.inner.poll(out, max, timeout)
    }

    fn commit(
        &mut self,
        partition: u32,
        offset: u64,
    ) -> Result<(), warrant_engine::transport::TransportError> {
        self.inner.commit(partition, offset)
    }

    fn keep_alive(
        &mut self,
        held: &mut Vec<warrant_engine::transport::InRecord>,
    ) -> Result<(), warrant_engine::transport::TransportError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            self.taken
                .lock()
                .unwrap()
                .extend(held.drain(..).map(|r| r.offset));
        }
        Ok(())
    }
}

/// A sink that holds every `send` until `open` is set.
struct Gated {
    inner: Collector,
    open: Arc<std::sync::atomic::AtomicBool>,
}

impl warrant_engine::transport::Sink for Gated {
    fn send(&mut self, batch: &OutBatch) -> Result<(), warrant_engine::transport::TransportError> {
        while !self.open.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.inner.send(batch)
    }
}

/// While the sink holds everything up, ingest keeps calling the source's
/// `keep_alive` (a Kafka consumer must be polled to keep its partitions),
/// and records the source takes back meanwhile leave the engine's hands
/// undecided: every other intent gets exactly one decision, and the batch
/// numbering has no gap (a gap would hold back every commit after it).
#[test]
fn a_full_pipeline_keeps_the_source_alive_and_gives_back_what_it_revokes() {
    let topic = Topic::new(PARTITIONS, 100_000);
    const N: u64 = 2_000;
    for n in 0..N {
        topic.publish(b"svc-1", Spec::new(n).signed()).unwrap();
    }
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let taken = Arc::new(std::sync::Mutex::new(Vec::new()));
    let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = Collector::new();
    let engine = start_on(
        Config {
            max_batch: 16,
            queue_batches: 1,
            emit_queue_batches: 1,
            ..config()
        },
        TakesBack {
            inner: topic.consumer(),
            calls: Arc::clone(&calls),
            taken: Arc::clone(&taken),
        },
        Gated {
            inner: collector.clone(),
            open: Arc::clone(&open),
        },
    );
    let until = Instant::now() + Duration::from_secs(60);
    while calls.load(std::sync::atomic::Ordering::SeqCst) < 3 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "ingest held a batch for a minute without keeping the source alive"
    );
    open.store(true, std::sync::atomic::Ordering::SeqCst);
    topic.close();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _sent = done_tx.send(engine.join());
    });
    let stats = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the engine drains (no gap in its batch numbers)")
        .unwrap();
    // Every offset was committed (the commit watermark follows batch
    // numbers: a gap would hold back every commit after it).
    assert!(topic.snapshot().is_empty(), "uncommitted records remain");
    let taken = taken.lock().unwrap().clone();
    assert!(!taken.is_empty(), "the source took nothing back");
    let out = collector.take_snapshot();
    let mut decided: HashMap<[u8; 16], usize> = HashMap::new();
    for (id, _) in &out.decisions {
        *decided.entry(*id).or_default() += 1;
    }
    // svc-1's intents are all on one partition: offset n holds intent n.
    for n in 0..N {
        let want = usize::from(!taken.contains(&n));
        assert_eq!(
            decided.get(&id(n)).copied().unwrap_or(0),
            want,
            "intent {n}"
        );
    }
    assert_eq!(stats.decisions(), N - taken.len() as u64);
}

/// What `Handover::release` answered.
type Released = Arc<std::sync::Mutex<Option<Result<Vec<(u32, u64)>, String>>>>;

/// A source that, when the engine drops it, hands its partitions back as a
/// Kafka consumer's close does (through `Handover::release`).
struct ReleasesOnDrop {
    inner: warrant_engine::transport::embedded::Consumer,
    handover: Option<Arc<dyn warrant_engine::transport::Handover>>,
    released: Released,
}

impl warrant_engine::transport::Source for ReleasesOnDrop {
    fn poll(
        &mut self,
        out: &mut Vec<warrant_engine::transport::InRecord>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, warrant_engine::transport::TransportError> {
        self.inner.poll(out, max, timeout)
    }

    fn commit(
        &mut self,
        partition: u32,
        offset: u64,
    ) -> Result<(), warrant_engine::transport::TransportError> {
        self.inner.commit(partition, offset)
    }

    fn attach(&mut self, handover: Arc<dyn warrant_engine::transport::Handover>) {
        self.handover = Some(handover);
    }
}

impl Drop for ReleasesOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.handover {
            *self.released.lock().unwrap() = Some(h.release(Duration::from_secs(30)));
        }
    }
}

/// An engine whose drain failed (its sink never came back) has nothing
/// left that could be written: handing its partitions back when the source
/// closes succeeds, instead of failing (which the Kafka source answers by
/// aborting the process). The drain's own error still reaches `join`.
#[test]
fn a_source_closed_after_a_failed_drain_hands_its_partitions_back() {
    let topic = Topic::new(PARTITIONS, 100);
    topic.publish(b"svc-1", Spec::new(1).signed()).unwrap();
    topic.close();
    let released: Released = Arc::default();
    let engine = start_on(
        config(),
        ReleasesOnDrop {
            inner: topic.consumer(),
            handover: None,
            released: Arc::clone(&released),
        },
        Down,
    );
    let err = engine.join().unwrap_err();
    assert!(err.to_string().contains("broker down"), "{err}");
    let released = released.lock().unwrap().clone();
    // Nothing was acknowledged: nothing to commit.
    assert_eq!(released, Some(Ok(Vec::new())));
}

/// A source that, on its first poll, hands the engine every partition with
/// the given lineage tails (as a Kafka consumer group's assignment does
/// with what it read back from the lineage topic).
struct Resumed {
    inner: warrant_engine::transport::embedded::Consumer,
    handover: Option<Arc<dyn warrant_engine::transport::Handover>>,
    tails: Vec<(u32, warrant_engine::lineage::LineageTail)>,
}

impl warrant_engine::transport::Source for Resumed {
    fn poll(
        &mut self,
        out: &mut Vec<warrant_engine::transport::InRecord>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize, warrant_engine::transport::TransportError> {
        if let Some(h) = &self.handover {
            for (p, tail) in self.tails.drain(..) {
                h.acquire(p, tail);
            }
        }
        self.inner.poll(out, max, timeout)
    }

    fn commit(
        &mut self,
        partition: u32,
        offset: u64,
    ) -> Result<(), warrant_engine::transport::TransportError> {
        self.inner.commit(partition, offset)
    }

    fn attach(&mut self, handover: Arc<dyn warrant_engine::transport::Handover>) {
        self.handover = Some(handover);
    }
}

/// Someone who can write to the lineage topic appends, after its last
/// checkpoint, a well-chained record claiming that a pending intent was
/// authorized for ten years. The next owner of the partition adopts the
/// unsigned tail (it cannot tell it from a crashed predecessor's), but the
/// intent's decision must never last longer than its rule grants.
#[test]
fn a_forged_lineage_record_cannot_lengthen_an_authorization() {
    use warrant_engine::lineage::{Entry, LineageTail, LineageWriter, ReplayWindow, resume};
    use warrant_engine::replay::NonceKey;
    use warrant_schemas::wire::Verdict;
    let now = now_us();
    let spec = Spec::new(1);
    let intent = spec.signed();
    let p = partition_for(spec.principal.as_bytes(), PARTITIONS);
    let ten_years = 10 * 365 * 86_400 * 1_000_000u64;
    let forged = LineageWriter::new(p).append(&Entry {
        decision_digest: [7; 32],
        intent_id: id(1),
        parent_id: None,
        verdict: Verdict::Authorize,
        reason: Reason::Authorized,
        issued_at_us: now,
        replay: Some((
            NonceKey::new(spec.principal, &id(1 + 1_000_000)).to_bytes(),
            now + 60_000_000,
        )),
        intent_digest: intent_digest(&intent),
        valid_until_us: now + ten_years,
    });
    let window = ReplayWindow {
        now_us: now,
        since_us: now.saturating_sub(600_000_000),
    };
    let tail = resume(p, &[forged], true, &[], window).unwrap();
    let tails = (0..PARTITIONS)
        .map(|q| {
            (
                q,
                if q == p {
                    tail.clone()
                } else {
                    LineageTail::empty()
                },
            )
        })
        .collect();

    let topic = Topic::new(PARTITIONS, 100);
    topic.publish(spec.principal.as_bytes(), intent).unwrap();
    topic.close();
    let store = Arc::new(PolicyStore::new());
    store.install(policy());
    let collector = Collector::new();
    let engine = Engine::start(
        config(),
        Resumed {
            inner: topic.consumer(),
            handover: None,
            tails,
        },
        collector.clone(),
        EngineKey::from_seed([42; 32]),
        Arc::new(ArcSwap::from_pointee(trust())),
        store,
    )
    .unwrap();
    engine.join().unwrap();
    let out = collector.take_snapshot();
    assert_eq!(out.decisions.len(), 1);
    let d = open_decision(&out.decisions[0].1, &Default::default()).unwrap();
    // The rule grants one minute.
    assert!(
        d.reason() != Reason::Authorized || d.valid_until_us() <= d.issued_at_us() + 60_000_000,
        "{:?} until {} µs after its issue",
        d.reason(),
        d.valid_until_us() - d.issued_at_us()
    );
    assert_eq!(d.reason(), Reason::ReplayedNonce);
}

/// A trickle into a stalled pipeline is shed too: a batch that never
/// fills (one intent every 20 ms, a whole verify stage paused) is denied
/// "overloaded" once it has waited `shed_after`, instead of waiting,
/// undecided, for as long as the stall lasts. (Before, only a full batch
/// was ever shed: this run shed nothing.)
#[test]
fn a_trickle_into_a_stalled_pipeline_is_shed_not_held() {
    const N: u64 = 60;
    let topic = Topic::new(PARTITIONS, 100_000);
    let (engine, collector) = start(
        Config {
            // One verify lane: the pause stops all verification.
            layout: Layout::unpinned(1),
            queue_batches: 1,
            verify_pause: Some((0, Duration::from_secs(6))),
            shed_after: Duration::from_millis(50),
            ..config()
        },
        &topic,
    );
    for i in 0..N {
        topic.publish(b"svc-1", Spec::new(i).signed()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still inside the pause (and before the topic closes, which sheds
    // whatever ingest holds anyway): the trickle has been shed already.
    let looking = Instant::now();
    while engine.stats().shed_intents == 0 && looking.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        engine.stats().shed_intents > 0,
        "the trickle waited on the stalled pipeline: {:?}",
        engine.stats()
    );
    topic.close();
    let stats = engine.join().unwrap();
    let out = collector.take_snapshot();
    assert_eq!(stats.intents_in, N);
    assert_eq!(out.decisions.len() as u64, N, "every intent decided once");
    let overloaded = stats.by_reason[Reason::Overloaded.0 as usize];
    assert!(
        overloaded > 0 && stats.shed_intents == overloaded,
        "a stalled pipeline held a trickle: {stats:?}"
    );
}

/// Acknowledges sends that hold only shed decisions ("overloaded") and
/// fails for good on the first that holds any other.
struct OnlyShed {
    acked: Arc<std::sync::Mutex<Vec<[u8; 16]>>>,
}

impl warrant_engine::transport::Sink for OnlyShed {
    fn send(&mut self, b: &OutBatch) -> Result<(), warrant_engine::transport::TransportError> {
        let shed_only = b.decisions.iter().all(|(_, d)| {
            open_decision(d, &Default::default()).map(|d| d.reason()) == Ok(Reason::Overloaded)
        });
        if !shed_only {
            return Err(warrant_engine::transport::TransportError::Failed(
                "a decision that is not a shed".into(),
            ));
        }
        self.acked
            .lock()
            .unwrap()
            .extend(b.decisions.iter().map(|(id, _)| *id));
        Ok(())
    }
}

/// Shed batches overtake the batch held in verification and reach the
/// sink first. Their offsets come after the held batch's in the same
/// partition, so committing them would commit the held intents too, whose
/// decisions never reach the sink here: lost. Every record whose decision
/// the sink did not acknowledge must still be in the topic.
#[test]
fn offsets_are_committed_only_behind_every_earlier_batch() {
    const N: u64 = 40;
    let topic = Topic::new(PARTITIONS, 100_000);
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let engine = start_on(
        Config {
            layout: Layout::unpinned(1),
            queue_batches: 1,
            max_batch: 4,
            verify_pause: Some((0, Duration::from_secs(1))),
            shed_after: Duration::from_millis(20),
            ..config()
        },
        topic.consumer(),
        OnlyShed {
            acked: acked.clone(),
        },
    );
    let payloads: Vec<Vec<u8>> = (0..N).map(|i| Spec::new(i).signed()).collect();
    for p in &payloads {
        topic.publish(b"svc-1", p.clone()).unwrap();
    }
    let err = engine.join().unwrap_err();
    assert!(err.to_string().contains("not a shed"), "{err}");
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "no shed batch reached the sink before the held one: nothing tested"
    );
    let left: std::collections::HashSet<Vec<u8>> =
        topic.snapshot().into_iter().map(|r| r.payload).collect();
    for (i, p) in payloads.iter().enumerate() {
        if !acked.contains(&id(i as u64)) {
            assert!(
                left.contains(p),
                "intent {i} was committed but never acknowledged"
            );
        }
    }
}

/// A sink that holds its first send for a while, then fails for good.
struct DiesUnderLoad {
    first: Option<Duration>,
}

impl warrant_engine::transport::Sink for DiesUnderLoad {
    fn send(&mut self, _: &OutBatch) -> Result<(), warrant_engine::transport::TransportError> {
        if let Some(hold) = self.first.take() {
            std::thread::sleep(hold);
        }
        Err(warrant_engine::transport::TransportError::Failed(
            "sink died".into(),
        ))
    }
}

/// Overloaded with the shallowest queues (every stage and the shed path
/// full behind a sink that holds its first send), the sink then dies: the
/// engine must stop and report it, not hang with ingest waiting to shed a
/// batch that seal, blocked on the dead sink's queue, never takes.
#[test]
fn a_sink_dying_under_overload_stops_the_engine() {
    for round in 0..5 {
        let topic = Topic::new(PARTITIONS, 100_000);
        for i in 0..3_000 {
            topic.publish(b"svc-1", Spec::new(i).signed()).unwrap();
        }
        let engine = start_on(
            Config {
                max_batch: 8,
                queue_batches: 1,
                emit_queue_batches: 1,
                shed_after: Duration::ZERO,
                // Verification stalled: every batch past the first few is
                // shed, and the shed queue is full when the sink dies.
                layout: Layout::unpinned(1),
                verify_pause: Some((0, Duration::from_secs(2))),
                ..config()
            },
            topic.consumer(),
            DiesUnderLoad {
                first: Some(Duration::from_millis(300)),
            },
        );
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _sent = tx.send(engine.join());
        });
        // A liveness bound, not a speed one: a stopped engine joins in
        // well under a second.
        let joined = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("round {round}: the engine hung after its sink died"));
        let err = joined.expect_err("a dead sink is an error");
        assert!(err.to_string().contains("sink died"), "{err}");
        // Nothing acknowledged, nothing committed.
        assert_eq!(topic.snapshot().len(), 3_000);
    }
}

/// Anyone can republish a signed intent in another wrapper (a trailing
/// byte, another builder's layout): the signed bytes and the signature are
/// unchanged, so it is the same intent. It must get the same digest and so
/// the same decision as a redelivery does, not a "replayed nonce" deny
/// under a digest of its own (which would also let a copy published first
/// take the nonce from the producer's own retry).
#[test]
fn a_rewrapped_copy_of_an_intent_is_the_same_intent() {
    let valid = Spec::new(1).signed();
    let mut trailing = valid.clone();
    trailing.extend_from_slice(&[0; 8]);
    assert!(open_signed_intent(&trailing, &Default::default()).is_ok());
    let run = run(
        config(),
        &[("svc-1", valid.clone()), ("svc-1", trailing.clone())],
        Some(policy()),
    );
    let ds = &run.decisions()[&id(1)];
    assert_eq!(ds.len(), 2);
    let opened: Vec<_> = ds
        .iter()
        .map(|d| open_decision(d, &Default::default()).unwrap())
        .collect();
    for d in &opened {
        assert_eq!(d.reason(), Reason::Authorized, "a copy is not a replay");
        assert_eq!(d.intent_digest().0, intent_digest(&valid));
    }
    assert_eq!(intent_digest(&valid), intent_digest(&trailing));
    assert_eq!(opened[0].valid_until_us(), opened[1].valid_until_us());
}
