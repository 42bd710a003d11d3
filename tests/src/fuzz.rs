//! The checks the fuzz targets in `fuzz/` run, as plain functions: the
//! targets call them under libFuzzer, and `tests/tests/fuzz_inputs.rs`
//! replays every committed seed and every crash input kept in
//! `fuzz/regressions/<target>/` through them in the normal test run. Each
//! panics when the code under test misbehaves; any other input returns.
#![allow(
    clippy::panic,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a fuzz check fails by panicking"
)]

use std::sync::OnceLock;

use warrant_engine::lineage::file;
use warrant_engine::seal::{EngineKey, EngineKeys, verify_decision};
use warrant_engine::verify::{PublicKey, SigItem, verify_batch, verify_one};
use warrant_policy::{KeyStatus, Policy, Request};
use warrant_schemas::{
    Attr, AttrValue, INTENT_SIGNING_DOMAIN, IntentSigner, Limits, open_checkpoint, open_decision,
    open_lineage_record, open_signed_intent,
};

/// A fuzz check: panics on misbehaviour, returns otherwise.
pub type Check = fn(&[u8]);

/// The targets, by name.
pub const TARGETS: [(&str, Check); 4] = [
    ("signed_intent", signed_intent),
    ("decision", decision),
    ("lineage", lineage),
    ("policy", policy),
];

/// The key the seed corpus was signed with; fuzzed intents that name it
/// reach the equation, others still exercise every pre-check.
fn key() -> &'static (PublicKey, [u8; 16]) {
    static KEY: OnceLock<(PublicKey, [u8; 16])> = OnceLock::new();
    KEY.get_or_init(|| {
        let signer = IntentSigner::from_seed([0x42; 32]);
        (PublicKey::from_bytes(signer.public_key()), signer.key_id())
    })
}

/// Fuzzes the path every intent takes first: open the `SignedIntent`
/// through the limit-checked reader, then verify its signature with the
/// strict verifier (single and as a batch of one, which must agree).
pub fn signed_intent(data: &[u8]) {
    let Ok(opened) = open_signed_intent(data, &Limits::default()) else {
        return;
    };
    // Touch every field the engine reads.
    let intent = opened.intent;
    let _ = (
        intent.principal(),
        intent.action(),
        intent.resource(),
        intent.environment(),
        intent.region(),
    );
    let _ = (
        intent.id(),
        intent.nonce(),
        intent.parent_id(),
        intent.payload_digest(),
        intent.deadline_us(),
    );
    if let Some(attrs) = intent.attributes() {
        for a in attrs {
            let _ = (
                a.key(),
                a.kind(),
                a.int_value(),
                a.str_value(),
                a.bool_value(),
            );
        }
    }
    let (k, id) = key();
    let fallback;
    let key = if intent.key_id().0 == *id {
        k
    } else {
        // An arbitrary key from the input: most are invalid points.
        let mut bytes = [0u8; 32];
        for (d, s) in bytes.iter_mut().zip(opened.signature.iter().rev()) {
            *d = *s;
        }
        fallback = PublicKey::from_bytes(bytes);
        &fallback
    };
    let item = SigItem {
        key,
        prefix: INTENT_SIGNING_DOMAIN,
        message: opened.intent_bytes,
        signature: opened.signature,
    };
    let single = verify_one(&item);
    let mut out = [Ok(())];
    verify_batch(&[item], &mut out);
    assert_eq!(
        single, out[0],
        "batch of one disagrees with single verification"
    );
}

/// Fuzzes what an executor does with a decision it received: open it
/// through the limit-checked reader, then run the whole offline check
/// (engine key, Merkle proof, batch signature, digest binding, validity,
/// audience). Any input must give an answer, never a panic, and anything
/// but a genuine signed decision must be refused.
pub fn decision(data: &[u8]) {
    if let Ok(d) = open_decision(data, &Limits::default()) {
        let _ = (
            d.intent_id(),
            d.intent_digest(),
            d.reason(),
            d.verdict(),
            d.policy_hash(),
            d.issued_at_us(),
            d.valid_until_us(),
            d.audience(),
            d.engine_key_id(),
            d.batch_root(),
            d.batch_signature(),
            d.proof(),
        );
    }
    let mut keys = EngineKeys::new();
    keys.add(&EngineKey::from_seed([0x42; 32]).public_key())
        .expect("a key from a seed is a valid engine key");
    let digest = data
        .get(..32)
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
        .unwrap_or([0; 32]);
    // Without the engine's secret key nothing the fuzzer builds can carry a
    // valid batch signature: an authorization here is a forgery.
    if let Ok(auth) = verify_decision(data, &keys, &digest, "executor", 1_800_000_000_000_000) {
        panic!("a fuzzed decision verified: {auth:?}");
    }
}

/// Fuzzes the auditor's path: a lineage log file (length-prefixed records
/// and checkpoints) split and verified, and each frame opened as a record
/// and as a checkpoint. Any input gives an answer, never a panic; nothing
/// the fuzzer builds verifies with a checkpoint (it cannot sign one).
pub fn lineage(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(frames) = file::split(data) {
        for f in frames.records.iter().chain(&frames.checkpoints) {
            let _ = open_lineage_record(f, &limits);
            let _ = open_checkpoint(f, &limits);
        }
    }
    let _ = open_lineage_record(data, &limits);
    let _ = open_checkpoint(data, &limits);
    let key = EngineKey::from_seed([0x42; 32]).public_key();
    if let Ok(report) = file::verify(0, data, &[key]) {
        assert!(
            report.checkpoints == 0,
            "a fuzzed log verified under a checkpoint: {report:?}"
        );
    }
}

/// Fuzzes the policy parser and compiler: any text compiles or gives an
/// error (never a panic), and a policy that compiles decides a set of
/// requests exactly as the reference evaluator (rule by rule, no tables)
/// does.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::from_sources(&[("fuzz.toml", text)]) else {
        return;
    };
    let _ = (
        policy.hash(),
        policy.name(),
        policy.version(),
        policy.rules().len(),
    );
    let attrs = [
        Attr {
            key: "amount",
            value: AttrValue::Int(1_250),
        },
        Attr {
            key: "currency",
            value: AttrValue::Str("EUR"),
        },
        Attr {
            key: "urgent",
            value: AttrValue::Bool(true),
        },
    ];
    for principal in ["svc-treasury", "agent-0007", "user-1", ""] {
        for action in ["payments.transfer", "reports.daily", "action-3", ""] {
            for (region, minute, status) in [
                ("DE", 600, KeyStatus::Active),
                ("KP", 0, KeyStatus::Rotating),
                ("", 1439, KeyStatus::Active),
            ] {
                let r = Request {
                    principal,
                    action,
                    resource: "accounts/eu/1234",
                    environment: "prod",
                    region,
                    attributes: &attrs,
                    minute_of_day: minute,
                    key_status: status,
                };
                assert_eq!(
                    policy.evaluate(&r),
                    policy.evaluate_reference(&r),
                    "tables and reference disagree"
                );
                let _ = policy.granted_validity_us(&policy.evaluate(&r), 60_000_000);
            }
        }
    }
}
