//! An engine taking a partition over resumes its lineage log from the end
//! of what the previous owner wrote (`lineage::resume`): the log it goes on
//! writing is the one the previous owner would have written, a broken log
//! is refused, and too short a read asks for more.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use warrant_engine::lineage::{
    Entry, LineageError, LineageTail, LineageWriter, ReplayWindow, ResumeError, resume, verify_log,
};
use warrant_engine::seal::EngineKey;
use warrant_schemas::wire::{Reason, Verdict};

fn entry(i: u64) -> Entry {
    Entry {
        decision_digest: [i as u8; 32],
        intent_id: u128::from(i).to_le_bytes(),
        parent_id: None,
        verdict: Verdict::Authorize,
        reason: Reason::Authorized,
        issued_at_us: 1_000 + i,
        replay: Some(([i as u8; 16], 10_000 + i)),
        intent_digest: digest(i),
        valid_until_us: 20_000 + i,
    }
}

/// Entry `i`'s intent digest: `i` in its first 8 bytes.
fn digest(i: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&i.to_le_bytes());
    d
}

/// Frames of partition 2 in log order: `n` records, a checkpoint after
/// every `every` of them (none at the end: a killed writer's tail).
fn frames(key: &EngineKey, n: u64, every: u64) -> Vec<Vec<u8>> {
    let mut w = LineageWriter::new(2);
    let mut out = Vec::new();
    for i in 0..n {
        out.push(w.append(&entry(i)));
        if (i + 1) % every == 0 {
            out.push(w.checkpoint(key, 5_000 + i));
        }
    }
    out
}

fn is_checkpoint(f: &[u8]) -> bool {
    f.get(4..8) == Some(warrant_schemas::CHECKPOINT_IDENTIFIER.as_bytes())
}

#[test]
fn a_resumed_writer_writes_exactly_what_the_first_would_have() {
    let key = EngineKey::from_seed([9; 32]);
    let keys = [key.public_key()];
    // Sizes at and around powers of two, with and without an unsigned tail.
    for n in [1u64, 2, 3, 7, 8, 9, 31, 32, 33, 64, 100] {
        let all = frames(&key, n, 5);
        // The reference: one writer that never stopped.
        let mut reference = LineageWriter::new(2);
        for i in 0..n {
            reference.append(&entry(i));
        }
        // From any starting frame whose window holds a usable checkpoint.
        for start in 0..all.len() {
            let window = &all[start..];
            let tail = match resume(2, window, start == 0, &keys, ReplayWindow::none()) {
                Ok(t) => t,
                Err(ResumeError::NeedMore) => {
                    assert!(start > 0, "n {n}: the whole log always suffices");
                    continue;
                }
                Err(e) => panic!("n {n} start {start}: {e}"),
            };
            assert_eq!(tail.size(), n, "n {n} start {start}");
            let mut resumed = LineageWriter::resume(2, tail);
            let mut expected = LineageWriter::new(2);
            for i in 0..n {
                expected.append(&entry(i));
            }
            for i in n..n + 5 {
                assert_eq!(resumed.append(&entry(i)), expected.append(&entry(i)));
            }
            // Checkpoints agree too (same size, root, frontier).
            assert_eq!(resumed.checkpoint(&key, 1), expected.checkpoint(&key, 1));
        }
        // And the log the two writers make together verifies.
        let mut joined = all.clone();
        let mut resumed = LineageWriter::resume(
            2,
            resume(2, &all, true, &keys, ReplayWindow::none()).unwrap(),
        );
        // ... and it is the log of the writer that never stopped.
        for i in n..n + 3 {
            let record = resumed.append(&entry(i));
            assert_eq!(record, reference.append(&entry(i)), "n {n}: record {i}");
            joined.push(record);
        }
        let checkpoint = resumed.checkpoint(&key, 9_999);
        assert_eq!(checkpoint, reference.checkpoint(&key, 9_999), "n {n}");
        joined.push(checkpoint);
        let (records, checkpoints): (Vec<_>, Vec<_>) =
            joined.into_iter().partition(|f| !is_checkpoint(f));
        let report = verify_log(2, &records, &checkpoints, &keys).unwrap();
        assert_eq!(report.records, n + 3);
    }
}

#[test]
fn the_tail_says_what_is_signed() {
    let key = EngineKey::from_seed([9; 32]);
    let all = frames(&key, 23, 10);
    let tail = resume(2, &all, true, &[key.public_key()], ReplayWindow::none()).unwrap();
    assert_eq!((tail.size(), tail.checkpointed()), (23, 20));
    let empty = resume(2, &[], true, &[key.public_key()], ReplayWindow::none()).unwrap();
    assert_eq!((empty.size(), empty.checkpointed()), (0, 0));
    assert_eq!(LineageTail::empty().size(), 0);
}

#[test]
fn a_window_without_a_checkpoint_asks_for_more() {
    let key = EngineKey::from_seed([9; 32]);
    let all = frames(&key, 30, 10);
    // Frames after the last checkpoint only (records 20..30, no checkpoint).
    let last_cp = all.iter().rposition(|f| is_checkpoint(f)).unwrap();
    assert_eq!(
        resume(
            2,
            &all[last_cp + 1..],
            false,
            &[key.public_key()],
            ReplayWindow::none()
        )
        .unwrap_err(),
        ResumeError::NeedMore
    );
    // The checkpoint without the record it ends with: more needed too.
    assert_eq!(
        resume(
            2,
            &all[last_cp..],
            false,
            &[key.public_key()],
            ReplayWindow::none()
        )
        .unwrap_err(),
        ResumeError::NeedMore
    );
}

#[test]
fn a_broken_log_is_refused_never_extended() {
    let key = EngineKey::from_seed([9; 32]);
    let keys = [key.public_key()];
    let all = frames(&key, 30, 10);
    let broken = |frames: &[Vec<u8>]| match resume(2, frames, true, &keys, ReplayWindow::none()) {
        Err(ResumeError::Broken {
            partition: 2,
            error,
        }) => error,
        other => panic!("expected a broken log, got {other:?}"),
    };
    // A record dropped.
    let mut dropped = all.clone();
    dropped.remove(all.len() - 3);
    assert!(matches!(broken(&dropped), LineageError::Sequence { .. }));
    // A record edited (one byte), in the middle of the tail or the last
    // one a checkpoint covers (what the next record would chain from),
    // read from the log's start or from a window.
    for from_start in [true, false] {
        for back in [3, 2] {
            let mut edited = all.clone();
            let i = all.len() - back;
            assert!(!is_checkpoint(&edited[i]));
            let len = edited[i].len();
            edited[i][len - 40] ^= 1;
            let window = if from_start {
                &edited[..]
            } else {
                &edited[12..]
            };
            let e = match resume(2, window, from_start, &keys, ReplayWindow::none()) {
                Err(ResumeError::Broken { error, .. }) => error,
                other => panic!("from start {from_start}, back {back}: {other:?}"),
            };
            assert!(
                matches!(
                    e,
                    LineageError::Chain { .. }
                        | LineageError::Malformed { .. }
                        | LineageError::RootMismatch { .. }
                ),
                "{e}"
            );
        }
    }
    // A checkpoint signed by another key.
    let other = EngineKey::from_seed([1; 32]);
    let mut forged = all.clone();
    let mut w = LineageWriter::new(2);
    for i in 0..30 {
        w.append(&entry(i));
    }
    forged.push(w.checkpoint(&other, 1));
    assert!(matches!(broken(&forged), LineageError::Checkpoint { .. }));
    // Another partition's log.
    assert!(matches!(
        resume(7, &all, true, &keys, ReplayWindow::none()),
        Err(ResumeError::Broken { .. })
    ));
    // Records cut after a genuine checkpoint that was re-encoded without
    // its (unsigned) frontier: read from a window, the resume would start
    // from the earlier checkpoint and fork the chain under the later one.
    let twenty = all
        .iter()
        .position(|f| {
            is_checkpoint(f)
                && warrant_schemas::open_checkpoint(f, &Default::default())
                    .unwrap()
                    .size()
                    == 20
        })
        .unwrap();
    let c = warrant_schemas::open_checkpoint(&all[twenty], &Default::default()).unwrap();
    let bare = warrant_schemas::encode_checkpoint(&warrant_schemas::CheckpointFields {
        origin: c.origin(),
        size: c.size(),
        root: c.root().0,
        issued_at_us: c.issued_at_us(),
        engine_key_id: c.engine_key_id().0,
        signature: c.signature().0,
        frontier: &[],
    });
    // Records 0..14, the checkpoint at 10, and the bare one at 20.
    let mut cut: Vec<Vec<u8>> = all[..twenty].iter().take(16).cloned().collect();
    cut.push(bare);
    assert!(matches!(
        verify_log(
            2,
            &cut.iter()
                .filter(|f| !is_checkpoint(f))
                .cloned()
                .collect::<Vec<_>>(),
            &cut.iter()
                .filter(|f| is_checkpoint(f))
                .cloned()
                .collect::<Vec<_>>(),
            &keys
        ),
        Err(LineageError::Truncated { .. })
    ));
    for from_start in [true, false] {
        let window = if from_start { &cut[..] } else { &cut[3..] };
        let e = match resume(2, window, from_start, &keys, ReplayWindow::none()) {
            Err(ResumeError::Broken { error, .. }) => error,
            other => panic!("from start {from_start}: {other:?}"),
        };
        assert!(matches!(e, LineageError::Truncated { .. }), "{e}");
    }
}

#[test]
fn the_replay_memory_within_the_horizon_comes_back() {
    let key = EngineKey::from_seed([9; 32]);
    let keys = [key.public_key()];
    // Records i decided at 1_000 + i, remembered until 10_000 + i.
    let all = frames(&key, 40, 10);
    let at = |seq: u64| {
        let mut n = 0;
        all.iter()
            .position(|f| {
                let hit = !is_checkpoint(f) && n == seq;
                n += u64::from(!is_checkpoint(f));
                hit
            })
            .unwrap()
    };
    let window = ReplayWindow {
        now_us: 10_020,
        since_us: 1_030,
    };
    // Records 35.. only: decisions since 1_030 are missing.
    assert_eq!(
        resume(2, &all[at(35)..], false, &keys, window).unwrap_err(),
        ResumeError::NeedMore
    );
    // From record 25: everything since 1_030 is there; what is remembered
    // past 10_020 (records 21 and later, so 25 to 39 here) comes back.
    let tail = resume(2, &all[at(25)..], false, &keys, window).unwrap();
    let ids: Vec<u64> = tail
        .replay()
        .iter()
        .map(|e| u64::from_le_bytes(e.intent_digest[..8].try_into().unwrap()))
        .collect();
    assert_eq!(ids, (25..40).collect::<Vec<_>>());
    assert!(tail.replay().iter().all(|e| {
        let i = u64::from_le_bytes(e.intent_digest[..8].try_into().unwrap());
        e.nonce_key[0] as u64 == i && e.valid_until_us == 20_000 + i
    }));
    // From the start: all of them, whatever the window.
    let tail = resume(2, &all, true, &keys, window).unwrap();
    assert_eq!(tail.replay().len(), 19);
}

/// A record's sequence is read from the log: the largest one there is,
/// followed by another record, is a broken log, not an overflow.
#[test]
fn a_hostile_sequence_is_refused_not_overflowed() {
    let key = EngineKey::from_seed([9; 32]);
    let keys = [key.public_key()];
    let record = |sequence: u64| {
        let e = entry(7);
        warrant_schemas::encode_lineage_record(&warrant_schemas::LineageFields {
            partition: 2,
            sequence,
            prev_hash: [0; 32],
            decision_digest: e.decision_digest,
            intent_id: e.intent_id,
            parent_id: None,
            verdict: e.verdict,
            reason: e.reason,
            issued_at_us: e.issued_at_us,
            replay: e.replay,
            intent_digest: e.intent_digest,
            valid_until_us: e.valid_until_us,
        })
    };
    let window = [record(u64::MAX), record(0)];
    match resume(2, &window, false, &keys, ReplayWindow::none()) {
        Err(ResumeError::Broken {
            error: LineageError::Sequence { index: 1, .. },
            ..
        }) => {}
        other => panic!("expected a broken sequence, got {other:?}"),
    }
}

/// A stale owner (Z) and its successor (N) both extend the log from
/// record 20; the log then reads `…C20, rec20(Z), C21(Z), rec20(N) …`.
/// A takeover whose window begins at Z's checkpoint holds only N's records:
/// it must still see that Z's signed checkpoint does not fit them.
#[test]
fn a_takeover_refuses_a_log_a_stale_owner_forked() {
    let key = EngineKey::from_seed([9; 32]);
    let keys = [key.public_key()];
    let base = frames(&key, 20, 10);
    let tail = || resume(2, &base, true, &keys, ReplayWindow::none()).unwrap();
    let stale = |i: u64| Entry {
        decision_digest: [0xee; 32],
        ..entry(i)
    };
    for successor_records in [1u64, 10] {
        let mut z = LineageWriter::resume(2, tail());
        let mut n = LineageWriter::resume(2, tail());
        let mut log = base.clone();
        log.push(z.append(&stale(20)));
        log.push(z.checkpoint(&key, 7_000));
        let window_start = log.len() - 1;
        for i in 20..20 + successor_records {
            log.push(n.append(&entry(i)));
        }
        log.push(n.checkpoint(&key, 8_000));
        // The whole log: a duplicated sequence.
        assert!(matches!(
            resume(2, &log, true, &keys, ReplayWindow::none()),
            Err(ResumeError::Broken { .. })
        ));
        // A window from Z's checkpoint on: only N's records, but Z's root.
        let got = resume(2, &log[window_start..], false, &keys, ReplayWindow::none());
        assert!(
            matches!(got, Err(ResumeError::Broken { .. })),
            "successor wrote {successor_records}: {got:?}"
        );
    }
}
