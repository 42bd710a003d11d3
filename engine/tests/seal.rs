//! Sealed decisions verify offline, and any change to one is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use warrant_engine::seal::{
    DecisionCore, DecisionError, EngineKey, EngineKeys, SingleUse, seal, verify_decision,
    verify_decision_with_skew,
};
use warrant_schemas::wire::{Reason, Verdict};
use warrant_schemas::{DecisionFields, Limits, encode_decision, open_decision};

const NOW: u64 = 1_700_000_000_000_000;

fn core(i: u8) -> DecisionCore<'static> {
    DecisionCore {
        intent_id: [i; 16],
        intent_digest: [i.wrapping_add(100); 32],
        verdict: if i % 3 == 2 {
            Verdict::Deny
        } else {
            Verdict::Authorize
        },
        reason: if i % 3 == 2 {
            Reason::DenyRule
        } else {
            Reason::Authorized
        },
        rule_id: "allow-eu",
        policy_hash: [7; 32],
        policy_version: 3,
        issued_at_us: NOW,
        valid_until_us: NOW + 60_000_000,
        audience: "executor-eu",
        lineage_partition: 1,
        lineage_sequence: u64::from(i),
    }
}

fn setup(
    n: u8,
) -> (
    EngineKey,
    EngineKeys,
    Vec<DecisionCore<'static>>,
    Vec<Vec<u8>>,
) {
    let key = EngineKey::from_seed([9; 32]);
    let mut keys = EngineKeys::new();
    keys.add(&key.public_key()).unwrap();
    let cores: Vec<_> = (0..n).map(core).collect();
    let sealed = seal(&key, &cores).unwrap();
    (key, keys, cores, sealed)
}

fn hex_id(id: [u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_decision_of_a_batch_verifies_alone() {
    for n in [1u8, 2, 3, 7, 16, 33] {
        let (_, keys, cores, sealed) = setup(n);
        for (c, d) in cores.iter().zip(&sealed) {
            let r = verify_decision(d, &keys, &c.intent_digest, "executor-eu", NOW + 1);
            if c.verdict == Verdict::Authorize {
                let auth = r.unwrap();
                assert_eq!(auth.intent_id, c.intent_id);
                assert_eq!(auth.rule_id, "allow-eu");
            } else {
                assert_eq!(r, Err(DecisionError::Denied(Reason::DenyRule)));
            }
        }
    }
}

#[test]
fn a_changed_field_is_refused() {
    let (_, keys, cores, sealed) = setup(5);
    let d = open_decision(&sealed[0], &Limits::default()).unwrap();
    let proof: Vec<[u8; 32]> = d.proof().unwrap().iter().map(|h| h.0).collect();
    let base = DecisionFields {
        intent_id: d.intent_id().0,
        intent_digest: d.intent_digest().0,
        verdict: d.verdict(),
        reason: d.reason(),
        rule_id: d.rule_id().unwrap(),
        policy_hash: d.policy_hash().unwrap().0,
        policy_version: d.policy_version(),
        issued_at_us: d.issued_at_us(),
        valid_until_us: d.valid_until_us(),
        audience: d.audience().unwrap(),
        engine_key_id: d.engine_key_id().0,
        lineage_partition: d.lineage_partition(),
        lineage_sequence: d.lineage_sequence(),
        batch_root: d.batch_root().0,
        leaf_index: d.leaf_index(),
        batch_size: d.batch_size(),
        proof: &proof,
        batch_signature: d.batch_signature().0,
    };
    // Re-encoding the unchanged fields verifies: the check is on content.
    let digest = cores[0].intent_digest;
    assert!(
        verify_decision(
            &encode_decision(&base),
            &keys,
            &digest,
            "executor-eu",
            NOW + 1
        )
        .is_ok()
    );
    let mut other_proof = proof.clone();
    other_proof[0][0] ^= 1;
    let tampered: Vec<(&str, DecisionFields<'_>)> = vec![
        (
            "intent_id",
            DecisionFields {
                intent_id: [0xee; 16],
                ..base
            },
        ),
        (
            "intent_digest",
            DecisionFields {
                intent_digest: [0xee; 32],
                ..base
            },
        ),
        (
            "reason",
            DecisionFields {
                reason: Reason::Overloaded,
                ..base
            },
        ),
        (
            "rule_id",
            DecisionFields {
                rule_id: "allow-all",
                ..base
            },
        ),
        (
            "policy_hash",
            DecisionFields {
                policy_hash: [0; 32],
                ..base
            },
        ),
        (
            "policy_version",
            DecisionFields {
                policy_version: 4,
                ..base
            },
        ),
        (
            "issued_at_us",
            DecisionFields {
                issued_at_us: NOW - 1,
                ..base
            },
        ),
        (
            "valid_until_us",
            DecisionFields {
                valid_until_us: NOW + 3_600_000_000,
                ..base
            },
        ),
        (
            "audience",
            DecisionFields {
                audience: "executor-us",
                ..base
            },
        ),
        (
            "engine_key_id",
            DecisionFields {
                engine_key_id: [1; 16],
                ..base
            },
        ),
        (
            "lineage_partition",
            DecisionFields {
                lineage_partition: 2,
                ..base
            },
        ),
        (
            "lineage_sequence",
            DecisionFields {
                lineage_sequence: 99,
                ..base
            },
        ),
        (
            "batch_root",
            DecisionFields {
                batch_root: [0; 32],
                ..base
            },
        ),
        (
            "leaf_index",
            DecisionFields {
                leaf_index: 1,
                ..base
            },
        ),
        (
            "batch_size",
            DecisionFields {
                batch_size: 6,
                ..base
            },
        ),
        (
            "proof",
            DecisionFields {
                proof: &other_proof,
                ..base
            },
        ),
        (
            "batch_signature",
            DecisionFields {
                batch_signature: [0; 64],
                ..base
            },
        ),
    ];
    for (field, fields) in tampered {
        let r = verify_decision(
            &encode_decision(&fields),
            &keys,
            &fields.intent_digest,
            fields.audience,
            NOW + 1,
        );
        // Each field is bound by the proof or the signature itself, not only
        // by a later check (an unknown key id is refused before either).
        let want: &[DecisionError] = match field {
            "engine_key_id" => &[DecisionError::UnknownEngineKey(hex_id([1; 16]))],
            "batch_root" | "batch_signature" | "batch_size" => {
                &[DecisionError::BadSignature, DecisionError::BadProof]
            }
            _ => &[DecisionError::BadProof],
        };
        assert!(
            want.contains(&r.clone().unwrap_err()),
            "changing `{field}` gave {r:?}"
        );
    }
    // A deny turned into an authorize is refused too (decision 2 is a deny).
    let d2 = open_decision(&sealed[2], &Limits::default()).unwrap();
    let proof2: Vec<[u8; 32]> = d2.proof().unwrap().iter().map(|h| h.0).collect();
    let flipped = DecisionFields {
        intent_id: d2.intent_id().0,
        intent_digest: d2.intent_digest().0,
        verdict: Verdict::Authorize,
        reason: Reason::Authorized,
        leaf_index: 2,
        proof: &proof2,
        lineage_sequence: 2,
        ..base
    };
    let r = verify_decision(
        &encode_decision(&flipped),
        &keys,
        &cores[2].intent_digest,
        "executor-eu",
        NOW + 1,
    );
    assert_eq!(r, Err(DecisionError::BadProof));
}

#[test]
fn random_byte_flips_are_refused_or_change_nothing() {
    let (_, keys, cores, sealed) = setup(4);
    let original = verify_decision(
        &sealed[1],
        &keys,
        &cores[1].intent_digest,
        "executor-eu",
        NOW + 1,
    )
    .unwrap();
    let mut accepted_changes = 0;
    for pos in 0..sealed[1].len() {
        for bit in [0x01u8, 0x80] {
            let mut bytes = sealed[1].clone();
            bytes[pos] ^= bit;
            if let Ok(auth) = verify_decision(
                &bytes,
                &keys,
                &cores[1].intent_digest,
                "executor-eu",
                NOW + 1,
            ) {
                // Only bytes no field reads (padding, unused vtable slots) may flip.
                assert_eq!(
                    auth, original,
                    "a flip at byte {pos} changed what was authorized"
                );
                accepted_changes += 1;
            }
        }
    }
    assert!(
        accepted_changes < sealed[1].len() / 4,
        "{accepted_changes} flips accepted: too many bytes unchecked"
    );
}

#[test]
fn executor_checks_binding_time_audience_and_key() {
    let (_, keys, cores, sealed) = setup(3);
    let (d, c) = (&sealed[0], &cores[0]);
    assert_eq!(
        verify_decision(d, &keys, &[0; 32], "executor-eu", NOW + 1),
        Err(DecisionError::DigestMismatch)
    );
    assert_eq!(
        verify_decision(d, &keys, &c.intent_digest, "executor-us", NOW + 1),
        Err(DecisionError::WrongAudience("executor-eu".into()))
    );
    assert_eq!(
        verify_decision(d, &keys, &c.intent_digest, "", NOW + 1),
        Err(DecisionError::NoAudience)
    );
    assert_eq!(
        verify_decision(d, &keys, &c.intent_digest, "executor-eu", NOW - 1),
        Err(DecisionError::NotYetValid)
    );
    assert_eq!(
        verify_decision(d, &keys, &c.intent_digest, "executor-eu", c.valid_until_us),
        Err(DecisionError::Expired)
    );
    // An executor clock 1 s behind the engine's, allowed 1 s of skew: a
    // fresh decision is accepted; the end of the window does not move.
    let skewed = |now: u64, skew: u64| {
        verify_decision_with_skew(d, &keys, &c.intent_digest, "executor-eu", now, skew)
    };
    assert!(skewed(NOW - 1_000_000, 1_000_000).is_ok());
    assert_eq!(
        skewed(NOW - 1_000_001, 1_000_000),
        Err(DecisionError::NotYetValid)
    );
    assert_eq!(
        skewed(c.valid_until_us, 1_000_000),
        Err(DecisionError::Expired)
    );
    assert_eq!(skewed(u64::MAX, u64::MAX), Err(DecisionError::Expired));
    let stranger = EngineKeys::new();
    assert!(matches!(
        verify_decision(d, &stranger, &c.intent_digest, "executor-eu", NOW + 1),
        Err(DecisionError::UnknownEngineKey(_))
    ));
    // (Trailing alignment padding may be cut without changing a field; half
    // of the buffer may not.)
    let cut = verify_decision(
        &d[..d.len() / 2],
        &keys,
        &c.intent_digest,
        "executor-eu",
        NOW + 1,
    );
    assert!(matches!(cut, Err(DecisionError::Malformed(_))), "{cut:?}");
    // A key set with a second (rotated-in) key still verifies the old decisions.
    let mut rotated = keys.clone();
    rotated
        .add(&EngineKey::from_seed([10; 32]).public_key())
        .unwrap();
    assert!(verify_decision(d, &rotated, &c.intent_digest, "executor-eu", NOW + 1).is_ok());
    // A decision sealed by an engine key the executor does not trust is refused.
    let impostor = EngineKey::from_seed([11; 32]);
    let forged = seal(&impostor, &cores).unwrap();
    assert!(matches!(
        verify_decision(&forged[0], &keys, &c.intent_digest, "executor-eu", NOW + 1),
        Err(DecisionError::UnknownEngineKey(_))
    ));
}

#[test]
fn single_use_and_bounded_memory() {
    let (_, keys, cores, sealed) = setup(2);
    let auth = verify_decision(
        &sealed[0],
        &keys,
        &cores[0].intent_digest,
        "executor-eu",
        NOW + 1,
    )
    .unwrap();
    // An expired decision is refused, not remembered-and-forgotten.
    assert_eq!(
        SingleUse::new(2).consume(&auth, auth.valid_until_us),
        Err(DecisionError::Expired)
    );
    let mut guard = SingleUse::new(2);
    assert_eq!(guard.consume(&auth, NOW + 1), Ok(()));
    assert_eq!(
        guard.consume(&auth, NOW + 2),
        Err(DecisionError::AlreadyUsed)
    );
    let other = |i: u8, until: u64| warrant_engine::seal::Authorized {
        intent_id: [i; 16],
        intent_digest: [i; 32],
        issued_at_us: 0,
        valid_until_us: until,
        rule_id: String::new(),
        policy_version: 1,
    };
    assert_eq!(guard.consume(&other(50, NOW + 10), NOW + 2), Ok(()));
    // Full of unexpired decisions: refuse rather than forget.
    assert_eq!(
        guard.consume(&other(51, NOW + 10), NOW + 3),
        Err(DecisionError::GuardFull(2))
    );
    // Keyed by the intent's digest: another intent with the same id (the
    // producer's choice) is not blocked by this one.
    let same_id = warrant_engine::seal::Authorized {
        intent_digest: [7; 32],
        ..auth.clone()
    };
    assert_eq!(
        guard.consume(&same_id, NOW + 3),
        Err(DecisionError::GuardFull(2)),
        "a different intent must not read as already used"
    );
    // Once entries expire, room is made, and they are dropped as time
    // passes.
    assert_eq!(
        guard.consume(&other(51, NOW + 100_000_000), NOW + 61_000_000),
        Ok(())
    );
    assert_eq!(guard.len(), 1);
    assert_eq!(
        guard.consume(&other(51, NOW + 100_000_000), NOW + 61_000_001),
        Err(DecisionError::AlreadyUsed)
    );
}

/// A clock stepped back (NTP, or callers passing different clocks) must
/// not make a decision the guard has forgotten as expired usable again.
#[test]
fn single_use_survives_a_clock_stepped_back() {
    let auth = |i: u8, until: u64| warrant_engine::seal::Authorized {
        intent_id: [i; 16],
        intent_digest: [i; 32],
        issued_at_us: 0,
        valid_until_us: until,
        rule_id: String::new(),
        policy_version: 1,
    };
    let mut guard = SingleUse::new(8);
    assert_eq!(guard.consume(&auth(1, 1_000), 100), Ok(()));
    // Consumed at 5,000: the first one has expired and is dropped.
    assert_eq!(guard.consume(&auth(2, 10_000), 5_000), Ok(()));
    // The clock goes back to 200, where the first decision looks valid.
    assert_eq!(
        guard.consume(&auth(1, 1_000), 200),
        Err(DecisionError::Expired)
    );
    assert_eq!(
        guard.consume(&auth(2, 10_000), 200),
        Err(DecisionError::AlreadyUsed)
    );
}

#[test]
fn key_files_are_private_and_parsed_strictly() {
    let dir = std::env::temp_dir().join(format!(
        "warrant-seal-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("engine.key");
    let key = EngineKey::generate(&path).unwrap();
    assert_eq!(
        EngineKey::load(&path).unwrap().public_key(),
        key.public_key()
    );
    assert!(
        !format!("{key:?}").contains(&std::fs::read_to_string(&path).unwrap().trim().to_owned())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = EngineKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("readable by group or others (mode 644)"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Whitespace around the seed is fine (an editor's newline).
    let seed = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("  {}\r\n\n", seed.trim())).unwrap();
    assert_eq!(
        EngineKey::load(&path).unwrap().public_key(),
        key.public_key()
    );
    std::fs::write(&path, "not hex\n").unwrap();
    assert!(
        EngineKey::load(&path)
            .unwrap_err()
            .to_string()
            .contains("does not hold a 32-byte hex seed")
    );
    // Not read whole: a huge file is not a key file.
    std::fs::write(&path, seed.repeat(100_000)).unwrap();
    assert!(
        EngineKey::load(&path)
            .unwrap_err()
            .to_string()
            .contains("does not hold a 32-byte hex seed")
    );
    // A FIFO (or device) is refused at once, not read until it ends.
    #[cfg(unix)]
    {
        let fifo = dir.join("fifo.key");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        // Opening a FIFO for reading waits for a writer: give it one that
        // writes a valid seed and never closes, so a reader that read to
        // the end would hang.
        let writer_path = fifo.clone();
        let text = seed.clone();
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&writer_path)
                .unwrap();
            std::io::Write::write_all(&mut w, text.as_bytes()).unwrap();
            std::thread::sleep(std::time::Duration::from_secs(3600));
        });
        let e = EngineKey::load(&fifo).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decisions_executors_would_refuse_are_never_sealed() {
    let key = EngineKey::from_seed([9; 32]);
    let long = "r".repeat(300);
    let too_long = DecisionCore {
        rule_id: &long,
        ..core(0)
    };
    assert_eq!(
        seal(&key, &[core(0), too_long]),
        Err(warrant_engine::seal::SealError::FieldTooLong {
            index: 1,
            field: "rule_id",
            len: 300,
            max: 256
        })
    );
    let nobody = DecisionCore {
        audience: "",
        ..core(0)
    };
    assert_eq!(
        seal(&key, &[nobody]),
        Err(warrant_engine::seal::SealError::NoAudience { index: 0 })
    );
}

#[test]
fn the_streamed_leaf_hash_is_the_hash_of_the_documented_leaf_bytes() {
    let id = [7u8; 16];
    for i in 0..4 {
        let c = core(i);
        assert_eq!(
            c.leaf_hash(&id),
            warrant_engine::merkle::leaf_hash(&c.leaf_bytes(&id))
        );
    }
}

/// The guard's memory is the process's: after a restart an executor must
/// either restore what it consumed, or refuse what was issued before it
/// started. (A guard made with `new` after a restart accepts again what
/// ran before it: the gap these two close.)
#[test]
fn single_use_across_a_restart_restores_or_refuses() {
    let auth = |i: u8, issued: u64, until: u64| warrant_engine::seal::Authorized {
        intent_id: [i; 16],
        intent_digest: [i; 32],
        issued_at_us: issued,
        valid_until_us: until,
        rule_id: String::new(),
        policy_version: 1,
    };
    let mut before = SingleUse::new(8);
    assert_eq!(before.consume(&auth(1, 100, 10_000), 200), Ok(()));
    assert_eq!(before.consume(&auth(2, 100, 300), 250), Ok(()));
    let saved: Vec<_> = before.entries().collect();
    assert_eq!(saved.len(), 2);
    // The restart: a fresh guard without memory takes it again.
    assert_eq!(
        SingleUse::new(8).consume(&auth(1, 100, 10_000), 500),
        Ok(())
    );
    // Restored from the saved entries: already used (the expired one is
    // skipped, not held).
    let mut restored = SingleUse::starting_at(8, 0);
    let mut restored_full = SingleUse::new(1);
    restored.consume(&auth(9, 400, 450), 400).unwrap();
    for (digest, until) in &saved {
        restored.restore(*digest, *until).unwrap();
    }
    assert_eq!(restored.len(), 2, "the entry expired at 400 was skipped");
    assert_eq!(
        restored.consume(&auth(1, 100, 10_000), 500),
        Err(DecisionError::AlreadyUsed)
    );
    // A guard too small for the memory refuses to restore it.
    restored_full.restore([1; 32], 10_000).unwrap();
    assert_eq!(
        restored_full.restore([3; 32], 10_000),
        Err(DecisionError::GuardFull(1))
    );
    // Without memory: everything issued before the guard began is refused,
    // what is issued after is taken once.
    let mut fresh = SingleUse::starting_at(8, 400);
    assert_eq!(
        fresh.consume(&auth(1, 100, 10_000), 500),
        Err(DecisionError::BeforeGuard)
    );
    assert_eq!(fresh.consume(&auth(3, 400, 10_000), 500), Ok(()));
    assert_eq!(
        fresh.consume(&auth(3, 400, 10_000), 600),
        Err(DecisionError::AlreadyUsed)
    );
}
