//! The lineage log verifies end to end, and every kind of tampering is
//! reported at the first bad record or checkpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use warrant_engine::lineage::{Entry, LineageError, LineageWriter, verify_log};
use warrant_engine::seal::EngineKey;
use warrant_schemas::wire::{Reason, Verdict};
use warrant_schemas::{Limits, LineageFields, encode_lineage_record, open_lineage_record};

struct Log {
    records: Vec<Vec<u8>>,
    checkpoints: Vec<Vec<u8>>,
    keys: Vec<[u8; 32]>,
}

/// 50 records on partition 3, a checkpoint after every 8 and at the end.
fn log() -> Log {
    let key = EngineKey::from_seed([5; 32]);
    let mut w = LineageWriter::new(3);
    let mut records = Vec::new();
    let mut checkpoints = Vec::new();
    for i in 0..50u8 {
        records.push(w.append(&Entry {
            decision_digest: [i; 32],
            intent_id: [i; 16],
            parent_id: (i % 4 == 1).then(|| [i - 1; 16]),
            verdict: if i % 3 == 0 {
                Verdict::Deny
            } else {
                Verdict::Authorize
            },
            reason: if i % 3 == 0 {
                Reason::BadSignature
            } else {
                Reason::Authorized
            },
            issued_at_us: 1_000 + u64::from(i),
            replay: (i % 3 != 0).then_some(([i; 16], 9_000)),
            intent_digest: [0; 32],
            valid_until_us: 0,
        }));
        if (i + 1) % 8 == 0 || i == 49 {
            checkpoints.push(w.checkpoint(&key, 2_000 + u64::from(i)));
        }
    }
    Log {
        records,
        checkpoints,
        keys: vec![key.public_key()],
    }
}

fn verify(l: &Log) -> Result<warrant_engine::lineage::LogReport, LineageError> {
    verify_log(3, &l.records, &l.checkpoints, &l.keys)
}

/// Re-encodes record `i` with one field changed (its prev_hash kept).
fn edit(l: &mut Log, i: usize, f: impl FnOnce(&mut LineageFields)) {
    let r = open_lineage_record(&l.records[i], &Limits::default()).unwrap();
    let mut fields = LineageFields {
        partition: r.partition(),
        sequence: r.sequence(),
        prev_hash: r.prev_hash().0,
        decision_digest: r.decision_digest().0,
        intent_id: r.intent_id().0,
        parent_id: r.parent_id().map(|p| p.0),
        verdict: r.verdict(),
        reason: r.reason(),
        issued_at_us: r.issued_at_us(),
        replay: r.nonce_key().map(|k| (k.0, r.remember_until_us())),
        intent_digest: r.intent_digest().map_or([0; 32], |d| d.0),
        valid_until_us: r.valid_until_us(),
    };
    f(&mut fields);
    l.records[i] = encode_lineage_record(&fields);
}

#[test]
fn an_untouched_log_verifies() {
    let l = log();
    let report = verify(&l).unwrap();
    assert_eq!(report.records, 50);
    assert_eq!(report.checkpoints, 7);
    assert_eq!(report.authorized, 33);
    assert_eq!(report.chained, 13);
}

#[test]
fn an_edited_record_is_found() {
    let mut l = log();
    edit(&mut l, 20, |f| f.decision_digest = [0xee; 32]);
    let e = verify(&l).unwrap_err();
    assert_eq!(
        e,
        LineageError::Chain {
            index: 21,
            edited: Some(20)
        }
    );
    assert!(e.to_string().contains("record 20 was edited"), "{e}");
    // An edited prev_hash is named as the record edited, not its intact
    // predecessor.
    let mut l = log();
    edit(&mut l, 20, |f| f.prev_hash = [0xee; 32]);
    assert_eq!(
        verify(&l),
        Err(LineageError::Chain {
            index: 20,
            edited: Some(20)
        })
    );
    // The last record before a checkpoint is named too (the checkpoint
    // after record 7 no longer matches, but the link to record 8 says which
    // record changed).
    let mut l = log();
    edit(&mut l, 7, |f| f.decision_digest = [0xee; 32]);
    assert_eq!(
        verify(&l),
        Err(LineageError::Chain {
            index: 8,
            edited: Some(7)
        })
    );
    // A checkpoint of size 0 still names the empty tree.
    let key = EngineKey::from_seed([5; 32]);
    let empty = LineageWriter::new(3).checkpoint(&key, 1);
    assert!(verify_log(3, &[], std::slice::from_ref(&empty), &l.keys).is_ok());
    // Editing the last record breaks no chain link, but the final checkpoint.
    let mut l = log();
    edit(&mut l, 49, |f| f.decision_digest = [0xee; 32]);
    assert_eq!(
        verify(&l),
        Err(LineageError::RootMismatch { index: 6, size: 50 })
    );
}

#[test]
fn a_dropped_record_is_found() {
    let mut l = log();
    l.records.remove(10);
    assert_eq!(
        verify(&l),
        Err(LineageError::Sequence {
            index: 10,
            expected: 10,
            found: 11
        })
    );
}

#[test]
fn reordered_records_are_found() {
    let mut l = log();
    l.records.swap(30, 31);
    assert_eq!(
        verify(&l),
        Err(LineageError::Sequence {
            index: 30,
            expected: 30,
            found: 31
        })
    );
}

#[test]
fn a_duplicated_record_is_found() {
    let mut l = log();
    let copy = l.records[12].clone();
    l.records.insert(13, copy);
    assert_eq!(
        verify(&l),
        Err(LineageError::Sequence {
            index: 13,
            expected: 13,
            found: 12
        })
    );
}

#[test]
fn truncation_is_found() {
    let mut l = log();
    l.records.truncate(45);
    // The first checkpoint beyond the records is reported (sizes 48 and 50 are).
    assert_eq!(
        verify(&l),
        Err(LineageError::Truncated {
            index: 5,
            size: 48,
            present: 45
        })
    );
}

#[test]
fn a_forged_checkpoint_is_found() {
    // Signed by a key the verifier does not trust.
    let mut l = log();
    let mut w = LineageWriter::new(3);
    let mut forged_records = Vec::new();
    for i in 0..8u8 {
        forged_records.push(w.append(&Entry {
            decision_digest: [i; 32],
            intent_id: [i; 16],
            parent_id: None,
            verdict: Verdict::Authorize,
            reason: Reason::Authorized,
            issued_at_us: 1,
            replay: None,
            intent_digest: [0; 32],
            valid_until_us: 0,
        }));
    }
    l.checkpoints
        .push(w.checkpoint(&EngineKey::from_seed([6; 32]), 1));
    assert!(matches!(
        verify(&l),
        Err(LineageError::Checkpoint { index: 7, .. })
    ));
    // A trusted checkpoint whose bytes were altered (size changed).
    let mut l = log();
    let last = l.checkpoints.len() - 1;
    let c = warrant_schemas::open_checkpoint(&l.checkpoints[last], &Limits::default()).unwrap();
    l.checkpoints[last] = warrant_schemas::encode_checkpoint(&warrant_schemas::CheckpointFields {
        origin: c.origin(),
        size: 49,
        root: c.root().0,
        issued_at_us: c.issued_at_us(),
        engine_key_id: c.engine_key_id().0,
        signature: c.signature().0,
        frontier: &[],
    });
    let e = verify(&l).unwrap_err();
    assert!(e.to_string().contains("forged checkpoint"), "{e}");
}

#[test]
fn records_of_another_partition_are_refused() {
    let l = log();
    assert!(matches!(
        verify_log(4, &l.records, &[], &l.keys),
        Err(LineageError::WrongPartition { index: 0, .. })
    ));
    assert!(matches!(
        verify_log(4, &[], &l.checkpoints, &l.keys),
        Err(LineageError::Checkpoint { index: 0, .. })
    ));
}

#[test]
fn records_no_checkpoint_covers_are_refused() {
    // Rewrite record 48 (after the size-48 checkpoint) and rechain record
    // 49 (the chain is unkeyed: anyone can), then drop the size-50
    // checkpoint that covered them.
    let mut l = log();
    edit(&mut l, 48, |f| f.decision_digest = [0xee; 32]);
    for i in 49..50 {
        let prev = warrant_engine::merkle::leaf_hash(&l.records[i - 1]);
        edit(&mut l, i, |f| f.prev_hash = prev);
    }
    l.checkpoints.pop();
    assert_eq!(
        verify(&l),
        Err(LineageError::Uncovered {
            covered: 48,
            records: 50
        })
    );
    // With no checkpoint at all, nothing is vouched for.
    assert_eq!(
        verify_log(3, &l.records, &[], &l.keys),
        Err(LineageError::Uncovered {
            covered: 0,
            records: 50
        })
    );
    // Dropping intermediate checkpoints is fine: the last root covers all.
    let mut l = log();
    l.checkpoints.drain(..3);
    assert_eq!(verify(&l).unwrap().records, 50);
}

/// A checkpoint over the first `size` records of `l`, signed by a key the
/// verifier does not trust.
fn forged_checkpoint(l: &Log, size: usize) -> Vec<u8> {
    let mut w = LineageWriter::new(3);
    for r in &l.records[..size] {
        let r = open_lineage_record(r, &Limits::default()).unwrap();
        w.append(&Entry {
            decision_digest: r.decision_digest().0,
            intent_id: r.intent_id().0,
            parent_id: r.parent_id().map(|p| p.0),
            verdict: r.verdict(),
            reason: r.reason(),
            issued_at_us: r.issued_at_us(),
            replay: r.nonce_key().map(|k| (k.0, r.remember_until_us())),
            intent_digest: r.intent_digest().map_or([0; 32], |d| d.0),
            valid_until_us: r.valid_until_us(),
        });
    }
    w.checkpoint(&EngineKey::from_seed([6; 32]), 1)
}

#[test]
fn the_first_problem_in_log_order_is_reported() {
    // Record 20 edited, and the checkpoint over 48 records forged (signed
    // by an untrusted key): the record comes first in the log, so it is
    // what verification names, not the later checkpoint.
    let mut l = log();
    l.checkpoints[5] = forged_checkpoint(&l, 48);
    edit(&mut l, 20, |f| f.decision_digest = [0xee; 32]);
    let expected = LineageError::Chain {
        index: 21,
        edited: Some(20),
    };
    assert_eq!(verify(&l), Err(expected.clone()));
    // An unreadable checkpoint too: its size is unknown, so it is named
    // only after every record checked out.
    l.checkpoints[6] = b"WCP1 is not enough".to_vec();
    assert_eq!(verify(&l), Err(expected));
    let mut clean = log();
    clean.checkpoints.push(b"WCP1 is not enough".to_vec());
    assert!(matches!(
        verify(&clean),
        Err(LineageError::Checkpoint { index: 7, .. })
    ));
    // A bad checkpoint after an intact stretch is reported where the log
    // reaches it, before a later bad record.
    let mut l = log();
    l.checkpoints[1] = forged_checkpoint(&l, 16);
    edit(&mut l, 40, |f| f.decision_digest = [0xee; 32]);
    assert!(matches!(
        verify(&l),
        Err(LineageError::Checkpoint { index: 1, .. })
    ));
}
