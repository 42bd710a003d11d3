//! The trust store: which public keys may sign intents, for which
//! principal, and in what state.
//!
//! A key is trusted for exactly one principal: an intent signed by a known
//! key but naming another principal is treated as signed by an unknown key
//! (a producer cannot act as someone else by signing with its own key).
//! States follow a rotation: the principal's current key is `active`, the
//! one it replaces stays `rotating` for an overlap period (policy sees the
//! state and may restrict such intents), and a `revoked` key signs nothing
//! in a batch decoded after the store holding that state is installed.
//! (Each batch keeps the store it was decoded with to the end, so batches
//! already past decode, at most the pipeline's bounded depth, finish under
//! the store they started with.)
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
//!
//! At run time the store has two layers ([`LiveTrust`]): the file, and the
//! records of a compacted keys topic ([`KeyRecord`], keyed by public key),
//! which override the file key by key. A new store is built and installed
//! on every change of either, so a revocation read from the topic applies
//! to every batch decoded after it. Decisions already issued are signed by
//! the engine, not by producers' keys: they stay verifiable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use foldhash::HashMap;
use serde::{Deserialize, Serialize};
use warrant_policy::KeyStatus;
use warrant_schemas::KeyId;

use crate::verify::PublicKey;

/// The state of a trusted key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
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
    /// Spanned: errors about a key name its line.
    public_key: toml::Spanned<String>,
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
            // The file and line of the key's `public_key`, so that an
            // operator can find the entry among hundreds.
            let at = |e: TrustError| {
                let start = k.public_key.span().start;
                let line = 1 + text
                    .get(..start)
                    .map_or(0, |before| before.matches('\n').count());
                TrustError::Parse {
                    path: name.to_owned(),
                    message: format!("line {line}: {e}"),
                }
            };
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(k.public_key.get_ref().trim(), &mut bytes).map_err(|_| {
                at(TrustError::BadKey {
                    index,
                    principal: k.principal.clone(),
                    message: "`public_key` must be 64 hex digits".into(),
                })
            })?;
            store.add(&k.principal, bytes, k.status).map_err(at)?;
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
                "[[key]]\nprincipal = {}\npublic_key = \"{}\"\nstatus = \"{}\"\n\n",
                // TOML's own quoting (Rust's escapes, `\'` or `\u{e9}`, are
                // not TOML).
                toml::Value::String(k.principal.clone()),
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

/// One record of the keys topic: its Kafka key is the public key (64 hex
/// digits), its value this, as JSON
/// (`{"principal": "svc-a", "public_key": "…", "status": "revoked"}`). An
/// empty value (a tombstone) withdraws the record, leaving the file's
/// entry for that key, if any.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The principal the key signs for.
    pub principal: String,
    /// The public key, 64 hex digits.
    pub public_key: String,
    /// Its state.
    pub status: KeyState,
}

impl KeyRecord {
    /// Reads a record's value.
    pub fn parse(value: &[u8]) -> Result<KeyRecord, TrustError> {
        let r: KeyRecord = serde_json::from_slice(value).map_err(|e| TrustError::Parse {
            path: "keys topic record".into(),
            message: e.to_string(),
        })?;
        r.key()?;
        Ok(r)
    }

    /// The record as the topic holds it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The public key's bytes.
    pub fn key(&self) -> Result<[u8; 32], TrustError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(self.public_key.trim(), &mut bytes).map_err(|_| {
            TrustError::BadKey {
                index: 0,
                principal: self.principal.clone(),
                message: "`public_key` must be 64 hex digits".into(),
            }
        })?;
        Ok(bytes)
    }
}

/// The trust store in force, rebuilt from its file and the keys topic's
/// records whenever either changes, and installed where the engine reads
/// it.
#[derive(Debug)]
pub struct LiveTrust {
    layers: Mutex<Layers>,
    target: Arc<ArcSwap<TrustStore>>,
}

#[derive(Debug)]
struct Layers {
    file: TrustStore,
    records: BTreeMap<[u8; 32], KeyRecord>,
    /// Keys whose latest keys-topic record is unusable (does not parse, or
    /// was refused): revoked if the file lists them, unknown otherwise (as
    /// after compaction), until a usable record or a tombstone replaces
    /// it. Their latest record is their
    /// state and it cannot be known; keeping the one before would make
    /// instances disagree once compaction removes it.
    distrusted: BTreeSet<[u8; 32]>,
}

impl LiveTrust {
    /// Starts from the file's store, installed in a new `ArcSwap`.
    pub fn new(file: TrustStore) -> LiveTrust {
        LiveTrust {
            target: Arc::new(ArcSwap::from_pointee(file.clone())),
            layers: Mutex::new(Layers {
                file,
                records: BTreeMap::new(),
                distrusted: BTreeSet::new(),
            }),
        }
    }

    /// What the engine reads.
    pub fn target(&self) -> Arc<ArcSwap<TrustStore>> {
        Arc::clone(&self.target)
    }

    /// A new version of the file; returns the store installed.
    pub fn set_file(&self, file: TrustStore) -> Result<usize, TrustError> {
        let mut l = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        let built = build(&file, &l.records, &l.distrusted)?;
        l.file = file;
        let n = built.len();
        self.target.store(Arc::new(built));
        Ok(n)
    }

    /// A keys-topic record (`None`: a tombstone) for `public_key`. A
    /// record that cannot be used (under another key, a weak key, a key
    /// listed twice) is refused, and the key is revoked until a usable
    /// record or a tombstone for it comes ([`LiveTrust::distrust`]: revoked
    /// if the file lists it, else unknown).
    pub fn apply(
        &self,
        public_key: [u8; 32],
        record: Option<KeyRecord>,
    ) -> Result<usize, TrustError> {
        let mut l = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        let mut records = l.records.clone();
        let mut distrusted = l.distrusted.clone();
        distrusted.remove(&public_key);
        let checked = match record {
            Some(r) => match r.key() {
                Ok(k) if k == public_key => {
                    records.insert(public_key, r);
                    Ok(())
                }
                Ok(_) => Err(TrustError::Parse {
                    path: "keys topic record".into(),
                    message: format!(
                        "its Kafka key {} is not its public key {}",
                        hex::encode(public_key),
                        r.public_key
                    ),
                }),
                Err(e) => Err(e),
            },
            None => {
                records.remove(&public_key);
                Ok(())
            }
        };
        let built = checked.and_then(|()| build(&l.file, &records, &distrusted));
        match built {
            Ok(built) => {
                l.records = records;
                l.distrusted = distrusted;
                let n = built.len();
                self.target.store(Arc::new(built));
                Ok(n)
            }
            Err(e) => {
                Self::distrust_locked(&mut l, &self.target, public_key);
                Err(e)
            }
        }
    }

    /// The latest keys-topic record of `public_key` is unusable (it does
    /// not parse): the key signs nothing until a usable record or a
    /// tombstone for it comes. It is revoked if the file lists it, and
    /// otherwise absent (unknown), which is also what a restart sees once
    /// compaction has removed its earlier records. Returns the number of
    /// keys in the store installed.
    pub fn distrust(&self, public_key: [u8; 32]) -> usize {
        let mut l = self.layers.lock().unwrap_or_else(|p| p.into_inner());
        Self::distrust_locked(&mut l, &self.target, public_key)
    }

    fn distrust_locked(
        l: &mut Layers,
        target: &ArcSwap<TrustStore>,
        public_key: [u8; 32],
    ) -> usize {
        l.distrusted.insert(public_key);
        // The record it replaces is dropped: it is no longer the key's
        // latest, and compaction will remove it.
        l.records.remove(&public_key);
        match build(&l.file, &l.records, &l.distrusted) {
            Ok(built) => {
                let n = built.len();
                target.store(Arc::new(built));
                n
            }
            // Fewer records and one more revocation than a store that
            // built cannot fail to build; if it ever did, the store in
            // force, with only this key revoked in it, is the safe one.
            Err(_) => {
                let mut current = TrustStore::clone(&target.load());
                for k in current.keys.values_mut() {
                    if k.key.as_bytes() == &public_key {
                        k.state = KeyState::Revoked;
                    }
                }
                let n = current.len();
                target.store(Arc::new(current));
                n
            }
        }
    }
}

/// The file's keys, each replaced by the topic's record for the same
/// public key, plus the topic's other keys. A key revoked in either layer
/// is revoked.
fn build(
    file: &TrustStore,
    records: &BTreeMap<[u8; 32], KeyRecord>,
    distrusted: &BTreeSet<[u8; 32]>,
) -> Result<TrustStore, TrustError> {
    let mut out = TrustStore::new();
    for k in file.keys.values() {
        if !records.contains_key(k.key.as_bytes()) {
            let state = if distrusted.contains(k.key.as_bytes()) {
                KeyState::Revoked
            } else {
                k.state
            };
            out.add(&k.principal, *k.key.as_bytes(), state)?;
        }
    }
    for (key, r) in records {
        // A revocation is never undone by the other layer.
        let revoked_in_file = file
            .keys
            .values()
            .any(|k| k.key.as_bytes() == key && k.state == KeyState::Revoked);
        let state = if revoked_in_file || distrusted.contains(key) {
            KeyState::Revoked
        } else {
            r.status
        };
        out.add(&r.principal, *key, state)?;
    }
    Ok(out)
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
        // Principals any text may name, quoted as TOML quotes them.
        let c = IntentSigner::from_seed([5; 32]);
        let d = IntentSigner::from_seed([6; 32]);
        let e = IntentSigner::from_seed([7; 32]);
        s.add("o'brien", c.public_key(), KeyState::Active).unwrap();
        s.add("café", d.public_key(), KeyState::Active).unwrap();
        s.add("a\"b\\c", e.public_key(), KeyState::Active).unwrap();
        let again = TrustStore::parse(&s.to_toml(), "t").unwrap();
        for (p, k) in [("o'brien", &c), ("café", &d), ("a\"b\\c", &e)] {
            assert!(
                matches!(again.lookup(&k.key_id(), p), Lookup::Usable(..)),
                "{p}"
            );
        }
    }

    #[test]
    fn topic_records_override_the_file_and_tombstones_restore_it() {
        let a = IntentSigner::from_seed([1; 32]);
        let a2 = IntentSigner::from_seed([3; 32]);
        let mut file = TrustStore::new();
        file.add("svc-a", a.public_key(), KeyState::Active).unwrap();
        let live = LiveTrust::new(file);
        let target = live.target();
        let record = |k: &IntentSigner, status| KeyRecord {
            principal: "svc-a".into(),
            public_key: hex::encode(k.public_key()),
            status,
        };
        // Rotation: a new key, the old one rotating.
        live.apply(a2.public_key(), Some(record(&a2, KeyState::Active)))
            .unwrap();
        live.apply(a.public_key(), Some(record(&a, KeyState::Rotating)))
            .unwrap();
        let s = target.load();
        assert!(matches!(
            s.lookup(&a2.key_id(), "svc-a"),
            Lookup::Usable(_, KeyStatus::Active)
        ));
        assert!(matches!(
            s.lookup(&a.key_id(), "svc-a"),
            Lookup::Usable(_, KeyStatus::Rotating)
        ));
        // Revocation, through the JSON the topic carries.
        let json = record(&a, KeyState::Revoked).to_json();
        live.apply(
            a.public_key(),
            Some(KeyRecord::parse(json.as_bytes()).unwrap()),
        )
        .unwrap();
        assert!(matches!(
            target.load().lookup(&a.key_id(), "svc-a"),
            Lookup::Revoked
        ));
        // A tombstone withdraws the record: the file's entry is back.
        live.apply(a.public_key(), None).unwrap();
        assert!(matches!(
            target.load().lookup(&a.key_id(), "svc-a"),
            Lookup::Usable(_, KeyStatus::Active)
        ));
        // A record under another key is refused, and the key it was
        // published under is revoked until a usable record comes: its
        // latest record is its state, and that state cannot be known.
        assert!(
            live.apply(a.public_key(), Some(record(&a2, KeyState::Active)))
                .is_err()
        );
        assert!(matches!(
            target.load().lookup(&a.key_id(), "svc-a"),
            Lookup::Revoked
        ));
        live.apply(a.public_key(), None).unwrap();
        assert!(matches!(
            target.load().lookup(&a.key_id(), "svc-a"),
            Lookup::Usable(_, KeyStatus::Active)
        ));
        // A weak key is refused and adds nothing.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = KeyRecord {
            principal: "x".into(),
            public_key: hex::encode(identity),
            status: KeyState::Active,
        };
        assert!(live.apply(identity, Some(weak)).is_err());
        assert_eq!(target.load().len(), 2);
        assert!(KeyRecord::parse(b"{\"principal\":\"x\"}").is_err());
        // A revocation in the file wins over the topic's record.
        live.apply(a.public_key(), Some(record(&a, KeyState::Rotating)))
            .unwrap();
        let mut revoking = TrustStore::new();
        revoking
            .add("svc-a", a.public_key(), KeyState::Revoked)
            .unwrap();
        live.set_file(revoking).unwrap();
        assert!(matches!(
            target.load().lookup(&a.key_id(), "svc-a"),
            Lookup::Revoked
        ));
        live.apply(a.public_key(), Some(record(&a, KeyState::Revoked)))
            .unwrap();
        // A new file keeps the topic's records on top.
        live.apply(a.public_key(), Some(record(&a, KeyState::Revoked)))
            .unwrap();
        let mut file = TrustStore::new();
        file.add("svc-a", a.public_key(), KeyState::Active).unwrap();
        live.set_file(file).unwrap();
        assert!(matches!(
            target.load().lookup(&a.key_id(), "svc-a"),
            Lookup::Revoked
        ));
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
        // A bad or repeated key names its file and line.
        let a_hex = hex::encode(a.public_key());
        let text = format!(
            "[[key]]\nprincipal = \"x\"\npublic_key = \"{a_hex}\"\nstatus = \"active\"\n\n\
             [[key]]\nprincipal = \"y\"\npublic_key = \"{}\"\nstatus = \"active\"\n\n\
             [[key]]\nprincipal = \"z\"\npublic_key = \"{a_hex}\"\nstatus = \"active\"\n",
            hex::encode(identity)
        );
        let err = TrustStore::parse(&text, "keys.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("trust store `keys.toml`: line 8: key 1 (principal `y`)"),
            "{err}"
        );
        let without_y = text.replace(
            &hex::encode(identity),
            &hex::encode(IntentSigner::from_seed([2; 32]).public_key()),
        );
        let err = TrustStore::parse(&without_y, "keys.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "trust store `keys.toml`: line 13: key 2 (principal `z`) is listed twice"
            ),
            "{err}"
        );
        let err = TrustStore::parse(
            "[[key]]\nprincipal = \"x\"\npublic_key = \"00\"\nstatus = \"sleeping\"\n",
            "t.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("t.toml"), "{err}");
    }

    /// A key whose latest keys-topic record does not parse is revoked, and
    /// stays revoked however much of its history compaction has removed:
    /// every instance, and every restart, agrees.
    #[test]
    fn an_unusable_latest_record_revokes_its_key_before_and_after_compaction() {
        let a = IntentSigner::from_seed([1; 32]);
        let b = IntentSigner::from_seed([2; 32]);
        let mut file = TrustStore::new();
        file.add("svc-a", a.public_key(), KeyState::Active).unwrap();
        let record = |k: &IntentSigner| KeyRecord {
            principal: "svc-b".into(),
            public_key: hex::encode(k.public_key()),
            status: KeyState::Active,
        };
        // The whole history: b published active, then a garbage record for
        // a and one for b.
        let full = LiveTrust::new(file.clone());
        full.apply(b.public_key(), Some(record(&b))).unwrap();
        full.distrust(a.public_key());
        full.distrust(b.public_key());
        // After compaction only the garbage records remain.
        let compacted = LiveTrust::new(file);
        compacted.distrust(a.public_key());
        compacted.distrust(b.public_key());
        for live in [&full, &compacted] {
            let s = live.target().load();
            assert!(matches!(s.lookup(&a.key_id(), "svc-a"), Lookup::Revoked));
            assert!(!matches!(
                s.lookup(&b.key_id(), "svc-b"),
                Lookup::Usable(..)
            ));
        }
        // A usable record ends it.
        full.apply(b.public_key(), Some(record(&b))).unwrap();
        assert!(matches!(
            full.target().load().lookup(&b.key_id(), "svc-b"),
            Lookup::Usable(_, KeyStatus::Active)
        ));
        // A new version of the file does not lift it.
        let mut again = TrustStore::new();
        again
            .add("svc-a", a.public_key(), KeyState::Active)
            .unwrap();
        full.set_file(again).unwrap();
        assert!(matches!(
            full.target().load().lookup(&a.key_id(), "svc-a"),
            Lookup::Revoked
        ));
    }
}
