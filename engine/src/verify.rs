//! Strict, batch-consistent ed25519 verification.
//!
//! # The rule Warrant verifies by
//!
//! A signature `(R, S)` by key `A` on message `M` is valid when **all** of:
//!
//! 1. `A` is a canonical encoding of a curve point that is neither of small
//!    order nor of mixed order (it lies in the prime-order subgroup). Checked
//!    once per key, when the [`PublicKey`] is prepared, and cached.
//! 2. `S` is canonical: `S < L`.
//! 3. `R` is a canonical encoding (`y < p`) of a curve point that is not of
//!    small order.
//! 4. The *cofactored* equation holds: `[8](S·B − R − k·A) = 0`, where
//!    `k = SHA-512(R ‖ A ‖ M) mod L` over the encodings as received.
//!
//! Checks 1–3 depend on one signature alone and run before any batching.
//! Check 4 is the one that batches: for random 128-bit `z_i`,
//! `[8](Σ z_i·S_i·B − Σ z_i·R_i − Σ z_i·k_i·A_i) = 0`. Because the equation
//! is cofactored, a torsion component of `R` (or `A`) is annihilated in the
//! single check and in the batch check alike, so the two give the same
//! answer for every input and the answer of the batch never depends on its
//! other members. (A cofactorless batch, which is what
//! `ed25519_dalek::verify_batch` computes, lets torsion components of
//! different signatures cancel or not depending on the random `z_i`: that is
//! how a batch can accept what single verification rejects.)
//!
//! Completeness: if every member satisfies check 4, each term of the batch
//! sum is a torsion point and `[8]` kills the sum: the batch always passes.
//! Soundness: if a member fails check 4, the batch passes only if the random
//! `z_i` cancel a prime-order component, with probability about 2⁻¹²⁵.
//! A failed batch is therefore proof that a member is bad, and bisection
//! ([`verify_batch`]) finds every bad member at a cost, for one bad
//! signature among `n`, of about one extra pass over `n` (`n/2 + n/4 + …`).
//! Batch work is capped at four passes per sub-batch of at most
//! [`MAX_BATCH`]; past that the remaining members are checked one by one, so
//! a batch of forgeries cannot cost more than four batch passes (about 1.2
//! single verifications' worth) plus a single check each.
//!
//! Why cofactored rather than rejecting mixed-order `R` as well: deciding
//! whether `R` has a torsion component costs a full scalar multiplication
//! per signature, doubling the cost of verification, and buys nothing here:
//! a torsion component in `R` changes the challenge `k` too, so only the
//! holder of the secret key can produce one. Keys, which are checked once
//! and cached, are held to the full prime-order check.
//!
//! Where the speccheck edge cases (`tests/data/ed25519-speccheck-cases.json`)
//! land under these rules is documented case by case in
//! `tests/tests/speccheck.rs`.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use rayon::prelude::*;
use sha2::{Digest, Sha512};

/// Why a public key is unusable. Checked once, when the key is prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The 32 bytes are not the canonical encoding of a point.
    #[error("public key is not a canonical point encoding")]
    NonCanonical,
    /// The 32 bytes do not decode to a curve point.
    #[error("public key is not a point on the curve")]
    NotOnCurve,
    /// The point has small order (order divides 8): a "weak" key.
    #[error("public key has small order")]
    SmallOrder,
    /// The point has a torsion component (mixed order).
    #[error("public key is not in the prime-order subgroup")]
    MixedOrder,
}

/// Why a signature is invalid. Every variant means: do not authorize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The key is unusable.
    #[error("bad key: {0}")]
    Key(#[from] KeyError),
    /// `S >= L`: a non-canonical (malleable) scalar.
    #[error("signature scalar S is not reduced modulo the group order")]
    ScalarNotCanonical,
    /// `R` is not a canonical point encoding.
    #[error("signature point R is not a canonical encoding")]
    NonCanonicalR,
    /// `R` does not decode to a curve point.
    #[error("signature point R is not on the curve")]
    RNotOnCurve,
    /// `R` has small order.
    #[error("signature point R has small order")]
    SmallOrderR,
    /// Well-formed, but the verification equation does not hold.
    #[error("signature does not verify")]
    Equation,
    /// An output slot with no signature to verify (caller passed a longer
    /// `out` than `items`).
    #[error("no signature was given for this slot")]
    NoItem,
}

/// A prepared ed25519 public key: decoded, checked and cached.
///
/// Preparing never fails; an unusable key carries its [`KeyError`], which
/// [`PublicKey::check`] reports and every verification with it returns. That
/// lets callers put any key into a batch and get a per-signature verdict.
#[derive(Clone)]
pub struct PublicKey {
    bytes: [u8; 32],
    /// `-A`, ready for `S·B + k·(−A)`. Identity when the key is unusable.
    neg_point: EdwardsPoint,
    status: Result<(), KeyError>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("bytes", &hex::encode(self.bytes))
            .field("status", &self.status)
            .finish()
    }
}

impl PublicKey {
    /// Decodes and checks a public key (costs about one scalar
    /// multiplication, for the subgroup check; do it once per key).
    pub fn from_bytes(bytes: [u8; 32]) -> PublicKey {
        let (neg_point, status) = match decode_key(&bytes) {
            Ok(point) => (-point, Ok(())),
            Err(e) => (EdwardsPoint::default(), Err(e)),
        };
        PublicKey {
            bytes,
            neg_point,
            status,
        }
    }

    /// The key's encoding, as given.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Whether the key is usable.
    pub fn check(&self) -> Result<(), KeyError> {
        self.status
    }

    /// The key id producers put in their intents.
    pub fn key_id(&self) -> warrant_schemas::KeyId {
        warrant_schemas::key_id(&self.bytes)
    }
}

fn decode_key(bytes: &[u8; 32]) -> Result<EdwardsPoint, KeyError> {
    let point = CompressedEdwardsY(*bytes)
        .decompress()
        .ok_or(KeyError::NotOnCurve)?;
    if point.compress().as_bytes() != bytes {
        return Err(KeyError::NonCanonical);
    }
    if point.is_small_order() {
        return Err(KeyError::SmallOrder);
    }
    if !point.is_torsion_free() {
        return Err(KeyError::MixedOrder);
    }
    Ok(point)
}

/// One signature to verify: `signature` by `key` over `prefix ‖ message`.
///
/// For intents, `prefix` is [`warrant_schemas::INTENT_SIGNING_DOMAIN`] and
/// `message` the exact `Intent` bytes; the two are hashed in sequence, never
/// copied into one buffer.
#[derive(Debug, Clone, Copy)]
pub struct SigItem<'a> {
    /// The signer's prepared key.
    pub key: &'a PublicKey,
    /// Domain-separation prefix of the signed message.
    pub prefix: &'a [u8],
    /// The rest of the signed message.
    pub message: &'a [u8],
    /// `R ‖ S`.
    pub signature: &'a [u8; 64],
}

/// A signature that passed the per-signature checks, ready for the equation.
struct Prepared<'a> {
    index: usize,
    key: &'a PublicKey,
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// `true` when the 255-bit `y` of an encoding is below `p = 2^255 − 19`.
fn y_is_canonical(bytes: &[u8; 32]) -> bool {
    // y >= p exactly when the low 255 bits are p..=2^255-1, that is
    // 0x..ffff_ffed through 0x7fff..ffff: top byte 0x7f (sign bit aside),
    // the middle 30 bytes 0xff, and the lowest byte at least 0xed.
    let [lo, mid @ .., hi] = bytes;
    !(hi & 0x7f == 0x7f && mid.iter().all(|&b| b == 0xff) && *lo >= 0xed)
}

fn split_signature(signature: &[u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    let (rb, sb) = signature.split_at(32);
    r.copy_from_slice(rb);
    s.copy_from_slice(sb);
    (r, s)
}

enum SmallOrder {
    Canonical,
    NegativeZero,
}

/// The canonical encodings of the 8 points of order dividing 8.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: std::sync::OnceLock<[[u8; 32]; 8]> = std::sync::OnceLock::new();
    ENCODINGS
        .get_or_init(|| curve25519_dalek::constants::EIGHT_TORSION.map(|p| p.compress().to_bytes()))
}

/// Classifies an encoding (with `y < p`) that decodes to a small-order point.
fn small_order_encoding(bytes: &[u8; 32]) -> Option<SmallOrder> {
    if small_order_encodings().contains(bytes) {
        return Some(SmallOrder::Canonical);
    }
    // x = 0 only for y = 1 and y = p − 1; with the sign bit set those
    // encode "−0", which decodes to the same small-order point.
    let [first, middle @ .., last] = bytes;
    let y_is_one = *first == 0x01 && middle.iter().all(|b| *b == 0) && *last == 0x80;
    let y_is_minus_one = *first == 0xec && middle.iter().all(|b| *b == 0xff) && *last == 0xff;
    (y_is_one || y_is_minus_one).then_some(SmallOrder::NegativeZero)
}

/// Checks 1–3 of the module rule and the challenge `k`.
fn prepare<'a>(index: usize, item: &SigItem<'a>) -> Result<Prepared<'a>, SigError> {
    item.key.status?;
    let (r_bytes, s_bytes) = split_signature(item.signature);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))
        .ok_or(SigError::ScalarNotCanonical)?;
    if !y_is_canonical(&r_bytes) {
        return Err(SigError::NonCanonicalR);
    }
    // With y < p, an encoding decodes to a small-order point exactly when
    // it is one of their 8 canonical encodings, or y = ±1 (x = 0) with the
    // sign bit set, which is non-canonical. Comparing bytes costs nothing;
    // multiplying R by the cofactor would cost about 3% of a verification.
    match small_order_encoding(&r_bytes) {
        Some(SmallOrder::Canonical) => return Err(SigError::SmallOrderR),
        Some(SmallOrder::NegativeZero) => return Err(SigError::NonCanonicalR),
        None => {}
    }
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .ok_or(SigError::RNotOnCurve)?;
    // INVARIANT: r is not of small order (tests/speccheck.rs and the unit
    // test `small_order_blocklist_is_complete` check the list).
    let digest = Sha512::new()
        .chain_update(r_bytes)
        .chain_update(item.key.bytes)
        .chain_update(item.prefix)
        .chain_update(item.message)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&digest);
    let k = Scalar::from_bytes_mod_order_wide(&wide);
    Ok(Prepared {
        index,
        key: item.key,
        r,
        s,
        k,
    })
}

/// The cofactored single equation `[8](S·B − k·A − R) = 0`.
fn equation_holds(p: &Prepared<'_>) -> bool {
    let sb_minus_ka =
        EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &p.key.neg_point, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Verifies one signature by the module rule.
pub fn verify_one(item: &SigItem<'_>) -> Result<(), SigError> {
    let p = prepare(0, item)?;
    if equation_holds(&p) {
        Ok(())
    } else {
        Err(SigError::Equation)
    }
}

/// Batches smaller than this are checked one signature at a time: a single
/// equation costs what a one-member batch does. Two already share the
/// doublings: 35 µs per signature as a batch against 43 checked singly
/// (`cargo bench -p warrant-bench --bench stages`, `verify_batch(2)`,
/// three runs of each build interleaved on the AMD EPYC machine), and a
/// lane at low load verifies groups of one or two.
const MIN_BATCH: usize = 2;

/// A failing set larger than twice this is split into groups of this size
/// before bisection.
const GROUP: usize = 64;

/// A set known to hold a bad signature is checked one by one at this size:
/// halving it further would cost more batch checks than it saves.
const BISECT_LEAF: usize = 4;

/// A prepared signature with its random batch coefficient.
struct Member<'a> {
    p: Prepared<'a>,
    z: Scalar,
}

/// The batched cofactored equation over `members`.
fn batch_holds(members: &[Member<'_>]) -> bool {
    // Terms: (Σ z·S)·B, z_i·(−R_i) for each member, and one −(Σ z·k)·A per
    // distinct key (members sharing a key share one point: a batch from a
    // few principals costs little more than half the points of one from
    // many). `neg_point` is −A, so its coefficient is +Σ z·k.
    let mut by_key: Vec<(&[u8; 32], &EdwardsPoint, Scalar)> = members
        .iter()
        .map(|m| (&m.p.key.bytes, &m.p.key.neg_point, m.z * m.p.k))
        .collect();
    by_key.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut scalars: Vec<Scalar> = Vec::with_capacity(1 + members.len() * 2);
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(1 + members.len() * 2);
    scalars.push(members.iter().map(|m| m.z * m.p.s).sum());
    points.push(ED25519_BASEPOINT_POINT);
    for m in members {
        // +z on −R rather than −z on R: z is 128 bits, −z mod L is not,
        // and short scalars skip their high windows' additions.
        scalars.push(m.z);
        points.push(-m.p.r);
    }
    let mut current: Option<(&[u8; 32], &EdwardsPoint, Scalar)> = None;
    for (bytes, point, coeff) in by_key {
        match current.as_mut() {
            Some((b, _, acc)) if *b == bytes => *acc += coeff,
            _ => {
                if let Some((_, p, acc)) = current.take() {
                    scalars.push(acc);
                    points.push(*p);
                }
                current = Some((bytes, point, coeff));
            }
        }
    }
    if let Some((_, p, acc)) = current {
        scalars.push(acc);
        points.push(*p);
    }
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// How much batch-equation work one [`verify_batch`] call may spend, in
/// members checked, before it falls back to checking signatures one by one.
///
/// A clean batch spends `n`; one bad signature adds about `n` more
/// (`n/2 + n/4 + …`). A batch full of forgeries would otherwise re-batch
/// about `n` members per bisection level; past four passes the remaining
/// sets are checked singly, so a flood of forged intents costs at most about
/// four batch passes plus one single check each, never more.
struct Budget(usize);

impl Budget {
    fn take(&mut self, members: usize) -> bool {
        if self.0 >= members {
            self.0 -= members;
            true
        } else {
            false
        }
    }
}

fn check_singly(members: &[Member<'_>], out: &mut [Result<(), SigError>]) {
    for m in members {
        let verdict = if equation_holds(&m.p) {
            Ok(())
        } else {
            Err(SigError::Equation)
        };
        set(out, m.p.index, verdict);
    }
}

/// Resolves a set of members known to contain at least one bad signature.
fn bisect(members: &[Member<'_>], out: &mut [Result<(), SigError>], budget: &mut Budget) {
    if members.len() > 2 * GROUP {
        // A large failing batch is first split into groups of GROUP: when
        // forgeries are spread through it, halving would re-check nearly
        // every member at each level, while groups confine each forgery to
        // GROUP members after one pass.
        for group in members.chunks(GROUP) {
            resolve(group, out, budget);
        }
        return;
    }
    let (left, right) = members.split_at(members.len() / 2);
    if members.len() <= BISECT_LEAF || !budget.take(left.len()) {
        check_singly(members, out);
        return;
    }
    if batch_holds(left) {
        // INVARIANT: the whole set fails, the left half passes, so the
        // right half holds a bad signature.
        mark_ok(left, out);
        bisect(right, out, budget);
    } else {
        bisect(left, out, budget);
        resolve(right, out, budget);
    }
}

/// Resolves a set of members with unknown status.
fn resolve(members: &[Member<'_>], out: &mut [Result<(), SigError>], budget: &mut Budget) {
    if members.len() < MIN_BATCH || !budget.take(members.len()) {
        check_singly(members, out);
    } else if batch_holds(members) {
        mark_ok(members, out);
    } else {
        bisect(members, out, budget);
    }
}

fn mark_ok(members: &[Member<'_>], out: &mut [Result<(), SigError>]) {
    for m in members {
        set(out, m.p.index, Ok(()));
    }
}

fn set(out: &mut [Result<(), SigError>], index: usize, value: Result<(), SigError>) {
    if let Some(slot) = out.get_mut(index) {
        *slot = value;
    }
}

/// Draws the batch coefficients: 128-bit, from the OS CSPRNG.
///
/// If the OS RNG fails, the coefficients are derived from a hash of every
/// challenge and scalar in the batch instead (the approach of
/// `ed25519_dalek::verify_batch`): still unpredictable to anyone who cannot
/// find SHA-512 collisions, so never a reason to fail.
fn coefficients(members: &[Prepared<'_>]) -> Vec<Scalar> {
    let mut seed = [0u8; 32];
    let mut h = Sha512::new().chain_update(b"warrant.batch-coefficients.v1");
    if getrandom::fill(&mut seed).is_ok() {
        h.update(seed);
    } else {
        for p in members {
            h.update(p.k.as_bytes());
            h.update(p.s.as_bytes());
            h.update(p.r.compress().as_bytes());
        }
    }
    let key = h.finalize();
    let mut zs = Vec::with_capacity(members.len());
    let mut counter: u64 = 0;
    while zs.len() < members.len() {
        let block = Sha512::new()
            .chain_update(key)
            .chain_update(counter.to_le_bytes())
            .finalize();
        for chunk in block.chunks_exact(16) {
            let mut z = [0u8; 16];
            z.copy_from_slice(chunk);
            zs.push(Scalar::from(u128::from_le_bytes(z)));
        }
        counter += 1;
    }
    zs.truncate(members.len());
    zs
}

/// Verifies a batch on the current thread; `out[i]` receives the verdict for
/// `items[i]`, the same verdict [`verify_one`] gives for it.
///
/// `out` should be as long as `items`. Every slot of `out` is written: a
/// slot with no item gets `Err(SigError::NoItem)`, so a caller's length
/// mistake can never leave a stale `Ok` behind; items with no slot are not
/// verified.
pub fn verify_batch(items: &[SigItem<'_>], out: &mut [Result<(), SigError>]) {
    for slot in out.iter_mut() {
        *slot = Err(SigError::NoItem);
    }
    let items = items.get(..out.len()).unwrap_or(items);
    // Sub-batches of at most MAX_BATCH, each with its own budget, so that
    // forgeries in one part of a large input cost only their own part.
    for (items, out) in items.chunks(MAX_BATCH).zip(out.chunks_mut(MAX_BATCH)) {
        verify_sub_batch(items, out);
    }
}

/// Largest batch verified as one multiscalar multiplication. Past about a
/// thousand signatures the cost per signature barely falls further, while
/// a forgery's bisection cost grows with the batch.
pub const MAX_BATCH: usize = 1024;

fn verify_sub_batch(items: &[SigItem<'_>], out: &mut [Result<(), SigError>]) {
    let mut prepared = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match prepare(i, item) {
            Ok(p) => prepared.push(p),
            Err(e) => set(out, i, Err(e)),
        }
    }
    let zs = coefficients(&prepared);
    let members: Vec<Member<'_>> = prepared
        .into_iter()
        .zip(zs)
        .map(|(p, z)| Member { p, z })
        .collect();
    let mut budget = Budget(4 * members.len());
    resolve(&members, out, &mut budget);
}

/// Smallest chunk handed to one rayon task: smaller batches lose the
/// multiscalar multiplication's economy of scale.
pub const MIN_PARALLEL_CHUNK: usize = 64;

/// Like [`verify_batch`], split across the rayon thread pool in
/// equal chunks of at least [`MIN_PARALLEL_CHUNK`].
pub fn verify_batch_parallel(items: &[SigItem<'_>], out: &mut [Result<(), SigError>]) {
    if items.len() != out.len() {
        // Let the single-threaded path apply its fail-closed slot rules.
        verify_batch(items, out);
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let chunk = items
        .len()
        .div_ceil(threads)
        .clamp(MIN_PARALLEL_CHUNK, MAX_BATCH);
    if items.len() <= chunk {
        verify_batch(items, out);
        return;
    }
    items
        .par_chunks(chunk)
        .zip(out.par_chunks_mut(chunk))
        .for_each(|(items, out)| verify_batch(items, out));
}

/// Convenience: verifies `items` (in parallel when large) into a new vector.
pub fn verify_all(items: &[SigItem<'_>]) -> Vec<Result<(), SigError>> {
    let mut out = vec![Err(SigError::Equation); items.len()];
    verify_batch_parallel(items, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_schemas::IntentSigner;

    fn signed(seed: u8, msg: &[u8]) -> (PublicKey, [u8; 64]) {
        let signer = IntentSigner::from_seed([seed; 32]);
        (PublicKey::from_bytes(signer.public_key()), signer.sign(msg))
    }

    #[test]
    fn y_canonical_boundary() {
        let mut p_minus_1 = [0xffu8; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        assert!(y_is_canonical(&p_minus_1));
        let mut p = p_minus_1;
        p[0] = 0xed;
        assert!(!y_is_canonical(&p));
        p[31] = 0xff; // sign bit does not matter
        assert!(!y_is_canonical(&p));
        assert!(y_is_canonical(&[0; 32]));
    }

    #[test]
    fn small_order_blocklist_is_complete() {
        // Every encoding with y < p that decodes to a point of small order
        // is caught by the byte comparison: enumerate all 8 points, with
        // and without the sign bit.
        for p in curve25519_dalek::constants::EIGHT_TORSION {
            let canonical = p.compress().to_bytes();
            assert!(matches!(
                small_order_encoding(&canonical),
                Some(SmallOrder::Canonical)
            ));
            let mut flipped = canonical;
            flipped[31] ^= 0x80;
            if let Some(q) = CompressedEdwardsY(flipped).decompress() {
                // Decodes: either another torsion point (canonical) or the
                // same x = 0 point written as "−0" (non-canonical).
                assert!(q.is_small_order());
                assert!(small_order_encoding(&flipped).is_some(), "{flipped:?}");
            }
        }
        // And nothing else is flagged.
        let (key, sig) = signed(3, b"x");
        let _ = key;
        let mut r = [0u8; 32];
        r.copy_from_slice(&sig[..32]);
        assert!(small_order_encoding(&r).is_none());
    }

    #[test]
    fn valid_and_forged() {
        let msg = b"intent bytes";
        let (key, sig) = signed(1, msg);
        let prefix = warrant_schemas::INTENT_SIGNING_DOMAIN;
        let item = SigItem {
            key: &key,
            prefix,
            message: msg,
            signature: &sig,
        };
        assert_eq!(verify_one(&item), Ok(()));
        let mut bad = sig;
        bad[40] ^= 1;
        let forged = SigItem {
            signature: &bad,
            ..item
        };
        assert_eq!(verify_one(&forged), Err(SigError::Equation));
        let other = SigItem {
            message: b"other bytes",
            ..item
        };
        assert_eq!(verify_one(&other), Err(SigError::Equation));
        let no_prefix = SigItem {
            prefix: b"",
            ..item
        };
        assert_eq!(verify_one(&no_prefix), Err(SigError::Equation));
    }

    #[test]
    fn every_out_slot_is_written_fail_closed() {
        let msg = b"m";
        let (key, sig) = signed(1, msg);
        let prefix = warrant_schemas::INTENT_SIGNING_DOMAIN;
        let item = SigItem {
            key: &key,
            prefix,
            message: msg,
            signature: &sig,
        };
        let mut out = vec![Ok(()); 3];
        verify_batch(&[item], &mut out);
        assert_eq!(out, [Ok(()), Err(SigError::NoItem), Err(SigError::NoItem)]);
        let mut out = vec![Ok(()); 3];
        verify_batch_parallel(&[item], &mut out);
        assert_eq!(out, [Ok(()), Err(SigError::NoItem), Err(SigError::NoItem)]);
    }

    #[test]
    fn a_flood_of_forgeries_stays_within_budget_and_exact() {
        // Every signature forged: the answer must still be exact for each,
        // with the budget cutting the bisection short.
        let prefix = warrant_schemas::INTENT_SIGNING_DOMAIN;
        let msgs: Vec<Vec<u8>> = (0..300u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let signed: Vec<(PublicKey, [u8; 64])> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let (k, mut s) = signed((i % 5) as u8, m);
                if i % 3 != 0 {
                    s[33] ^= 4;
                }
                (k, s)
            })
            .collect();
        let items: Vec<SigItem<'_>> = signed
            .iter()
            .zip(&msgs)
            .map(|(s, m)| SigItem {
                key: &s.0,
                prefix,
                message: m,
                signature: &s.1,
            })
            .collect();
        let mut out = vec![Ok(()); items.len()];
        verify_batch(&items, &mut out);
        for (i, (it, got)) in items.iter().zip(&out).enumerate() {
            assert_eq!(*got, verify_one(it), "signature {i}");
            assert_eq!(got.is_ok(), i % 3 == 0, "signature {i}");
        }
    }

    #[test]
    fn batch_finds_every_forgery() {
        let prefix = warrant_schemas::INTENT_SIGNING_DOMAIN;
        let msgs: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let signed: Vec<(PublicKey, [u8; 64])> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| signed((i % 7) as u8, m))
            .collect();
        let mut sigs: Vec<[u8; 64]> = signed.iter().map(|s| s.1).collect();
        for i in [0usize, 17, 18, 63, 99] {
            if let Some(sig) = sigs.get_mut(i) {
                sig[0] ^= 0x20;
            }
        }
        let items: Vec<SigItem<'_>> = signed
            .iter()
            .zip(&sigs)
            .zip(&msgs)
            .map(|((s, sig), m)| SigItem {
                key: &s.0,
                prefix,
                message: m,
                signature: sig,
            })
            .collect();
        let out = verify_all(&items);
        for (i, (item, got)) in items.iter().zip(&out).enumerate() {
            assert_eq!(*got, verify_one(item), "signature {i}");
            assert_eq!(
                got.is_err(),
                [0, 17, 18, 63, 99].contains(&i),
                "signature {i}"
            );
        }
    }
}
