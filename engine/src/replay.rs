//! Replay protection: nonces remembered per principal for as long as the
//! intents that used them can still be acted on.
//!
//! Intents are keyed by principal on Kafka, so one partition's cache sees
//! every intent of its principals and needs no coordination: one
//! [`ReplayCache`] per partition, owned by one thread, no locks.
//!
//! - Compute the intent's [`NonceKey`] once. A new (principal, nonce) is [`Seen::Fresh`]: decide it, then
//!   [`ReplayCache::record`] the verdict.
//! - The *same intent* again (same principal and nonce, and the same
//!   intent digest, over the signed bytes and the signature
//!   (`warrant_schemas::intent_digest`): a redelivery after a crash or
//!   rebalance, the same intent published twice, or rewrapped) is [`Seen::Again`] with
//!   the outcome recorded the first time, its `valid_until` included, so
//!   reprocessing is idempotent and never extends an authorization.
//! - A *different* intent reusing the nonce is [`Seen::Replay`]: deny. That
//!   includes an intent that reuses the nonce *and* the intent id with
//!   other content: ids are the producer's choice, the digest is not.
//!
//! Entries are kept until `remember_until_us` (the end of the intent's
//! validity window); an intent older than that is denied as expired before
//! it gets here, so forgetting then is safe. Memory is bounded by
//! `capacity`: when it is full of unexpired entries, [`ReplayCache::check`]
//! answers [`Seen::Full`] and the engine denies ("overloaded") rather than
//! forget a nonce that could then be replayed.
//!
//! Keys are the first 16 bytes of SHA-256(principal ‖ 0 ‖ nonce): fixed-size,
//! no allocation per intent; two different keys collide with probability
//! about 2⁻¹²⁸ per pair.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use foldhash::{HashMap, HashMapExt};

use sha2::{Digest, Sha256};
use warrant_schemas::wire::{Reason, Verdict};

/// What the cache knows of an intent's nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen (or forgotten after its window): decide it.
    Fresh,
    /// This very intent was decided before: give the same verdict.
    Again(Outcome),
    /// Another intent used this nonce: deny as a replay.
    Replay,
    /// The cache is full of unexpired nonces: deny as overloaded.
    Full,
}

/// The outcome remembered for an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// Its reason.
    pub reason: Reason,
    /// The authorization's `valid_until_us` (0 for a deny): a later
    /// decision for the same intent is never valid longer.
    pub valid_until_us: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The intent's digest (`warrant_schemas::intent_digest`).
    digest: [u8; 32],
    outcome: Outcome,
    until_us: u64,
}

/// What [`ReplayCache::upsert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upsert {
    /// Stored.
    Put,
    /// A live entry of another intent was kept.
    Kept,
    /// No room.
    Full,
}

/// One partition's nonce cache.
#[derive(Debug)]
pub struct ReplayCache {
    /// Hashed with a per-map random seed (foldhash): cheap on 16-byte
    /// keys, and a principal cannot grind nonces into one bucket.
    entries: HashMap<[u8; 16], Entry>,
    /// (expiry, key), soonest first; may hold stale pairs for keys that were
    /// re-recorded, skipped when popped.
    expiries: BinaryHeap<Reverse<(u64, [u8; 16])>>,
    capacity: usize,
}

/// Approximate bytes one entry costs (map slot, heap slot, overhead); see
/// [`ReplayCache::approx_bytes`].
pub const BYTES_PER_ENTRY: usize = 16 + 56 + 1 + 24 + 8;

/// The cache key of a (principal, nonce) pair. Computed once per intent
/// and passed to both [`ReplayCache::check`] and [`ReplayCache::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonceKey([u8; 16]);

impl NonceKey {
    /// The key of `nonce` used by `principal`.
    pub fn new(principal: &str, nonce: &[u8; 16]) -> Self {
        NonceKey(key(principal, nonce))
    }

    /// The key's bytes (as a lineage record carries them).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        NonceKey(bytes)
    }
}

fn key(principal: &str, nonce: &[u8; 16]) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(principal)
        .chain_update([0u8])
        .chain_update(nonce)
        .finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
    k
}

impl ReplayCache {
    /// A cache holding at most `capacity` unexpired nonces.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            entries: HashMap::new(),
            expiries: BinaryHeap::new(),
            capacity: capacity.max(1),
        }
    }

    /// Forgets every entry whose window ended at or before `now_us`.
    pub fn expire(&mut self, now_us: u64) {
        while let Some(Reverse((until, k))) = self.expiries.peek().copied() {
            if until > now_us {
                break;
            }
            self.expiries.pop();
            if self.entries.get(&k).is_some_and(|e| e.until_us == until) {
                self.entries.remove(&k);
            }
        }
    }

    /// Looks up an intent's nonce at `now_us`; `digest` is its intent
    /// digest (`warrant_schemas::intent_digest`). An entry is live while `now_us` is before
    /// its `until` (at `until` it is forgotten).
    pub fn check(&mut self, nonce: &NonceKey, digest: &[u8; 32], now_us: u64) -> Seen {
        let k = nonce.0;
        match self.entries.get(&k) {
            Some(e) if e.until_us > now_us => {
                if &e.digest == digest {
                    Seen::Again(e.outcome)
                } else {
                    Seen::Replay
                }
            }
            _ => {
                if self.entries.len() >= self.capacity
                    || self.expiries.len() > self.capacity.saturating_mul(2)
                {
                    self.expire(now_us);
                    if self.entries.len() >= self.capacity {
                        return Seen::Full;
                    }
                }
                Seen::Fresh
            }
        }
    }

    /// Records the outcome given to an intent, remembered until
    /// `remember_until_us`. Call it right after [`Self::check`] said `Fresh`
    /// or `Again`, before checking the next intent (check and record one
    /// intent at a time: two intents with one nonce in a batch must not both
    /// see `Fresh`). Returns whether it recorded: it never replaces a live
    /// entry of another intent, never shortens a live entry's window, never
    /// lets the same intent's `valid_until` grow, and never grows past
    /// capacity.
    pub fn record(
        &mut self,
        nonce: &NonceKey,
        digest: &[u8; 32],
        outcome: Outcome,
        now_us: u64,
        remember_until_us: u64,
    ) -> bool {
        // The same intent again: never lengthen its authorization.
        let stored = self.upsert(
            nonce,
            digest,
            outcome,
            now_us,
            remember_until_us,
            |first, o| {
                if first.valid_until_us == 0 {
                    o
                } else {
                    Outcome {
                        valid_until_us: o.valid_until_us.min(first.valid_until_us),
                        ..o
                    }
                }
            },
        );
        stored == Upsert::Put
    }

    /// Restores an entry a previous owner of the partition logged.
    /// Entries whose window ended by `now_us` are skipped. Returns false
    /// only when the cache is full.
    ///
    /// The log's unsigned tail can be forged, so a restored entry is held
    /// to the same rules as [`Self::record`]: it never replaces a live
    /// entry of another intent (the earlier one stays and the later intent
    /// is denied as a replay until it ends: fail closed; with one clock
    /// the earlier window has already ended, so this only bites when the
    /// new owner's clock is behind the old one's), and for the same intent
    /// a deny (first or later) stands, the window only grows, and two
    /// authorizations with different ends become a deny ("replayed
    /// nonce"). (A restored authorization longer than the policy now
    /// grants is denied by the policy stage.)
    pub fn restore(
        &mut self,
        nonce: &NonceKey,
        digest: &[u8; 32],
        outcome: Outcome,
        now_us: u64,
        until_us: u64,
    ) -> bool {
        if until_us <= now_us {
            return true;
        }
        // A deny keeps no authorization's end, whatever the record says.
        let outcome = if outcome.verdict == Verdict::Authorize {
            outcome
        } else {
            Outcome {
                valid_until_us: 0,
                ..outcome
            }
        };
        // A deny, first or later, stands. Every authorization the engine
        // issues for one intent ends at the same instant, so two that do
        // not are not both the engine's: deny the intent from here on
        // rather than reissue either end.
        let stored = self.upsert(nonce, digest, outcome, now_us, until_us, |first, o| match (
            first.verdict,
            o.verdict,
        ) {
            (Verdict::Authorize, Verdict::Authorize)
                if first.valid_until_us == o.valid_until_us =>
            {
                first
            }
            (Verdict::Authorize, Verdict::Authorize) => Outcome {
                verdict: Verdict::Deny,
                reason: Reason::ReplayedNonce,
                valid_until_us: 0,
            },
            (Verdict::Authorize, _) => o,
            _ => first,
        });
        // Another intent's live entry stays (fail closed): not a failure.
        stored != Upsert::Full
    }

    /// Stores `outcome` for `nonce` until `until_us`, under the rules
    /// [`Self::record`] and [`Self::restore`] share: a live entry of
    /// another intent is kept; one of this intent keeps the outcome
    /// `merge(first, outcome)` and the longer window; an ended one is
    /// replaced; a new one needs room (after forgetting what has ended).
    fn upsert(
        &mut self,
        nonce: &NonceKey,
        digest: &[u8; 32],
        outcome: Outcome,
        now_us: u64,
        until_us: u64,
        merge: impl FnOnce(Outcome, Outcome) -> Outcome,
    ) -> Upsert {
        let k = nonce.0;
        let (until, outcome) = match self.entries.get(&k) {
            Some(e) if e.until_us > now_us && e.digest != *digest => return Upsert::Kept,
            Some(e) if e.until_us > now_us => (e.until_us.max(until_us), merge(e.outcome, outcome)),
            Some(_) => (until_us, outcome),
            None => {
                if self.entries.len() >= self.capacity {
                    self.expire(now_us);
                    if self.entries.len() >= self.capacity {
                        return Upsert::Full;
                    }
                }
                (until_us, outcome)
            }
        };
        self.put(k, *digest, outcome, until);
        Upsert::Put
    }

    fn put(&mut self, k: [u8; 16], digest: [u8; 32], outcome: Outcome, until_us: u64) {
        let old = self.entries.insert(
            k,
            Entry {
                digest,
                outcome,
                until_us,
            },
        );
        // A redelivery that leaves the window as it was adds no expiry:
        // the heap holds at most one pair per change of window, so
        // repeating one intent cannot grow it.
        if old.is_none_or(|e| e.until_us != until_us) {
            self.expiries.push(Reverse((until_us, k)));
        }
    }

    /// Nonces held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Memory in use, approximately: allocated map and heap slots.
    pub fn approx_bytes(&self) -> usize {
        self.entries.capacity() * (16 + std::mem::size_of::<Entry>() + 1)
            + self.expiries.capacity() * std::mem::size_of::<Reverse<(u64, [u8; 16])>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: Outcome = Outcome {
        verdict: Verdict::Authorize,
        reason: Reason::Authorized,
        valid_until_us: 80,
    };

    fn digest(i: u32) -> [u8; 32] {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&i.to_le_bytes());
        d
    }

    #[test]
    fn fresh_again_replay() {
        let mut c = ReplayCache::new(10);
        let n = [1; 16];
        let (same, other) = (digest(2), digest(3));
        assert_eq!(c.check(&NonceKey::new("alice", &n), &same, 0), Seen::Fresh);
        assert!(c.record(&NonceKey::new("alice", &n), &same, ALLOW, 0, 100));
        assert_eq!(
            c.check(&NonceKey::new("alice", &n), &same, 50),
            Seen::Again(ALLOW)
        );
        assert_eq!(
            c.check(&NonceKey::new("alice", &n), &other, 50),
            Seen::Replay
        );
        // Recording the replaying intent anyway changes nothing.
        assert!(!c.record(&NonceKey::new("alice", &n), &other, ALLOW, 50, 60));
        assert_eq!(
            c.check(&NonceKey::new("alice", &n), &other, 70),
            Seen::Replay
        );
        // Nonces are per principal.
        assert_eq!(c.check(&NonceKey::new("bob", &n), &other, 50), Seen::Fresh);
        // The window ends at `until`: forgotten from then on.
        assert_eq!(
            c.check(&NonceKey::new("alice", &n), &other, 99),
            Seen::Replay
        );
        assert_eq!(
            c.check(&NonceKey::new("alice", &n), &other, 100),
            Seen::Fresh
        );
    }

    #[test]
    fn the_same_intent_again_never_gets_a_longer_authorization() {
        let mut c = ReplayCache::new(10);
        let (n, d) = (NonceKey::new("alice", &[1; 16]), digest(1));
        assert!(c.record(&n, &d, ALLOW, 0, 100));
        let later = Outcome {
            valid_until_us: 95,
            ..ALLOW
        };
        assert!(c.record(&n, &d, later, 40, 100));
        assert_eq!(c.check(&n, &d, 50), Seen::Again(ALLOW));
        // A deny recorded over it (the policy changed) is remembered as is.
        let deny = Outcome {
            verdict: Verdict::Deny,
            reason: Reason::DenyRule,
            valid_until_us: 0,
        };
        assert!(c.record(&n, &d, deny, 60, 100));
        assert_eq!(c.check(&n, &d, 61), Seen::Again(deny));
    }

    #[test]
    fn redelivering_one_intent_does_not_grow_memory() {
        let mut c = ReplayCache::new(16);
        let (n, d) = (NonceKey::new("alice", &[1; 16]), digest(1));
        assert!(c.record(&n, &d, ALLOW, 0, 1_000_000));
        let before = c.approx_bytes();
        for now in 1..200_000 {
            assert_eq!(c.check(&n, &d, now), Seen::Again(ALLOW));
            assert!(c.record(&n, &d, ALLOW, now, 1_000_000));
        }
        assert_eq!(c.len(), 1);
        assert_eq!(c.approx_bytes(), before);
    }

    #[test]
    fn restore_keeps_the_latest_entry_and_skips_ended_windows() {
        let mut c = ReplayCache::new(2);
        let n = NonceKey::new("alice", &[1; 16]);
        // Logged in this order by the previous owner: the first intent's
        // window had ended on its clock when the second used the nonce, so
        // on the same clock it has ended here too and is skipped.
        assert!(c.restore(&n, &digest(1), ALLOW, 60, 50));
        assert!(c.restore(&n, &digest(2), ALLOW, 60, 90));
        assert_eq!(c.check(&n, &digest(2), 70), Seen::Again(ALLOW));
        assert_eq!(c.check(&n, &digest(1), 70), Seen::Replay);
        // Ended windows take no room.
        for i in 0..10u8 {
            assert!(c.restore(&NonceKey::new("bob", &[i; 16]), &digest(9), ALLOW, 10, 5));
        }
        assert_eq!(c.len(), 1);
        assert!(c.restore(&NonceKey::new("carol", &[1; 16]), &digest(3), ALLOW, 10, 90));
        // Full of live entries: refused.
        assert!(!c.restore(&NonceKey::new("dave", &[1; 16]), &digest(4), ALLOW, 10, 90));
    }

    /// The log's unsigned tail can be forged: a restored entry must not
    /// lengthen an authorization, change a verdict or free a nonce.
    #[test]
    fn restore_never_loosens_what_is_already_restored() {
        let mut c = ReplayCache::new(8);
        let n = NonceKey::new("alice", &[1; 16]);
        let long = Outcome {
            valid_until_us: 10_000,
            ..ALLOW
        };
        let replayed = Outcome {
            verdict: Verdict::Deny,
            reason: Reason::ReplayedNonce,
            valid_until_us: 0,
        };
        // The same authorization again may keep it longer.
        assert!(c.restore(&n, &digest(1), ALLOW, 10, 100));
        assert!(c.restore(&n, &digest(1), ALLOW, 10, 200));
        assert_eq!(c.check(&n, &digest(1), 150), Seen::Again(ALLOW));
        // Another end, longer or shorter: not the engine's, denied.
        assert!(c.restore(&n, &digest(1), long, 10, 200));
        assert_eq!(c.check(&n, &digest(1), 50), Seen::Again(replayed));
        let m = NonceKey::new("alice", &[3; 16]);
        assert!(c.restore(&m, &digest(1), long, 10, 100));
        assert!(c.restore(&m, &digest(1), ALLOW, 10, 100));
        assert_eq!(c.check(&m, &digest(1), 50), Seen::Again(replayed));

        // A deny stands, whether it comes first or later, and keeps no
        // end of its own.
        let deny = Outcome {
            verdict: Verdict::Deny,
            reason: Reason::DenyRule,
            valid_until_us: 0,
        };
        let d = NonceKey::new("alice", &[4; 16]);
        assert!(c.restore(&d, &digest(1), ALLOW, 10, 100));
        assert!(c.restore(
            &d,
            &digest(1),
            Outcome {
                valid_until_us: 120,
                ..deny
            },
            10,
            200
        ));
        assert_eq!(c.check(&d, &digest(1), 150), Seen::Again(deny));
        assert!(c.restore(&d, &digest(1), ALLOW, 10, 200));
        assert_eq!(c.check(&d, &digest(1), 150), Seen::Again(deny));

        // Another intent's entry, ending soon, does not free the nonce.
        let m = NonceKey::new("alice", &[2; 16]);
        assert!(c.restore(&m, &digest(1), ALLOW, 10, 100));
        assert!(c.restore(&m, &digest(9), ALLOW, 10, 11));
        assert_eq!(c.check(&m, &digest(1), 50), Seen::Again(ALLOW));
        assert_eq!(c.check(&m, &digest(9), 50), Seen::Replay);
    }

    #[test]
    fn memory_is_bounded_and_full_fails_closed() {
        let mut c = ReplayCache::new(1000);
        for i in 0..1000u32 {
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&i.to_le_bytes());
            let d = digest(i);
            assert_eq!(c.check(&NonceKey::new("p", &n), &d, 0), Seen::Fresh);
            assert!(c.record(&NonceKey::new("p", &n), &d, ALLOW, 0, 1_000 + u64::from(i)));
        }
        // Full of unexpired nonces: refuse, do not forget, do not grow.
        assert_eq!(
            c.check(&NonceKey::new("p", &[0xff; 16]), &[0xff; 32], 500),
            Seen::Full
        );
        assert!(!c.record(
            &NonceKey::new("p", &[0xff; 16]),
            &[0xff; 32],
            ALLOW,
            500,
            9_999
        ));
        assert_eq!(c.len(), 1000);
        // As windows end, room is made, oldest first.
        assert_eq!(
            c.check(&NonceKey::new("p", &[0xff; 16]), &[0xff; 32], 1_500),
            Seen::Fresh
        );
        assert_eq!(c.len(), 499);
        // A long run at capacity keeps memory flat.
        let before = c.approx_bytes();
        for i in 0..100_000u64 {
            let n = (i as u128 + 10_000).to_le_bytes();
            let d = digest(u32::try_from(i).unwrap());
            let now = 2_000 + i;
            if c.check(&NonceKey::new("p", &n), &d, now) == Seen::Fresh {
                assert!(c.record(&NonceKey::new("p", &n), &d, ALLOW, now, now + 900));
            }
        }
        assert!(c.len() <= 1000);
        assert!(
            c.approx_bytes() <= 2 * before.max(1000 * BYTES_PER_ENTRY),
            "{} > {}",
            c.approx_bytes(),
            before
        );
    }
}
