//! What one intent costs in each piece of the pipeline, on one thread,
//! against its share of a 1,024-signature batch verification: the work
//! the pipeline adds to verification, and so the best pipeline ÷ ceiling
//! any layout could reach if that work cost in the pipeline what it costs
//! here (it runs on the cores verification uses: all of them, in the
//! ceiling). Warm, on 1,024 intents, and without encoding, hand-offs or
//! the transport, it is a lower bound of that work: the pipeline bench
//! prints what the stages cost by thread as they run (about three times
//! as much, `bench/README.md`, "The gap, by thread").
//!
//! Run: `cargo bench -p warrant-bench --bench stages` (best of 50 passes
//! over 1,024 intents of 200 principals; the policy tables' own cost is in
//! the `policy` bench, about 0.1 µs).
use std::hint::black_box;
use std::time::Instant;

use warrant_engine::lineage::{Entry, LineageWriter};
use warrant_engine::replay::{NonceKey, Outcome, ReplayCache};
use warrant_engine::seal::{DecisionCore, EngineKey, seal_with_leaves};
use warrant_engine::verify::{PublicKey, SigError, SigItem, verify_batch};
use warrant_schemas::wire::{Reason, Verdict};
use warrant_schemas::{
    Attr, AttrValue, INTENT_SIGNING_DOMAIN, IntentFields, IntentSigner, Limits, open_signed_intent,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n = 1024;
    let signers: Vec<IntentSigner> = (0..200u8)
        .map(|i| IntentSigner::from_seed([i; 32]))
        .collect();
    let keys: Vec<PublicKey> = signers
        .iter()
        .map(|s| PublicKey::from_bytes(s.public_key()))
        .collect();
    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let id = (i as u128).to_le_bytes();
            let attrs = [Attr {
                key: "amount",
                value: AttrValue::Int(5),
            }];
            signers[i % 200].sign_intent(&IntentFields {
                id,
                nonce: id,
                principal: &format!("user-{}", i % 200),
                action: "action-3",
                resource: "r",
                attributes: &attrs,
                ..IntentFields::example()
            })
        })
        .collect();
    println!("payload bytes: {}", payloads[0].len());
    let limits = Limits::default();
    let rounds = 50;
    let time = |name: &str, f: &mut dyn FnMut()| -> f64 {
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let t = Instant::now();
            f();
            best = best.min(t.elapsed().as_secs_f64());
        }
        let us = best * 1e6 / n as f64;
        println!("{name:<32} {us:>8.3} µs/intent");
        us
    };
    let mut added = 0.0;
    added += time("open_signed_intent", &mut || {
        for p in &payloads {
            let _ = black_box(open_signed_intent(p, &limits));
        }
    });
    let opened: Vec<_> = payloads
        .iter()
        .map(|p| open_signed_intent(p, &limits).unwrap())
        .collect();
    // The digest decode names each intent by (`SignedIntentRef::digest`:
    // the signed bytes and signature, as `warrant_schemas::intent_digest`).
    added += time("intent digest", &mut || {
        for o in &opened {
            black_box(o.digest());
        }
    });
    let items: Vec<SigItem<'_>> = opened
        .iter()
        .enumerate()
        .map(|(i, o)| SigItem {
            key: &keys[i % 200],
            prefix: INTENT_SIGNING_DOMAIN,
            message: o.intent_bytes,
            signature: o.signature,
        })
        .collect();
    let mut out = vec![Err(SigError::NoItem); n];
    let verify = time("verify_batch(1024)", &mut || {
        verify_batch(&items, &mut out);
    });
    assert!(out.iter().all(|r| r.is_ok()));
    // What a group costs per signature as it shrinks: at moderate load
    // the verify lanes see groups of a few to a few hundred (one
    // is checked singly: `verify.rs`, MIN_BATCH).
    for size in [1usize, 2, 4, 8, 16, 32, 64, 128, 256] {
        time(&format!("  verify_batch({size})"), &mut || {
            for (items, out) in items.chunks(size).zip(out.chunks_mut(size)) {
                verify_batch(items, out);
            }
        });
        assert!(out.iter().all(|r| r.is_ok()));
    }
    let nonces: Vec<NonceKey> = (0..n)
        .map(|i| NonceKey::new(&format!("user-{}", i % 200), &(i as u128).to_le_bytes()))
        .collect();
    added += time("replay check+record", &mut || {
        let mut c = ReplayCache::new(1 << 20);
        for (i, k) in nonces.iter().enumerate() {
            let mut digest = [0u8; 32];
            digest[..16].copy_from_slice(&(i as u128).to_le_bytes());
            black_box(c.check(k, &digest, 1));
            black_box(c.record(
                k,
                &digest,
                Outcome {
                    verdict: Verdict::Authorize,
                    reason: Reason::Authorized,
                    valid_until_us: 60_000_000,
                },
                1,
                1_000_000_000,
            ));
        }
    });
    let key = EngineKey::from_seed([3; 32]);
    let cores: Vec<DecisionCore<'_>> = (0..n)
        .map(|i| DecisionCore {
            intent_id: (i as u128).to_le_bytes(),
            intent_digest: [7; 32],
            verdict: Verdict::Authorize,
            reason: Reason::Authorized,
            rule_id: "rule-17",
            policy_hash: [1; 32],
            policy_version: 1,
            issued_at_us: 5,
            valid_until_us: 6,
            audience: "executor",
            lineage_partition: 0,
            lineage_sequence: i as u64,
        })
        .collect();
    added += time("seal_with_leaves(1024)", &mut || {
        black_box(seal_with_leaves(&key, &cores).unwrap());
    });
    time("  of which decision leaf hashes", &mut || {
        for c in &cores {
            black_box(c.leaf_hash(&key.id()));
        }
    });
    let leaves: Vec<[u8; 32]> = cores.iter().map(|c| c.leaf_hash(&key.id())).collect();
    time("  of which Merkle proofs", &mut || {
        black_box(warrant_engine::merkle::all_proofs(&leaves));
    });
    added += time("lineage append", &mut || {
        let mut w = LineageWriter::new(0);
        for (i, l) in leaves.iter().enumerate() {
            black_box(w.append(&Entry {
                decision_digest: *l,
                intent_id: (i as u128).to_le_bytes(),
                parent_id: None,
                verdict: Verdict::Authorize,
                reason: Reason::Authorized,
                issued_at_us: 5,
                replay: Some(([1; 16], 9)),
                intent_digest: [0; 32],
                valid_until_us: 0,
            }));
        }
    });
    println!("{:<32} {added:>8.3} µs/intent", "added to verification");
    println!(
        "best pipeline / ceiling with that work on verification's cores: {:.2}",
        verify / (verify + added)
    );
}
