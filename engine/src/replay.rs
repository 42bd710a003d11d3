//! Replay protection: nonces remembered per principal for as long as the
//! intents that used them can still be acted on.
//!
//! Intents are keyed by principal on Kafka, so one partition's cache sees
//! every intent of its principals and needs no coordination: one
//! [`ReplayCache`] per partition, owned by one thread, no locks.
//!
//! - Compute the intent's [`NonceKey`] once. A new (principal, nonce) is [`Seen::Fresh`]: decide it, then
//!   [`ReplayCache::record`] the verdict.
//! - The *same intent* again (same principal, nonce and intent id: a
//!   redelivery after a crash or rebalance) is [`Seen::Again`] with the
//!   verdict recorded the first time, so reprocessing is idempotent.
//! - A *different* intent reusing the nonce is [`Seen::Replay`]: deny.
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
use std::collections::{BinaryHeap, HashMap};

use sha2::{Digest, Sha256};
use warrant_schemas::wire::{Reason, Verdict};

/// What the cache knows of an intent's nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never seen (or forgotten after its window): decide it.
    Fresh,
    /// This very intent was decided before: give the same verdict.
    Again {
        /// The verdict recorded.
        verdict: Verdict,
        /// Its reason.
        reason: Reason,
    },
    /// Another intent used this nonce: deny as a replay.
    Replay,
    /// The cache is full of unexpired nonces: deny as overloaded.
    Full,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    intent_id: [u8; 16],
    verdict: Verdict,
    reason: Reason,
    until_us: u64,
}

/// One partition's nonce cache.
#[derive(Debug)]
pub struct ReplayCache {
    entries: HashMap<[u8; 16], Entry>,
    /// (expiry, key), soonest first; may hold stale pairs for keys that were
    /// re-recorded, skipped when popped.
    expiries: BinaryHeap<Reverse<(u64, [u8; 16])>>,
    capacity: usize,
}

/// Approximate bytes one entry costs (map slot, heap slot, overhead); see
/// [`ReplayCache::approx_bytes`].
pub const BYTES_PER_ENTRY: usize = 16 + 40 + 1 + 24 + 8;

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

    /// Looks up an intent's nonce at `now_us`.
    pub fn check(&mut self, nonce: &NonceKey, intent_id: &[u8; 16], now_us: u64) -> Seen {
        let k = nonce.0;
        match self.entries.get(&k) {
            Some(e) if e.until_us > now_us => {
                if &e.intent_id == intent_id {
                    Seen::Again {
                        verdict: e.verdict,
                        reason: e.reason,
                    }
                } else {
                    Seen::Replay
                }
            }
            _ => {
                if self.entries.len() >= self.capacity || self.expiries.len() > 2 * self.capacity {
                    self.expire(now_us);
                    if self.entries.len() >= self.capacity {
                        return Seen::Full;
                    }
                }
                Seen::Fresh
            }
        }
    }

    /// Records the verdict given to a fresh intent, remembered until
    /// `remember_until_us`. Call it right after [`Self::check`] said `Fresh`,
    /// before checking the next intent (check and record one intent at a
    /// time: two intents with one nonce in a batch must not both see
    /// `Fresh`). Returns whether it recorded: it never replaces a live entry
    /// of another intent, never shortens a live entry's window, and never
    /// grows past capacity.
    pub fn record(
        &mut self,
        nonce: &NonceKey,
        intent_id: &[u8; 16],
        (verdict, reason): (Verdict, Reason),
        now_us: u64,
        remember_until_us: u64,
    ) -> bool {
        let k = nonce.0;
        let until = match self.entries.get(&k) {
            // A live entry of another intent: keep it.
            Some(e) if e.until_us > now_us && e.intent_id != *intent_id => return false,
            // The same intent again: never shorten its window.
            Some(e) if e.until_us > now_us => e.until_us.max(remember_until_us),
            // An expired entry is replaced.
            Some(_) => remember_until_us,
            None => {
                if self.entries.len() >= self.capacity {
                    return false;
                }
                remember_until_us
            }
        };
        self.entries.insert(
            k,
            Entry {
                intent_id: *intent_id,
                verdict,
                reason,
                until_us: until,
            },
        );
        self.expiries.push(Reverse((until, k)));
        true
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

    const ALLOW: (Verdict, Reason) = (Verdict::Authorize, Reason::Authorized);

    #[test]
    fn fresh_again_replay() {
        let mut c = ReplayCache::new(10);
        let (n, id, other) = ([1; 16], [2; 16], [3; 16]);
        assert_eq!(c.check(&NonceKey::new("alice", &n), &id, 0), Seen::Fresh);
        assert!(c.record(&NonceKey::new("alice", &n), &id, ALLOW, 0, 100));
        assert_eq!(
            c.check(&NonceKey::new("alice", &n), &id, 50),
            Seen::Again {
                verdict: ALLOW.0,
                reason: ALLOW.1
            }
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
        // After the window the nonce is forgotten.
        assert_eq!(
            c.check(&NonceKey::new("alice", &n), &other, 100),
            Seen::Fresh
        );
    }

    #[test]
    fn memory_is_bounded_and_full_fails_closed() {
        let mut c = ReplayCache::new(1000);
        for i in 0..1000u32 {
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&i.to_le_bytes());
            assert_eq!(c.check(&NonceKey::new("p", &n), &n, 0), Seen::Fresh);
            assert!(c.record(&NonceKey::new("p", &n), &n, ALLOW, 0, 1_000 + u64::from(i)));
        }
        // Full of unexpired nonces: refuse, do not forget, do not grow.
        assert_eq!(
            c.check(&NonceKey::new("p", &[0xff; 16]), &[0xff; 16], 500),
            Seen::Full
        );
        assert!(!c.record(
            &NonceKey::new("p", &[0xff; 16]),
            &[0xff; 16],
            ALLOW,
            500,
            9_999
        ));
        assert_eq!(c.len(), 1000);
        // As windows end, room is made, oldest first.
        assert_eq!(
            c.check(&NonceKey::new("p", &[0xff; 16]), &[0xff; 16], 1_500),
            Seen::Fresh
        );
        assert_eq!(c.len(), 499);
        // A long run at capacity keeps memory flat.
        let before = c.approx_bytes();
        for i in 0..100_000u64 {
            let n = (i as u128 + 10_000).to_le_bytes();
            let now = 2_000 + i;
            if c.check(&NonceKey::new("p", &n), &n, now) == Seen::Fresh {
                assert!(c.record(&NonceKey::new("p", &n), &n, ALLOW, now, now + 900));
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
