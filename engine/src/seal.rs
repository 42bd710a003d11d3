//! Sealing decisions: Merkle-batched engine signatures, and the offline
//! check an executor runs before it acts.
//!
//! # What is signed
//!
//! Each decision's *leaf* is a fixed binary encoding of its content
//! ([`DecisionCore::leaf_bytes`]): [`DECISION_LEAF_DOMAIN`], then every
//! field in a fixed order, integers little-endian, strings prefixed by their
//! `u32` length. The engine builds a Merkle tree ([`crate::merkle`]) over the
//! leaves of a batch and signs, once per batch,
//! `BATCH_SIGNING_DOMAIN ‖ engine key id ‖ root ‖ batch size (u32 LE)`.
//! Every `Decision` carries the root, its leaf index, the batch size, its
//! inclusion proof and that signature, so it verifies on its own, offline.
//!
//! The verifier recomputes the leaf from the fields it reads out of the
//! decision: a change to any field's value changes the leaf, breaks the
//! proof, and the decision is refused. The leaf, not the buffer, names a
//! decision: the same values can be laid out in other FlatBuffers bytes,
//! and an absent `rule_id` or `policy_hash` reads as empty or zero, so
//! identify a decision by [`decision_leaf_hash`] (as lineage does), never
//! by a hash of its bytes. The leaf domain names the format version: a
//! change to the leaf's fields changes [`DECISION_LEAF_DOMAIN`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use warrant_schemas::wire::{Reason, Verdict};
use warrant_schemas::{DecisionFields, Encoder, KeyId, Limits, WireError, key_id, open_decision};
use zeroize::Zeroizing;

use crate::merkle::{self, Hash};

/// Domain prefix of a decision leaf.
pub const DECISION_LEAF_DOMAIN: &[u8] = b"warrant.decision-leaf.v1\x00";
/// Domain prefix of a batch signature.
pub const BATCH_SIGNING_DOMAIN: &[u8] = b"warrant.decision-batch.v1\x00";

/// Why an engine key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("key file `{path}`: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The file does not hold a 64-hex-digit seed.
    #[error("key file `{path}` does not hold a 32-byte hex seed")]
    Format {
        /// The path.
        path: String,
    },
    /// Group or others may read the secret.
    #[error(
        "key file `{path}` is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    Permissions {
        /// The path.
        path: String,
        /// Its mode bits.
        mode: u32,
    },
}

/// The engine's signing key. `Debug` shows only the key id; the secret is
/// never formatted.
pub struct EngineKey {
    key: SigningKey,
    id: KeyId,
}

impl std::fmt::Debug for EngineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineKey")
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

impl EngineKey {
    /// A key from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        EngineKey::from_secret(&seed)
    }

    /// A key from a seed held elsewhere (and wiped there), not copied.
    fn from_secret(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let id = key_id(key.verifying_key().as_bytes());
        EngineKey { key, id }
    }

    /// Generates a key and writes its seed (hex) to a new file with mode
    /// 0600. Refuses to overwrite an existing file.
    pub fn generate(path: &Path) -> Result<Self, KeyFileError> {
        let io = |e: std::io::Error| KeyFileError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        // The seed and its hex text are wiped when dropped, as the signing
        // key is: no copy of the secret is left in freed memory.
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|e| KeyFileError::Io {
            path: path.display().to_string(),
            message: format!("no randomness: {e}"),
        })?;
        let mut text = Zeroizing::new([b'\n'; 65]);
        let (digits, _newline) = text.split_at_mut(64);
        hex::encode_to_slice(seed.as_slice(), digits).map_err(|_| KeyFileError::Format {
            path: path.display().to_string(),
        })?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io)?;
        file.write_all(text.as_slice()).map_err(io)?;
        Ok(EngineKey::from_secret(&seed))
    }

    /// Loads a key file written by [`EngineKey::generate`] (`warrant keygen`).
    /// Refuses a file that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let shown = || path.display().to_string();
        let io = |e: std::io::Error| KeyFileError::Io {
            path: shown(),
            message: e.to_string(),
        };
        // One open: the permissions checked are those of the file read
        // (a path swapped between a `stat` and an `open` is not).
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            // A FIFO or a device would hang the read or never end it.
            return Err(KeyFileError::Io {
                path: shown(),
                message: "not a regular file".into(),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Permissions {
                    path: shown(),
                    mode: mode & 0o777,
                });
            }
        }
        // 64 hex digits and some whitespace; anything much longer is not
        // a key file, and is not read whole.
        const MOST: u64 = 256;
        let mut text = Zeroizing::new(Vec::with_capacity(MOST as usize + 1));
        std::io::Read::read_to_end(&mut std::io::Read::take(&file, MOST + 1), &mut text)
            .map_err(io)?;
        if text.len() as u64 > MOST {
            return Err(KeyFileError::Format { path: shown() });
        }
        let hex_text = text.trim_ascii();
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_text, seed.as_mut_slice())
            .map_err(|_| KeyFileError::Format { path: shown() })?;
        Ok(EngineKey::from_secret(&seed))
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The key id decisions name.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Signs `message` (batch roots, checkpoints).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// The content of a decision: everything but its batch proof and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionCore<'a> {
    /// Intent decided.
    pub intent_id: [u8; 16],
    /// The intent's digest (`warrant_schemas::intent_digest`).
    pub intent_digest: [u8; 32],
    /// Authorize or deny.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// Deciding rule id, empty if none.
    pub rule_id: &'a str,
    /// Hash of the policy evaluated.
    pub policy_hash: [u8; 32],
    /// Its version.
    pub policy_version: u64,
    /// Decision time, µs since the epoch.
    pub issued_at_us: u64,
    /// End of validity, µs since the epoch.
    pub valid_until_us: u64,
    /// Executor audience.
    pub audience: &'a str,
    /// Lineage partition.
    pub lineage_partition: u32,
    /// Lineage sequence.
    pub lineage_sequence: u64,
}

impl DecisionCore<'_> {
    /// The leaf encoding (see the module docs), under `engine_key_id`.
    pub fn leaf_bytes(&self, engine_key_id: &KeyId) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            DECISION_LEAF_DOMAIN.len() + 220 + self.rule_id.len() + self.audience.len(),
        );
        self.write_leaf(engine_key_id, |part| b.extend_from_slice(part));
        b
    }

    /// The Merkle leaf hash of [`Self::leaf_bytes`], hashed as it is
    /// written: no buffer per decision on the sealing and verifying paths.
    pub fn leaf_hash(&self, engine_key_id: &KeyId) -> Hash {
        let mut h = Sha256::new().chain_update([0u8]);
        self.write_leaf(engine_key_id, |part| h.update(part));
        h.finalize().into()
    }

    /// Writes the leaf encoding, part by part.
    fn write_leaf(&self, engine_key_id: &KeyId, mut put: impl FnMut(&[u8])) {
        let len = |s: &str| u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes();
        put(DECISION_LEAF_DOMAIN);
        put(engine_key_id);
        put(&self.intent_id);
        put(&self.intent_digest);
        put(&[self.verdict.0]);
        put(&self.reason.0.to_le_bytes());
        put(&len(self.rule_id));
        put(self.rule_id.as_bytes());
        put(&self.policy_hash);
        put(&self.policy_version.to_le_bytes());
        put(&self.issued_at_us.to_le_bytes());
        put(&self.valid_until_us.to_le_bytes());
        put(&len(self.audience));
        put(self.audience.as_bytes());
        put(&self.lineage_partition.to_le_bytes());
        put(&self.lineage_sequence.to_le_bytes());
    }
}

/// The message a batch signature covers.
pub fn batch_message(engine_key_id: &KeyId, root: &Hash, size: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(BATCH_SIGNING_DOMAIN.len() + 16 + 32 + 4);
    m.extend_from_slice(BATCH_SIGNING_DOMAIN);
    m.extend_from_slice(engine_key_id);
    m.extend_from_slice(root);
    m.extend_from_slice(&size.to_le_bytes());
    m
}

/// Why a batch could not be sealed. The engine must never issue a decision
/// that executors would refuse as malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A string field is longer than executors' readers accept.
    #[error("decision {index}: `{field}` is {len} bytes, over the limit of {max}")]
    FieldTooLong {
        /// Position in the batch.
        index: usize,
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The readers' limit.
        max: usize,
    },
    /// A decision names no audience (executors refuse those).
    #[error("decision {index} names no audience")]
    NoAudience {
        /// Position in the batch.
        index: usize,
    },
    /// More decisions than a batch can number.
    #[error("a batch of {0} decisions is too large")]
    TooLarge(usize),
}

/// Seals a batch: one signature over the Merkle root, and a `Decision`
/// buffer per core, in order, each with its inclusion proof. Refuses a
/// batch holding a decision executors' readers would refuse.
pub fn seal(key: &EngineKey, cores: &[DecisionCore<'_>]) -> Result<Vec<Vec<u8>>, SealError> {
    seal_with_leaves(key, cores).map(|(decisions, _)| decisions)
}

/// [`seal`], also returning each decision's Merkle leaf hash (what the
/// lineage log records for it).
pub fn seal_with_leaves(
    key: &EngineKey,
    cores: &[DecisionCore<'_>],
) -> Result<(Vec<Vec<u8>>, Vec<Hash>), SealError> {
    let max = Limits::default().max_string_bytes;
    for (index, c) in cores.iter().enumerate() {
        for (field, value) in [("rule_id", c.rule_id), ("audience", c.audience)] {
            if value.len() > max {
                return Err(SealError::FieldTooLong {
                    index,
                    field,
                    len: value.len(),
                    max,
                });
            }
        }
        if c.audience.is_empty() {
            return Err(SealError::NoAudience { index });
        }
    }
    let size = u32::try_from(cores.len()).map_err(|_| SealError::TooLarge(cores.len()))?;
    let leaves: Vec<Hash> = cores.iter().map(|c| c.leaf_hash(&key.id)).collect();
    let (root, proofs) = merkle::all_proofs(&leaves);
    let mut encoder = Encoder::default();
    let signature = key
        .key
        .sign(&batch_message(&key.id, &root, size))
        .to_bytes();
    let decisions = cores
        .iter()
        .zip(proofs)
        .enumerate()
        .map(|(i, (c, proof))| {
            encoder.decision(&DecisionFields {
                intent_id: c.intent_id,
                intent_digest: c.intent_digest,
                verdict: c.verdict,
                reason: c.reason,
                rule_id: c.rule_id,
                policy_hash: c.policy_hash,
                policy_version: c.policy_version,
                issued_at_us: c.issued_at_us,
                valid_until_us: c.valid_until_us,
                audience: c.audience,
                engine_key_id: key.id,
                lineage_partition: c.lineage_partition,
                lineage_sequence: c.lineage_sequence,
                batch_root: root,
                leaf_index: u32::try_from(i).unwrap_or(u32::MAX),
                batch_size: size,
                proof: &proof,
                batch_signature: signature,
            })
        })
        .collect();
    Ok((decisions, leaves))
}

/// The engine public keys an executor trusts, by key id: several during an
/// engine key rotation.
#[derive(Debug, Clone, Default)]
pub struct EngineKeys {
    keys: HashMap<KeyId, VerifyingKey>,
}

impl EngineKeys {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts a public key; returns its id. Refuses a weak (small-order) key.
    pub fn add(&mut self, public_key: &[u8; 32]) -> Result<KeyId, DecisionError> {
        let vk = VerifyingKey::from_bytes(public_key).map_err(|_| DecisionError::BadEngineKey)?;
        if vk.is_weak() {
            return Err(DecisionError::BadEngineKey);
        }
        let id = key_id(public_key);
        self.keys.insert(id, vk);
        Ok(id)
    }
}

/// Why an executor must not act on a decision. Every variant means: do not
/// execute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// The bytes are not a valid `Decision`.
    #[error("malformed decision: {0}")]
    Malformed(#[from] WireError),
    /// A public key given to [`EngineKeys::add`] is unusable.
    #[error("engine public key is invalid or weak")]
    BadEngineKey,
    /// Signed by a key this executor does not trust.
    #[error("decision signed by unknown engine key `{0}`")]
    UnknownEngineKey(String),
    /// The inclusion proof does not lead to the batch root.
    #[error("inclusion proof does not match the batch root")]
    BadProof,
    /// The batch signature does not verify.
    #[error("batch signature does not verify")]
    BadSignature,
    /// The decision answers a different intent.
    #[error("decision is bound to a different intent")]
    DigestMismatch,
    /// The verdict is deny.
    #[error("decision is a deny (reason {0:?})")]
    Denied(Reason),
    /// Issued after `now` (the executor's clock is behind the engine's).
    #[error("decision is not valid yet")]
    NotYetValid,
    /// Past its validity.
    #[error("decision expired")]
    Expired,
    /// Issued for another executor.
    #[error("decision is for audience `{0}`")]
    WrongAudience(String),
    /// The executor gave no audience: it must say who it is.
    #[error("no audience given: an executor must name itself")]
    NoAudience,
    /// Already used once.
    #[error("decision was already used")]
    AlreadyUsed,
    /// The single-use guard is full of unexpired decisions; refusing is
    /// the fail-closed answer (raise its capacity).
    #[error("single-use guard is full ({0} unexpired decisions)")]
    GuardFull(usize),
    /// Issued before the single-use guard started remembering
    /// ([`SingleUse::starting_at`]): it may have been used already, by
    /// this executor before a restart.
    #[error("decision was issued before this executor's single-use memory began")]
    BeforeGuard,
}

/// A decision that passed every check: the executor may run the intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// Intent authorized (as its producer named it).
    pub intent_id: [u8; 16],
    /// The digest of the intent authorized (`warrant_schemas::intent_digest`): what
    /// [`SingleUse`] keys on (ids are the producer's choice).
    pub intent_digest: [u8; 32],
    /// When the engine issued it (µs since the epoch, the engine's clock).
    pub issued_at_us: u64,
    /// Until when (µs since the epoch).
    pub valid_until_us: u64,
    /// Deciding rule.
    pub rule_id: String,
    /// Policy version that decided.
    pub policy_version: u64,
}

/// The content of an opened decision.
fn core_of<'a>(d: &warrant_schemas::wire::Decision<'a>) -> DecisionCore<'a> {
    DecisionCore {
        intent_id: d.intent_id().0,
        intent_digest: d.intent_digest().0,
        verdict: d.verdict(),
        reason: d.reason(),
        rule_id: d.rule_id().unwrap_or(""),
        policy_hash: d.policy_hash().map(|h| h.0).unwrap_or([0; 32]),
        policy_version: d.policy_version(),
        issued_at_us: d.issued_at_us(),
        valid_until_us: d.valid_until_us(),
        audience: d.audience().unwrap_or(""),
        lineage_partition: d.lineage_partition(),
        lineage_sequence: d.lineage_sequence(),
    }
}

/// The Merkle leaf hash of a decision's content: what its lineage record
/// names in `decision_digest`. Checks nothing but the buffer's form; use
/// [`verify_decision`] to trust a decision.
pub fn decision_leaf_hash(decision: &[u8]) -> Result<Hash, DecisionError> {
    let d = open_decision(decision, &Limits::default())?;
    Ok(core_of(&d).leaf_hash(&d.engine_key_id().0))
}

/// Verifies a decision offline for an executor: engine key, inclusion
/// proof, batch signature, binding to `intent_digest`
/// (`warrant_schemas::intent_digest` of the `SignedIntent` the executor
/// holds: over the signed bytes and signature), verdict, validity window at
/// `now_us`, and audience. Single use is [`SingleUse`]'s job.
pub fn verify_decision(
    decision: &[u8],
    keys: &EngineKeys,
    intent_digest: &[u8; 32],
    audience: &str,
    now_us: u64,
) -> Result<Authorized, DecisionError> {
    verify_decision_with_skew(decision, keys, intent_digest, audience, now_us, 0)
}

/// [`verify_decision`] for an executor whose clock may be up to `skew_us`
/// behind the engine's: a decision issued up to `skew_us` after `now_us`
/// (by the engine's clock) is accepted. Only the start of the window
/// moves; the end stays exact, so no decision is used after it expires.
pub fn verify_decision_with_skew(
    decision: &[u8],
    keys: &EngineKeys,
    intent_digest: &[u8; 32],
    audience: &str,
    now_us: u64,
    skew_us: u64,
) -> Result<Authorized, DecisionError> {
    let d = open_decision(decision, &Limits::default())?;
    let engine_key_id = d.engine_key_id().0;
    let key = keys
        .keys
        .get(&engine_key_id)
        .ok_or_else(|| DecisionError::UnknownEngineKey(hex::encode(engine_key_id)))?;
    let rule_id = d.rule_id().unwrap_or("");
    let core = core_of(&d);
    let leaf = core.leaf_hash(&engine_key_id);
    let proof: Vec<Hash> = d
        .proof()
        .map(|p| p.iter().map(|h| h.0).collect())
        .unwrap_or_default();
    let root = d.batch_root().0;
    if !merkle::verify_inclusion(
        &leaf,
        u64::from(d.leaf_index()),
        u64::from(d.batch_size()),
        &proof,
        &root,
    ) {
        return Err(DecisionError::BadProof);
    }
    let signature = ed25519_dalek::Signature::from_bytes(&d.batch_signature().0);
    key.verify_strict(
        &batch_message(&engine_key_id, &root, d.batch_size()),
        &signature,
    )
    .map_err(|_| DecisionError::BadSignature)?;
    if &core.intent_digest != intent_digest {
        return Err(DecisionError::DigestMismatch);
    }
    if core.verdict != Verdict::Authorize || core.reason != Reason::Authorized {
        return Err(DecisionError::Denied(core.reason));
    }
    if now_us.saturating_add(skew_us) < core.issued_at_us {
        return Err(DecisionError::NotYetValid);
    }
    if now_us >= core.valid_until_us {
        return Err(DecisionError::Expired);
    }
    // An empty audience on either side matches nothing: a decision must
    // name its executor, and an executor must say who it is.
    if audience.is_empty() {
        return Err(DecisionError::NoAudience);
    }
    if core.audience != audience {
        return Err(DecisionError::WrongAudience(core.audience.to_owned()));
    }
    Ok(Authorized {
        intent_id: core.intent_id,
        intent_digest: core.intent_digest,
        issued_at_us: core.issued_at_us,
        valid_until_us: core.valid_until_us,
        rule_id: rule_id.to_owned(),
        policy_version: core.policy_version,
    })
}

/// Remembers consumed authorizations until they expire, so each intent
/// runs once. Keyed by the intent's digest, not its producer-chosen id:
/// another producer's intent reusing an id cannot block this one. Every
/// authorization the engine issues for one intent (a redelivered intent
/// is decided again) ends at the same `valid_until`, so remembering an
/// intent until its consumed decision expires covers every decision the
/// engine can issue for it.
///
/// Time only moves forward here: each call's `now_us` is raised to the
/// latest one seen, so a clock stepped back (NTP, or callers passing
/// different clocks) cannot make a forgotten decision unexpired again.
///
/// Memory is bounded: each [`SingleUse::consume`] first drops the entries
/// that have expired (a min-heap of expiries, so amortised O(log n)), and
/// when `capacity` unexpired entries are held, further decisions are
/// refused (fail closed) rather than forgotten.
///
/// The memory is the process's: an executor that restarts (or a second
/// replica with a guard of its own) would accept a decision consumed
/// before. An executor must either keep the memory durable (write each
/// consumed entry, [`SingleUse::entries`], before it acts; read them back
/// with [`SingleUse::restore`]), or start each guard with
/// [`SingleUse::starting_at`], which refuses every decision issued before
/// the guard began (for at most the engine's `max_validity` after a
/// restart: fail closed).
#[derive(Debug)]
pub struct SingleUse {
    seen: HashMap<[u8; 32], u64>,
    expiries: BinaryHeap<Reverse<(u64, [u8; 32])>>,
    capacity: usize,
    /// The latest `now_us` seen.
    clock: u64,
    /// Decisions issued before this are refused.
    not_before_us: u64,
}

impl SingleUse {
    /// A guard holding at most `capacity` unexpired decisions, with no
    /// memory of anything consumed before it was made: for an executor
    /// that restores that memory ([`SingleUse::restore`]) or never
    /// restarts. Otherwise use [`SingleUse::starting_at`].
    pub fn new(capacity: usize) -> Self {
        SingleUse {
            seen: HashMap::new(),
            expiries: BinaryHeap::new(),
            capacity,
            clock: 0,
            not_before_us: 0,
        }
    }

    /// A guard that refuses every decision issued before `now_us`
    /// ([`DecisionError::BeforeGuard`]): what a restarted executor without
    /// durable memory must use, since any earlier decision may have run
    /// before the restart. Pass the executor's clock at start, minus
    /// nothing: the engine's `issued_at` is the engine's clock, so a
    /// decision issued just before the restart by an engine whose clock is
    /// behind may be accepted; keep clocks synchronised.
    pub fn starting_at(capacity: usize, now_us: u64) -> Self {
        SingleUse {
            not_before_us: now_us,
            clock: now_us,
            ..SingleUse::new(capacity)
        }
    }

    /// Puts back an entry saved from [`SingleUse::entries`] (durable
    /// memory across restarts). Entries already expired at the guard's
    /// clock are skipped; a full guard refuses ([`DecisionError::GuardFull`]:
    /// the executor must not act until it has room for its whole memory).
    pub fn restore(
        &mut self,
        intent_digest: [u8; 32],
        valid_until_us: u64,
    ) -> Result<(), DecisionError> {
        if valid_until_us <= self.clock {
            return Ok(());
        }
        match self.seen.get(&intent_digest) {
            // The later end is the one to remember.
            Some(&until) if until >= valid_until_us => return Ok(()),
            Some(_) => {}
            None if self.seen.len() >= self.capacity => {
                return Err(DecisionError::GuardFull(self.seen.len()));
            }
            None => {}
        }
        self.seen.insert(intent_digest, valid_until_us);
        self.expiries.push(Reverse((valid_until_us, intent_digest)));
        Ok(())
    }

    /// Every remembered (intent digest, valid until) pair, to keep durably.
    pub fn entries(&self) -> impl Iterator<Item = ([u8; 32], u64)> + '_ {
        self.seen.iter().map(|(digest, until)| (*digest, *until))
    }

    /// Consumes `auth` at `now_us`: `Ok` the first time, `AlreadyUsed`
    /// while an authorization of the same intent consumed earlier is
    /// unexpired.
    pub fn consume(&mut self, auth: &Authorized, now_us: u64) -> Result<(), DecisionError> {
        // Entries were dropped as of the latest time seen: behind it, one
        // of them could look unexpired again.
        self.clock = self.clock.max(now_us);
        let now_us = self.clock;
        // An expired decision would be forgotten at once and so reusable.
        if now_us >= auth.valid_until_us {
            return Err(DecisionError::Expired);
        }
        if auth.issued_at_us < self.not_before_us {
            return Err(DecisionError::BeforeGuard);
        }
        while let Some(&Reverse((until, digest))) = self.expiries.peek() {
            if until > now_us {
                break;
            }
            self.expiries.pop();
            if self.seen.get(&digest) == Some(&until) {
                self.seen.remove(&digest);
            }
        }
        if self.seen.contains_key(&auth.intent_digest) {
            return Err(DecisionError::AlreadyUsed);
        }
        if self.seen.len() >= self.capacity {
            return Err(DecisionError::GuardFull(self.seen.len()));
        }
        self.seen.insert(auth.intent_digest, auth.valid_until_us);
        self.expiries
            .push(Reverse((auth.valid_until_us, auth.intent_digest)));
        Ok(())
    }

    /// Authorizations remembered (as of the last `consume`, which drops
    /// the expired ones).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}
