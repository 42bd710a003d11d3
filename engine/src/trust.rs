//! The trust store: which public keys may sign intents, for which
//! principal, and in what state.
//!
//! A key is trusted for exactly one principal: an intent signed by a known
//! key but naming another principal is treated as signed by an unknown key
//! (a producer cannot act as someone else by signing with its own key).
//! States follow a rotation: the principal's current key is `active`, the
//! one it replaces stays `rotating` for an overlap period (policy sees the
//! state and may restrict such intents), and a `revoked` key signs nothing
//! from the moment the store holding that state is installed.
//!
//! The file form (`--trust`, TOML):
//!
//! ```toml
//! [[key]]
//! principal = "svc-treasury"
//! public_key = "3d40…"   # 64 hex digits
//! status = "active"      # or "rotating", "revoked"
//! ```
//!
//! The engine reads the store once per batch through an `ArcSwap`, so a
//! new version can be installed while it runs with no lock per intent.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use warrant_policy::KeyStatus;
use warrant_schemas::KeyId;

use crate::verify::PublicKey;

/// The state of a trusted key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// The principal's current key.
    Active,
    /// A replaced key, still accepted during the rotation overlap.
    Rotating,
    /// Signs nothing any more.
    Revoked,
}

impl KeyState {
    /// The spelling used in trust files.
    pub fn name(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Rotating => "rotating",
            KeyState::Revoked => "revoked",
        }
    }
}

/// One trusted key.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    /// The only principal this key signs for.
    pub principal: String,
    /// The key, prepared for verification.
    pub key: PublicKey,
    /// Its state.
    pub state: KeyState,
}

/// What the store says about an intent's key.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// Usable: verify the signature with it; policy sees `status`.
    Usable(&'a PublicKey, KeyStatus),
    /// No such key, or a key of another principal.
    Unknown,
    /// The key is revoked.
    Revoked,
}

/// Why a trust store could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read.
    #[error("cannot read trust store `{path}`: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a valid trust store.
    #[error("trust store `{path}`: {message}")]
    Parse {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A key is not a usable ed25519 public key.
    #[error("key {index} (principal `{principal}`): {message}")]
    BadKey {
        /// Position in the store.
        index: usize,
        /// Its principal.
        principal: String,
        /// What is wrong.
        message: String,
    },
    /// The same key appears twice.
    #[error("key {index} (principal `{principal}`) is listed twice")]
    Duplicate {
        /// Position of the second listing.
        index: usize,
        /// Its principal.
        principal: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    key: Vec<FileKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    principal: String,
    public_key: String,
    status: KeyState,
}

/// The trusted intent-signing keys, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: HashMap<KeyId, TrustedKey>,
}

impl TrustStore {
    /// An empty store: every intent is signed by an unknown key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `public_key` for `principal`; returns its key id. Refuses a
    /// key that is not canonical, of small order or outside the prime-order
    /// subgroup, an empty principal, and a key already listed.
    pub fn add(
        &mut self,
        principal: &str,
        public_key: [u8; 32],
        state: KeyState,
    ) -> Result<KeyId, TrustError> {
        let index = self.keys.len();
        let bad = |message: String| TrustError::BadKey {
            index,
            principal: principal.to_owned(),
            message,
        };
        if principal.is_empty() {
            return Err(bad("the principal is empty".into()));
        }
        let key = PublicKey::from_bytes(public_key);
        key.check().map_err(|e| bad(e.to_string()))?;
        let id = key.key_id();
        if self.keys.contains_key(&id) {
            return Err(TrustError::Duplicate {
                index,
                principal: principal.to_owned(),
            });
        }
        self.keys.insert(
            id,
            TrustedKey {
                principal: principal.to_owned(),
                key,
                state,
            },
        );
        Ok(id)
    }

    /// Reads a trust file (format in the module docs).
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TrustError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses a trust file's text; `name` is used in messages.
    pub fn parse(text: &str, name: &str) -> Result<Self, TrustError> {
        let file: File = toml::from_str(text).map_err(|e| TrustError::Parse {
            path: name.to_owned(),
            message: e.to_string(),
        })?;
        let mut store = TrustStore::new();
        for (index, k) in file.key.iter().enumerate() {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(k.public_key.trim(), &mut bytes).map_err(|_| {
                TrustError::BadKey {
                    index,
                    principal: k.principal.clone(),
                    message: "`public_key` must be 64 hex digits".into(),
                }
            })?;
            store.add(&k.principal, bytes, k.status)?;
        }
        Ok(store)
    }

    /// The store in its file form, keys sorted by principal then key.
    pub fn to_toml(&self) -> String {
        let mut keys: Vec<&TrustedKey> = self.keys.values().collect();
        keys.sort_by(|a, b| {
            (a.principal.as_str(), a.key.as_bytes()).cmp(&(b.principal.as_str(), b.key.as_bytes()))
        });
        let mut out = String::new();
        for k in keys {
            out.push_str(&format!(
                "[[key]]\nprincipal = \"{}\"\npublic_key = \"{}\"\nstatus = \"{}\"\n\n",
                k.principal.escape_default(),
                hex::encode(k.key.as_bytes()),
                k.state.name()
            ));
        }
        out
    }

    /// What the store says about `key_id` signing for `principal`.
    pub fn lookup(&self, key_id: &KeyId, principal: &str) -> Lookup<'_> {
        match self.keys.get(key_id) {
            Some(k) if k.principal != principal => Lookup::Unknown,
            Some(k) => match k.state {
                KeyState::Active => Lookup::Usable(&k.key, KeyStatus::Active),
                KeyState::Rotating => Lookup::Usable(&k.key, KeyStatus::Rotating),
                KeyState::Revoked => Lookup::Revoked,
            },
            None => Lookup::Unknown,
        }
    }

    /// A key by id, whatever its principal and state.
    pub fn get(&self, key_id: &KeyId) -> Option<&TrustedKey> {
        self.keys.get(key_id)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use warrant_schemas::IntentSigner;

    #[test]
    fn keys_belong_to_one_principal_and_states_are_kept() {
        let a = IntentSigner::from_seed([1; 32]);
        let b = IntentSigner::from_seed([2; 32]);
        let mut s = TrustStore::new();
        s.add("svc-a", a.public_key(), KeyState::Rotating).unwrap();
        s.add("svc-b", b.public_key(), KeyState::Revoked).unwrap();
        assert!(matches!(
            s.lookup(&a.key_id(), "svc-a"),
            Lookup::Usable(_, KeyStatus::Rotating)
        ));
        assert!(matches!(s.lookup(&a.key_id(), "svc-b"), Lookup::Unknown));
        assert!(matches!(s.lookup(&b.key_id(), "svc-b"), Lookup::Revoked));
        assert!(matches!(s.lookup(&[9; 16], "svc-a"), Lookup::Unknown));
        // The file form round-trips.
        let again = TrustStore::parse(&s.to_toml(), "t").unwrap();
        assert!(matches!(
            again.lookup(&b.key_id(), "svc-b"),
            Lookup::Revoked
        ));
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn weak_duplicate_and_malformed_keys_are_refused() {
        let mut s = TrustStore::new();
        // The identity point: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            s.add("x", identity, KeyState::Active),
            Err(TrustError::BadKey { .. })
        ));
        let a = IntentSigner::from_seed([1; 32]);
        s.add("x", a.public_key(), KeyState::Active).unwrap();
        assert!(matches!(
            s.add("y", a.public_key(), KeyState::Active),
            Err(TrustError::Duplicate { .. })
        ));
        let err = TrustStore::parse(
            "[[key]]\nprincipal = \"x\"\npublic_key = \"zz\"\nstatus = \"active\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        let err = TrustStore::parse(
            "[[key]]\nprincipal = \"x\"\npublic_key = \"00\"\nstatus = \"sleeping\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("t.toml"), "{err}");
    }
}
