//! The lineage log: per partition, an append-only hash chain of
//! `LineageRecord`s with signed Merkle checkpoints.
//!
//! # Format and invariants
//!
//! Per partition `p`, records are numbered `0, 1, 2, …` without gaps:
//!
//! - INVARIANT: record `n` has `sequence = n` and `partition = p`;
//! - INVARIANT: record `n`'s `prev_hash` is the chain hash of record
//!   `n − 1` (all zeros for record 0), where the chain hash of a record is
//!   its Merkle leaf hash, SHA-256(0x00 ‖ its exact bytes): one hash per
//!   record serves both the chain and the tree;
//! - a record's `decision_digest` is the Merkle leaf hash of the decision
//!   it logs ([`crate::seal::DecisionCore::leaf_hash`], which commits to
//!   every field but the batch proof and signature; an auditor recomputes it
//!   with [`crate::seal::decision_leaf_hash`]);
//! - the Merkle tree of the partition has the records' exact bytes as
//!   leaves ([`crate::merkle`], RFC 9162), in sequence order;
//! - a checkpoint signs, with the engine key,
//!   `CHECKPOINT_DOMAIN ‖ "<origin>\n<size>\n<hex root>\n"`, the body of a
//!   C2SP tlog-checkpoint, where `origin` is `warrant.lineage/<p>` and `root`
//!   is the root of the first `size` records.
//!
//! An edited record breaks the next record's `prev_hash` and every later
//! checkpoint root; a dropped, duplicated or reordered record breaks the
//! sequence; a truncated log is shorter than its last checkpoint; a forged
//! checkpoint fails its signature. [`verify_log`] reports the first of these.
//! The writer keeps the Merkle frontier (one hash per set bit of the size),
//! so each append and checkpoint costs `O(log n)`, whatever the log length.

use ed25519_dalek::VerifyingKey;
use warrant_schemas::wire::{Reason, Verdict};
use warrant_schemas::{
    CheckpointFields, Encoder, Limits, LineageFields, encode_checkpoint, open_checkpoint,
    open_lineage_record,
};

use crate::merkle::{self, Hash};
use crate::seal::EngineKey;

/// Domain prefix of a checkpoint signature.
pub const CHECKPOINT_DOMAIN: &[u8] = b"warrant.checkpoint.v1\x00";

/// The origin line of partition `p`'s log.
pub fn origin(partition: u32) -> String {
    format!("warrant.lineage/{partition}")
}

/// The message a checkpoint signature covers.
pub fn checkpoint_message(origin: &str, size: u64, root: &Hash) -> Vec<u8> {
    let mut m = CHECKPOINT_DOMAIN.to_vec();
    m.extend_from_slice(format!("{origin}\n{size}\n{}\n", hex::encode(root)).as_bytes());
    m
}

/// The Merkle frontier of an append-only tree: the roots of its maximal
/// perfect subtrees, largest first.
#[derive(Debug, Clone, Default)]
struct Frontier {
    size: u64,
    /// (subtree height, root), heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
}

impl Frontier {
    fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, top)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, merkle::node_hash(&top, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// The frontier whose subtree roots are `roots` (largest first) at
    /// `size`: one root per set bit of `size`, or `None`.
    fn from_roots(size: u64, roots: &[Hash]) -> Option<Frontier> {
        if roots.len() != size.count_ones() as usize {
            return None;
        }
        let heights = (0..64u32).rev().filter(|h| size & (1u64 << h) != 0);
        Some(Frontier {
            size,
            stack: heights.zip(roots.iter().copied()).collect(),
        })
    }

    fn roots(&self) -> Vec<Hash> {
        self.stack.iter().map(|&(_, r)| r).collect()
    }

    /// The RFC 9162 root: the perfect subtrees folded right to left.
    fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        match iter.next() {
            None => merkle::root(&[]),
            Some(&(_, last)) => iter.fold(last, |acc, (_, left)| merkle::node_hash(left, &acc)),
        }
    }
}

/// Appends records to one partition's log.
#[derive(Debug)]
pub struct LineageWriter {
    partition: u32,
    next_sequence: u64,
    prev_hash: Hash,
    frontier: Frontier,
    encoder: Encoder,
}

/// What the engine logs about one decision.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The decision's Merkle leaf hash (`DecisionCore::leaf_hash`).
    pub decision_digest: [u8; 32],
    /// Intent decided.
    pub intent_id: [u8; 16],
    /// Its parent intent, for chained executions.
    pub parent_id: Option<[u8; 16]>,
    /// Verdict.
    pub verdict: Verdict,
    /// Reason.
    pub reason: Reason,
    /// Decision time, µs since the epoch.
    pub issued_at_us: u64,
    /// The replay memory the decision left (nonce key bytes, remembered
    /// until, µs), if its verdict was remembered.
    pub replay: Option<([u8; 16], u64)>,
    /// The digest of the intent decided (`warrant_schemas::intent_digest`).
    pub intent_digest: [u8; 32],
    /// The decision's `valid_until_us` (0 for a deny).
    pub valid_until_us: u64,
}

impl LineageWriter {
    /// A writer for a new, empty partition log.
    pub fn new(partition: u32) -> Self {
        LineageWriter {
            partition,
            next_sequence: 0,
            prev_hash: [0; 32],
            frontier: Frontier::default(),
            encoder: Encoder::default(),
        }
    }

    /// The sequence number the next record will get.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Appends one record; returns its bytes.
    pub fn append(&mut self, e: &Entry) -> Vec<u8> {
        let bytes = self.encoder.lineage_record(&LineageFields {
            partition: self.partition,
            sequence: self.next_sequence,
            prev_hash: self.prev_hash,
            decision_digest: e.decision_digest,
            intent_id: e.intent_id,
            parent_id: e.parent_id,
            verdict: e.verdict,
            reason: e.reason,
            issued_at_us: e.issued_at_us,
            replay: e.replay,
            intent_digest: e.intent_digest,
            valid_until_us: e.valid_until_us,
        });
        let leaf = merkle::leaf_hash(&bytes);
        self.prev_hash = leaf;
        self.frontier.push(leaf);
        self.next_sequence += 1;
        bytes
    }

    /// A signed checkpoint of everything appended so far.
    pub fn checkpoint(&self, key: &EngineKey, now_us: u64) -> Vec<u8> {
        let origin = origin(self.partition);
        let root = self.frontier.root();
        let signature = key.sign(&checkpoint_message(&origin, self.frontier.size, &root));
        encode_checkpoint(&CheckpointFields {
            origin: &origin,
            size: self.frontier.size,
            root,
            issued_at_us: now_us,
            engine_key_id: key.id(),
            signature,
            frontier: &self.frontier.roots(),
        })
    }

    /// A writer that continues a partition's log from `tail` (see [`resume`]).
    pub fn resume(partition: u32, tail: LineageTail) -> Self {
        LineageWriter {
            partition,
            next_sequence: tail.frontier.size,
            prev_hash: tail.prev_hash,
            frontier: tail.frontier,
            encoder: Encoder::default(),
        }
    }
}

/// Where a partition's log ends, as an engine taking the partition over
/// found it: enough to append the next record and sign the next checkpoint,
/// and the replay memory the log's recent decisions left.
#[derive(Debug, Clone, Default)]
pub struct LineageTail {
    frontier: Frontier,
    prev_hash: Hash,
    checkpointed: u64,
    replay: Vec<ReplayEntry>,
}

/// One remembered nonce, as a lineage record carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayEntry {
    /// Key of (principal, nonce) (`replay::NonceKey` bytes).
    pub nonce_key: [u8; 16],
    /// The digest (`warrant_schemas::intent_digest`) of the intent that used it (zeros in a record
    /// written before the field existed: then any intent using the nonce
    /// again is a replay).
    pub intent_digest: [u8; 32],
    /// The verdict remembered.
    pub verdict: Verdict,
    /// Its reason.
    pub reason: Reason,
    /// The decision's `valid_until_us` (0 for a deny).
    pub valid_until_us: u64,
    /// Remembered until, µs since the epoch.
    pub until_us: u64,
}

/// Which replay memory [`resume`] must recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Entries remembered until after this instant are kept (µs).
    pub now_us: u64,
    /// Every record decided at or after this instant must be read (µs):
    /// decisions older than the engine's replay horizon (maximum intent age
    /// plus clock skew) cannot have left memory that is still live.
    pub since_us: u64,
}

impl ReplayWindow {
    /// No replay memory needed (the lineage chain only).
    pub fn none() -> Self {
        ReplayWindow {
            now_us: u64::MAX,
            since_us: u64::MAX,
        }
    }
}

impl LineageTail {
    /// The tail of an empty log.
    pub fn empty() -> Self {
        LineageTail::default()
    }

    /// Records in the log.
    pub fn size(&self) -> u64 {
        self.frontier.size
    }

    /// The replay memory recovered (see [`ReplayWindow`]), in log order.
    pub fn replay(&self) -> &[ReplayEntry] {
        &self.replay
    }

    /// Takes the replay memory out of the tail.
    pub fn take_replay(&mut self) -> Vec<ReplayEntry> {
        std::mem::take(&mut self.replay)
    }

    /// Records the largest checkpoint read covers; less than [`size`]
    /// when the previous writer stopped before signing its last records
    /// (killed), which the next checkpoint then covers.
    ///
    /// [`size`]: LineageTail::size
    pub fn checkpointed(&self) -> u64 {
        self.checkpointed
    }
}

/// Appends `leaf`, then checks the root against every signed (size, root)
/// of that size.
fn push_checked(
    frontier: &mut Frontier,
    leaf: Hash,
    signed: &[(u64, Hash)],
) -> Result<(), LineageError> {
    frontier.push(leaf);
    if signed
        .iter()
        .any(|&(size, root)| size == frontier.size && root != frontier.root())
    {
        return Err(LineageError::RootMismatch {
            index: 0,
            size: frontier.size,
        });
    }
    Ok(())
}

/// No signed checkpoint may cover more records than the frontier holds.
fn signs_no_more(frontier: &Frontier, signed: &[(u64, Hash)]) -> Result<(), LineageError> {
    match signed.iter().map(|s| s.0).max() {
        Some(size) if size > frontier.size => Err(LineageError::Truncated {
            index: 0,
            size,
            present: frontier.size,
        }),
        _ => Ok(()),
    }
}

/// Why [`resume`] could not find where a log ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The records read do not reach back to a usable checkpoint (one with
    /// a frontier whose last record was read too): read further back.
    #[error("no checkpoint with a frontier among the records read: read further back")]
    NeedMore,
    /// The log itself is broken; appending to it would hide that.
    #[error("lineage log of partition {partition}: {error}")]
    Broken {
        /// Partition.
        partition: u32,
        /// The first problem.
        error: LineageError,
    },
}

/// Finds where partition `partition`'s log ends, from its last frames in
/// log order (`frames`: records and checkpoints, as written to the lineage
/// topic), `from_start` when they begin at the log's first frame.
///
/// Without `from_start`, the frames must include a checkpoint signed by
/// one of `engine_keys` that carries its frontier, and the record that
/// checkpoint ends with: the earliest such checkpoint's frontier is checked
/// against its signed root, then every record after it is checked
/// (sequence, partition, chain) and added, and every later checkpoint
/// compared with the tree so grown. Two checkpoints signing different roots
/// for one size (a fork) are refused. A log that does not verify is
/// [`ResumeError::Broken`]: an engine must not extend it.
pub fn resume(
    partition: u32,
    frames: &[Vec<u8>],
    from_start: bool,
    engine_keys: &[[u8; 32]],
    window: ReplayWindow,
) -> Result<LineageTail, ResumeError> {
    let limits = Limits::default();
    let broken = |error: LineageError| ResumeError::Broken { partition, error };
    let mut records: Vec<(u64, Hash, Hash)> = Vec::new(); // (sequence, prev_hash, leaf)
    // Every checkpoint that carries its frontier: (size, root, frontier).
    let mut frontiers: Vec<(u64, Hash, Vec<Hash>)> = Vec::new();
    let mut signed: Vec<(u64, Hash)> = Vec::new(); // every checkpoint's (size, root)
    let mut record_index = 0usize;
    let mut replay = Vec::new();
    let mut oldest_us: Option<u64> = None;
    for (index, bytes) in frames.iter().enumerate() {
        if bytes.get(4..8) == Some(warrant_schemas::CHECKPOINT_IDENTIFIER.as_bytes()) {
            let bad = |message: String| broken(LineageError::Checkpoint { index, message });
            let c = open_checkpoint(bytes, &limits).map_err(|e| bad(format!("malformed: {e}")))?;
            if c.origin() != origin(partition) {
                // The log's bytes: escaped, never printed raw.
                return Err(bad(format!("origin {:?}", c.origin())));
            }
            let key = engine_keys
                .iter()
                .find(|k| warrant_schemas::key_id(k) == c.engine_key_id().0)
                .ok_or_else(|| bad("signed by an unknown engine key".into()))?;
            let vk = VerifyingKey::from_bytes(key)
                .map_err(|_| bad("engine key is not a valid point".into()))?;
            let sig = ed25519_dalek::Signature::from_bytes(&c.signature().0);
            vk.verify_strict(&checkpoint_message(c.origin(), c.size(), &c.root().0), &sig)
                .map_err(|_| bad("signature does not verify (forged checkpoint)".into()))?;
            signed.push((c.size(), c.root().0));
            if let Some(f) = c.frontier() {
                frontiers.push((c.size(), c.root().0, f.iter().map(|h| h.0).collect()));
            }
            continue;
        }
        let r = open_lineage_record(bytes, &limits).map_err(|e| {
            broken(LineageError::Malformed {
                index,
                message: e.to_string(),
            })
        })?;
        if r.partition() != partition {
            return Err(broken(LineageError::WrongPartition {
                index,
                expected: partition,
                found: r.partition(),
            }));
        }
        if let Some(&(last, _, leaf)) = records.last() {
            // `last` came from the log: the largest sequence has no next.
            let expected = last.checked_add(1);
            if expected != Some(r.sequence()) {
                return Err(broken(LineageError::Sequence {
                    index: record_index,
                    expected: expected.unwrap_or(last),
                    found: r.sequence(),
                }));
            }
            if r.prev_hash().0 != leaf {
                return Err(broken(LineageError::Chain {
                    index: record_index,
                    edited: None,
                }));
            }
        }
        records.push((r.sequence(), r.prev_hash().0, merkle::leaf_hash(bytes)));
        record_index += 1;
        oldest_us.get_or_insert(r.issued_at_us());
        if let Some(k) = r.nonce_key()
            && r.remember_until_us() > window.now_us
        {
            replay.push(ReplayEntry {
                nonce_key: k.0,
                intent_digest: r.intent_digest().map_or([0; 32], |d| d.0),
                verdict: r.verdict(),
                reason: r.reason(),
                valid_until_us: r.valid_until_us(),
                until_us: r.remember_until_us(),
            });
        }
    }
    // Two signatures over one size with different roots: the log forked
    // (a stale writer and its successor both extended it).
    let mut sizes = signed.clone();
    sizes.sort_unstable();
    if let Some((a, _)) = sizes
        .iter()
        .zip(sizes.iter().skip(1))
        .find(|(a, b)| a.0 == b.0 && a.1 != b.1)
    {
        return Err(broken(LineageError::RootMismatch {
            index: 0,
            size: a.0,
        }));
    }
    let first = records.first().map(|r| r.0);
    // From the log's start: rebuild everything from record 0.
    if from_start && first.is_none_or(|s| s == 0) {
        let mut frontier = Frontier::default();
        let mut prev = [0u8; 32];
        for (index, &(_, p, leaf)) in records.iter().enumerate() {
            if p != prev {
                return Err(broken(LineageError::Chain {
                    index,
                    edited: None,
                }));
            }
            push_checked(&mut frontier, leaf, &signed).map_err(broken)?;
            prev = leaf;
        }
        signs_no_more(&frontier, &signed).map_err(broken)?;
        let checkpointed = signed.iter().map(|s| s.0).max().unwrap_or(0);
        return Ok(LineageTail {
            frontier,
            prev_hash: prev,
            checkpointed,
            replay,
        });
    }
    // Everything decided within the replay horizon must have been read.
    if oldest_us.is_none_or(|t| t > window.since_us) {
        return Err(ResumeError::NeedMore);
    }
    let (Some(first), Some(&(last, _, last_leaf))) = (first, records.last()) else {
        return Err(ResumeError::NeedMore);
    };
    // Start from the *earliest* checkpoint whose last record was read (its
    // leaf is the next record's prev_hash), so that every later checkpoint
    // is compared with the records read: starting from the latest would
    // leave an earlier one unchecked, and with it a fork that one signs.
    let (size, root, roots) = frontiers
        .into_iter()
        .filter(|c| c.0 > first)
        .min_by_key(|c| c.0)
        .ok_or(ResumeError::NeedMore)?;
    // Nothing may be missing after it.
    if size - 1 > last {
        return Err(broken(LineageError::Truncated {
            index: 0,
            size,
            present: last + 1,
        }));
    }
    let mut frontier = Frontier::from_roots(size, &roots).ok_or_else(|| {
        broken(LineageError::Checkpoint {
            index: 0,
            message: format!("frontier of {} hashes for size {size}", roots.len()),
        })
    })?;
    if frontier.root() != root {
        return Err(broken(LineageError::RootMismatch { index: 0, size }));
    }
    // The chain goes on from the checkpoint's last record, so that record
    // is checked against the signed tree: the frontier's last root is the
    // perfect subtree over the last 2^h records (h = trailing zeros of
    // `size`); when the window holds them, their root must match. (When it
    // does not, `verify_log`, the full audit, still catches an edit.)
    let skip = usize::try_from(size - first).unwrap_or(usize::MAX);
    let span = 1u64 << size.trailing_zeros();
    if size - span >= first {
        let from = usize::try_from(size - span - first).unwrap_or(usize::MAX);
        let leaves: Vec<Hash> = records
            .iter()
            .skip(from)
            .take(usize::try_from(span).unwrap_or(usize::MAX))
            .map(|r| r.2)
            .collect();
        if Some(merkle::root(&leaves)) != roots.last().copied() {
            return Err(broken(LineageError::RootMismatch { index: 0, size }));
        }
    }
    // The records after it must agree with every other checkpoint read
    // (one without a frontier is still signed), and none may sign more
    // records than there are: the chain would fork under it.
    for &(_, _, leaf) in records.iter().skip(skip) {
        push_checked(&mut frontier, leaf, &signed).map_err(broken)?;
    }
    signs_no_more(&frontier, &signed).map_err(broken)?;
    let checkpointed = signed.iter().map(|s| s.0).max().unwrap_or(size);
    Ok(LineageTail {
        frontier,
        prev_hash: last_leaf,
        checkpointed,
        replay,
    })
}

/// The first problem [`verify_log`] found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineageError {
    /// A record is not a valid `LineageRecord`.
    #[error("record {index}: malformed: {message}")]
    Malformed {
        /// Position in the log given.
        index: usize,
        /// The reader's error.
        message: String,
    },
    /// A log file's framing is broken (see [`file`]).
    #[error("frame {index} (at byte {offset}): {message}")]
    Frame {
        /// Frame number in the file, records and checkpoints counted alike.
        index: usize,
        /// Where the frame starts.
        offset: usize,
        /// What is wrong.
        message: String,
    },
    /// A record of another partition.
    #[error("record {index}: belongs to partition {found}, not {expected}")]
    WrongPartition {
        /// Position.
        index: usize,
        /// Partition expected.
        expected: u32,
        /// Partition found.
        found: u32,
    },
    /// A gap, duplicate or reordering.
    #[error(
        "record {index}: sequence {found} where {expected} was due (dropped, duplicated or reordered record)"
    )]
    Sequence {
        /// Position.
        index: usize,
        /// Sequence due.
        expected: u64,
        /// Sequence found.
        found: u64,
    },
    /// `prev_hash` does not match the previous record.
    #[error("record {index}: prev_hash does not match record {}: {}", index.saturating_sub(1), edited_text(*index, *edited))]
    Chain {
        /// Position of the record whose `prev_hash` does not match.
        index: usize,
        /// The record that was edited, when the next record tells: record
        /// `index` if its own bytes no longer hash to the next record's
        /// `prev_hash`, else record `index - 1`.
        edited: Option<usize>,
    },
    /// A checkpoint is malformed, for another log, or not signed by a trusted key.
    #[error("checkpoint {index}: {message}")]
    Checkpoint {
        /// Position among the checkpoints.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint's root differs from the records' (records edited after checkpointing).
    #[error("checkpoint {index}: root does not match records 0..{size} (a record was edited)")]
    RootMismatch {
        /// Position among the checkpoints.
        index: usize,
        /// Its size.
        size: u64,
    },
    /// Records past the last checkpoint given: nothing signed vouches for
    /// them (a whole log ends with a checkpoint: the engine checkpoints a
    /// partition at most every `checkpoint_interval`, when idle after it,
    /// and when it drains).
    #[error("records {covered}..{records} are not covered by any checkpoint (unsigned tail)")]
    Uncovered {
        /// Records the largest checkpoint covers.
        covered: u64,
        /// Records present.
        records: u64,
    },
    /// The log is shorter than a checkpoint says it was.
    #[error("checkpoint {index} covers {size} records but the log holds {present} (truncated)")]
    Truncated {
        /// Position among the checkpoints.
        index: usize,
        /// Its size.
        size: u64,
        /// Records present.
        present: u64,
    },
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReport {
    /// Records verified.
    pub records: u64,
    /// Checkpoints verified.
    pub checkpoints: usize,
    /// Records authorizing.
    pub authorized: u64,
    /// Records linking to a parent intent.
    pub chained: u64,
}

/// Verifies one partition's log: every record in order, every checkpoint
/// against the records and `engine_keys` (public keys), and that the
/// largest checkpoint covers every record. Checkpoints may be given in any
/// order, and intermediate ones may be missing: the last one's signed root
/// authenticates every record before it.
pub fn verify_log(
    partition: u32,
    records: &[Vec<u8>],
    checkpoints: &[Vec<u8>],
    engine_keys: &[[u8; 32]],
) -> Result<LogReport, LineageError> {
    let limits = Limits::default();
    let mut frontier = Frontier::default();
    // Every checkpoint, by the prefix length it names, with its root or
    // what is wrong with it. A bad checkpoint is reported where the log
    // reaches its size, so a bad record before it is reported first (the
    // first problem in log order); one whose size cannot be read comes
    // after every record.
    let mut wanted: Vec<Pending> = Vec::new();
    for (index, bytes) in checkpoints.iter().enumerate() {
        let bad = |message: String| LineageError::Checkpoint { index, message };
        let c = match open_checkpoint(bytes, &limits) {
            Ok(c) => c,
            Err(e) => {
                wanted.push(Pending {
                    index,
                    size: u64::MAX,
                    root: Err(bad(format!("malformed: {e}"))),
                });
                continue;
            }
        };
        let root = checkpoint_root(partition, &c, engine_keys).map_err(bad);
        wanted.push(Pending {
            index,
            size: c.size(),
            root,
        });
    }
    wanted.sort_by_key(|w| w.size);
    let mut next_check = wanted.iter().peekable();
    let mut prev_hash = [0u8; 32];
    let mut report = LogReport {
        records: 0,
        checkpoints: 0,
        authorized: 0,
        chained: 0,
    };
    for (index, bytes) in records.iter().enumerate() {
        let r = open_lineage_record(bytes, &limits).map_err(|e| LineageError::Malformed {
            index,
            message: e.to_string(),
        })?;
        if r.partition() != partition {
            return Err(LineageError::WrongPartition {
                index,
                expected: partition,
                found: r.partition(),
            });
        }
        let expected = index as u64;
        if r.sequence() != expected {
            return Err(LineageError::Sequence {
                index,
                expected,
                found: r.sequence(),
            });
        }
        let leaf = merkle::leaf_hash(bytes);
        if r.prev_hash().0 != prev_hash {
            // Which side of the link changed: if the next record still
            // chains to this one, this one is intact and the one before
            // was edited; if not, this one was.
            let edited = records
                .get(index + 1)
                .and_then(|b| open_lineage_record(b, &limits).ok())
                .map(|next| {
                    if next.prev_hash().0 == leaf {
                        index.saturating_sub(1)
                    } else {
                        index
                    }
                });
            return Err(LineageError::Chain { index, edited });
        }
        // Checkpoints over the records before this one are compared only
        // now that this one's link is checked: an edit to a batch's last
        // record is reported as that record (the chain breaks after it),
        // not as a root that no longer matches.
        report.checkpoints += check_roots(&frontier, &mut next_check)?;
        prev_hash = leaf;
        frontier.push(leaf);
        report.records += 1;
        report.authorized += u64::from(r.verdict() == Verdict::Authorize);
        report.chained += u64::from(r.parent_id().is_some());
    }
    report.checkpoints += check_roots(&frontier, &mut next_check)?;
    if let Some(w) = next_check.next() {
        return Err(match &w.root {
            // A bad checkpoint past the end says more than "truncated".
            Err(e) => e.clone(),
            Ok(_) => LineageError::Truncated {
                index: w.index,
                size: w.size,
                present: frontier.size,
            },
        });
    }
    // INVARIANT: every record must sit under a verified checkpoint. The
    // chain alone is unkeyed SHA-256: anyone can rewrite and rechain records
    // that no signed root covers.
    let covered = wanted.last().map_or(0, |w| w.size);
    if covered < frontier.size {
        return Err(LineageError::Uncovered {
            covered,
            records: frontier.size,
        });
    }
    Ok(report)
}

/// A checkpoint waiting for the log to reach its size.
struct Pending {
    /// Position among the checkpoints given.
    index: usize,
    /// Records it covers (`u64::MAX` when unreadable).
    size: u64,
    /// Its signed root, or why it cannot be trusted.
    root: Result<Hash, LineageError>,
}

/// The root a checkpoint signs, once its origin is this partition's and
/// its signature verifies under one of `engine_keys`.
fn checkpoint_root(
    partition: u32,
    c: &warrant_schemas::wire::Checkpoint<'_>,
    engine_keys: &[[u8; 32]],
) -> Result<Hash, String> {
    let expected_origin = origin(partition);
    if c.origin() != expected_origin {
        return Err(format!(
            "origin {:?} is not `{expected_origin}`",
            c.origin()
        ));
    }
    let key = engine_keys
        .iter()
        .find(|k| warrant_schemas::key_id(k) == c.engine_key_id().0)
        .ok_or_else(|| {
            format!(
                "signed by unknown engine key `{}`",
                hex::encode(c.engine_key_id().0)
            )
        })?;
    let vk = VerifyingKey::from_bytes(key).map_err(|_| "engine key is not a valid point")?;
    let sig = ed25519_dalek::Signature::from_bytes(&c.signature().0);
    vk.verify_strict(&checkpoint_message(c.origin(), c.size(), &c.root().0), &sig)
        .map_err(|_| "signature does not verify (forged checkpoint)")?;
    Ok(c.root().0)
}

/// Compares every checkpoint of the frontier's size (next in `pending`,
/// sorted by size) with its root, and returns how many matched. A bad
/// checkpoint of this size is reported here.
fn check_roots<'a, I>(
    frontier: &Frontier,
    pending: &mut std::iter::Peekable<I>,
) -> Result<usize, LineageError>
where
    I: Iterator<Item = &'a Pending>,
{
    let mut matched = 0;
    while let Some(w) = pending.peek() {
        if w.size != frontier.size {
            break;
        }
        match &w.root {
            Err(e) => return Err(e.clone()),
            Ok(root) if *root != frontier.root() => {
                return Err(LineageError::RootMismatch {
                    index: w.index,
                    size: w.size,
                });
            }
            Ok(_) => matched += 1,
        }
        pending.next();
    }
    Ok(matched)
}

fn edited_text(index: usize, edited: Option<usize>) -> String {
    match edited {
        Some(e) => format!("record {e} was edited"),
        None => format!("record {} or {index} was edited", index.saturating_sub(1)),
    }
}

/// A lineage log file: frames of `u32` little-endian length, then that many
/// bytes, each frame a `LineageRecord` (`WLR1`) or a `Checkpoint` (`WCP1`),
/// in the order the engine appended them. `warrant lineage verify` reads it.
pub mod file {
    use super::{LineageError, LogReport, verify_log};

    /// Appends one frame.
    pub fn push_frame(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(bytes);
    }

    /// A log file's frames, sorted by kind, each kind in file order.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Frames {
        /// `LineageRecord` frames.
        pub records: Vec<Vec<u8>>,
        /// `Checkpoint` frames.
        pub checkpoints: Vec<Vec<u8>>,
    }

    /// Splits a log file into records and checkpoints, by file identifier.
    pub fn split(data: &[u8]) -> Result<Frames, LineageError> {
        let limits = warrant_schemas::Limits::default();
        let mut records = Vec::new();
        let mut checkpoints = Vec::new();
        let mut rest = data;
        let mut index = 0usize;
        while !rest.is_empty() {
            let offset = data.len() - rest.len();
            let malformed = |message: &str| LineageError::Frame {
                index,
                offset,
                message: message.into(),
            };
            let (len, tail) = rest
                .split_at_checked(4)
                .ok_or_else(|| malformed("truncated frame length"))?;
            let len =
                u32::from_le_bytes(len.try_into().map_err(|_| malformed("frame length"))?) as usize;
            // Bounded before anything is copied: a file of zeros would
            // otherwise become millions of empty frames, each an allocation.
            if len > limits.max_buffer_bytes {
                return Err(malformed(&format!(
                    "frame of {len} bytes is longer than any record or checkpoint ({} bytes at most)",
                    limits.max_buffer_bytes
                )));
            }
            let (frame, tail) = tail
                .split_at_checked(len)
                .ok_or_else(|| malformed("truncated frame"))?;
            match frame.get(4..8) {
                Some(id) if id == warrant_schemas::CHECKPOINT_IDENTIFIER.as_bytes() => {
                    checkpoints.push(frame.to_vec())
                }
                Some(id) if id == warrant_schemas::LINEAGE_RECORD_IDENTIFIER.as_bytes() => {
                    records.push(frame.to_vec())
                }
                _ => {
                    return Err(malformed(
                        "neither a lineage record (WLR1) nor a checkpoint (WCP1)",
                    ));
                }
            }
            rest = tail;
            index += 1;
        }
        Ok(Frames {
            records,
            checkpoints,
        })
    }

    /// Sorts a stream of (partition, record or checkpoint) frames, as the
    /// engine emits them, into each partition's records and checkpoints.
    pub fn by_partition(frames: &[(u32, Vec<u8>)]) -> std::collections::BTreeMap<u32, Frames> {
        let mut out: std::collections::BTreeMap<u32, Frames> = Default::default();
        for (p, bytes) in frames {
            let e = out.entry(*p).or_default();
            if bytes.get(4..8) == Some(warrant_schemas::CHECKPOINT_IDENTIFIER.as_bytes()) {
                e.checkpoints.push(bytes.clone());
            } else {
                e.records.push(bytes.clone());
            }
        }
        out
    }

    /// Verifies a log file of one partition.
    pub fn verify(
        partition: u32,
        data: &[u8],
        engine_keys: &[[u8; 32]],
    ) -> Result<LogReport, LineageError> {
        let frames = split(data)?;
        verify_log(partition, &frames.records, &frames.checkpoints, engine_keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_file_frame_that_is_no_record_or_checkpoint_is_refused_where_it_is() {
        let frame_error = |data: &[u8]| match file::split(data) {
            Err(LineageError::Frame { index, offset, .. }) => (index, offset),
            other => panic!("{other:?}"),
        };
        // A file of zeros: an empty frame first, refused at once (it used to
        // become one allocation per four bytes of the file).
        assert_eq!(frame_error(&vec![0u8; 4 << 20]), (0, 0));
        // A length beyond any record or checkpoint, before it is read.
        let mut big = Vec::new();
        file::push_frame(&mut big, &vec![0u8; 64 * 1024 + 1]);
        assert_eq!(frame_error(&big), (0, 0));
        // A well-framed frame of neither kind, after a good one.
        let mut w = LineageWriter::new(0);
        let mut data = Vec::new();
        let record = w.append(&Entry {
            decision_digest: [1; 32],
            intent_id: [2; 16],
            parent_id: None,
            verdict: Verdict::Deny,
            reason: Reason::BadSignature,
            issued_at_us: 1,
            replay: None,
            intent_digest: [0; 32],
            valid_until_us: 0,
        });
        file::push_frame(&mut data, &record);
        file::push_frame(&mut data, b"\x08\0\0\0WXYZ\0\0\0\0");
        assert_eq!(frame_error(&data), (1, 4 + record.len()));
        data.truncate(4 + record.len());
        assert_eq!(file::split(&data).map(|f| f.records.len()), Ok(1));
    }

    #[test]
    fn frontier_root_equals_full_tree_root() {
        let mut f = Frontier::default();
        let mut leaves = Vec::new();
        for i in 0..70u64 {
            assert_eq!(f.root(), merkle::root(&leaves), "size {i}");
            let l = merkle::leaf_hash(&i.to_le_bytes());
            leaves.push(l);
            f.push(l);
        }
    }
}
