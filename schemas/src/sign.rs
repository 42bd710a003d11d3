//! Intent signing for producers.
//!
//! The signed message is [`INTENT_SIGNING_DOMAIN`] followed by the exact
//! `Intent` bytes that travel in the `SignedIntent`. The domain prefix keeps
//! an intent signature from ever being valid as any other kind of message
//! signed by the same key, and the verifier hashes the very bytes it
//! received: no re-encoding, no canonical form to get wrong.

use ed25519_dalek::{Signer, SigningKey};
use flatbuffers::FlatBufferBuilder;
use sha2::Digest;

use crate::IntentFields;
use crate::build::write_signed_intent;

/// Domain-separation prefix of every intent signature.
pub const INTENT_SIGNING_DOMAIN: &[u8] = b"warrant.intent.v1\x00";

/// Domain-separation prefix of key ids.
pub const KEY_ID_DOMAIN: &[u8] = b"warrant.key-id.v1\x00";

/// A key id: the first 16 bytes of SHA-256(`KEY_ID_DOMAIN` || public key).
pub type KeyId = [u8; 16];

/// Derives the key id of an ed25519 public key.
pub fn key_id(public_key: &[u8; 32]) -> KeyId {
    let digest = sha2::Sha256::new()
        .chain_update(KEY_ID_DOMAIN)
        .chain_update(public_key)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(digest.get(..16).unwrap_or(&[0u8; 16]));
    id
}

/// Signs intents with one ed25519 key.
///
/// The secret key is never printed: `Debug` shows only the key id.
pub struct IntentSigner {
    key: SigningKey,
    key_id: KeyId,
}

impl std::fmt::Debug for IntentSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntentSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl IntentSigner {
    /// A signer from a 32-byte ed25519 secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(key.verifying_key().as_bytes());
        IntentSigner { key, key_id }
    }

    /// The public key, 32 bytes.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The key id that intents signed by this signer must carry.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Signs exact `Intent` bytes: ed25519 over `INTENT_SIGNING_DOMAIN || intent`.
    pub fn sign(&self, intent: &[u8]) -> [u8; 64] {
        let mut message = Vec::with_capacity(INTENT_SIGNING_DOMAIN.len() + intent.len());
        message.extend_from_slice(INTENT_SIGNING_DOMAIN);
        message.extend_from_slice(intent);
        self.key.sign(&message).to_bytes()
    }

    /// Builds the intent with this signer's key id, signs it and returns the
    /// `SignedIntent` buffer.
    pub fn sign_intent(&self, fields: &IntentFields<'_>) -> Vec<u8> {
        let mut intent_fbb = FlatBufferBuilder::with_capacity(512);
        let mut signed_fbb = FlatBufferBuilder::with_capacity(640);
        self.sign_intent_into(fields, &mut intent_fbb, &mut signed_fbb);
        signed_fbb.finished_data().to_vec()
    }

    /// Like [`Self::sign_intent`], reusing two builders' buffers (the signed
    /// message is still assembled in a fresh vector: ed25519 hashes it
    /// twice); the result is `signed_fbb.finished_data()`.
    pub fn sign_intent_into(
        &self,
        fields: &IntentFields<'_>,
        intent_fbb: &mut FlatBufferBuilder<'_>,
        signed_fbb: &mut FlatBufferBuilder<'_>,
    ) {
        IntentFields {
            key_id: self.key_id,
            ..*fields
        }
        .write(intent_fbb);
        let intent = intent_fbb.finished_data();
        let signature = self.sign(intent);
        write_signed_intent(signed_fbb, intent, &signature);
    }
}
