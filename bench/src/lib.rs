//! Shared fixtures for Warrant's criterion benchmarks (`benches/`).
//!
//! Fixtures build realistic signed intents with the producer API so that
//! the verification benches hash the same message sizes the engine sees.

pub mod policy;

use warrant_engine::verify::{PublicKey, SigItem};
use warrant_schemas::{INTENT_SIGNING_DOMAIN, IntentFields, IntentSigner, encode_intent};

/// `n` intents signed by `keys` distinct principals (round robin).
pub struct SignedSet {
    /// Prepared keys, one per principal.
    pub keys: Vec<PublicKey>,
    /// dalek keys, for the naive peer.
    pub dalek_keys: Vec<ed25519_dalek::VerifyingKey>,
    /// (key index, message = domain || intent bytes, signature).
    pub entries: Vec<(usize, Vec<u8>, [u8; 64])>,
    /// The intent bytes alone (without the domain prefix), parallel to `entries`.
    pub intents: Vec<Vec<u8>>,
}

impl SignedSet {
    /// Builds `n` signed intents from `keys` principals.
    pub fn new(n: usize, keys: usize) -> SignedSet {
        let keys = keys.max(1);
        let signers: Vec<IntentSigner> = (0..keys)
            .map(|i| {
                let mut seed = [0x5au8; 32];
                for (dst, src) in seed.iter_mut().zip((i as u64).to_le_bytes()) {
                    *dst = src;
                }
                IntentSigner::from_seed(seed)
            })
            .collect();
        let mut entries = Vec::with_capacity(n);
        let mut intents = Vec::with_capacity(n);
        for i in 0..n {
            let k = i % keys;
            let Some(signer) = signers.get(k) else {
                continue;
            };
            let id = (i as u128).to_le_bytes();
            let intent = encode_intent(&IntentFields {
                id,
                nonce: id,
                key_id: signer.key_id(),
                ..IntentFields::example()
            });
            let signature = signer.sign(&intent);
            let mut message = INTENT_SIGNING_DOMAIN.to_vec();
            message.extend_from_slice(&intent);
            entries.push((k, message, signature));
            intents.push(intent);
        }
        SignedSet {
            keys: signers
                .iter()
                .map(|s| PublicKey::from_bytes(s.public_key()))
                .collect(),
            dalek_keys: signers
                .iter()
                .filter_map(|s| ed25519_dalek::VerifyingKey::from_bytes(&s.public_key()).ok())
                .collect(),
            entries,
            intents,
        }
    }

    /// Warrant verification items for the whole set.
    pub fn items(&self) -> Vec<SigItem<'_>> {
        self.entries
            .iter()
            .zip(&self.intents)
            .filter_map(|((k, _, sig), intent)| {
                Some(SigItem {
                    key: self.keys.get(*k)?,
                    prefix: INTENT_SIGNING_DOMAIN,
                    message: intent,
                    signature: sig,
                })
            })
            .collect()
    }
}
