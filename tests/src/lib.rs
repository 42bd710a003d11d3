//! Shared helpers for Warrant's integration tests (`tests/tests/*.rs`).

use std::path::PathBuf;

pub mod fuzz;
pub mod hostile;

use warrant_engine::verify::{PublicKey, SigItem};
use warrant_schemas::IntentSigner;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One speccheck vector (`tests/data/ed25519-speccheck-cases.json`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SpecCase {
    /// Case number, 0 to 11.
    pub case: usize,
    /// Message, hex.
    pub message: String,
    /// Public key, hex.
    pub pub_key: String,
    /// Signature, hex.
    pub signature: String,
}

#[derive(serde::Deserialize)]
struct SpecFile {
    cases: Vec<SpecCase>,
}

/// Decoded speccheck case: (case, message, key, signature).
pub struct Decoded {
    /// Case number.
    pub case: usize,
    /// Message bytes.
    pub message: Vec<u8>,
    /// Prepared key.
    pub key: PublicKey,
    /// Raw key bytes.
    pub key_bytes: [u8; 32],
    /// Signature bytes.
    pub signature: [u8; 64],
}

/// The raw speccheck file committed in `tests/data/`.
pub const SPECCHECK_JSON: &str = include_str!("../data/ed25519-speccheck-cases.json");

/// Loads and decodes the 12 speccheck cases.
pub fn speccheck_cases() -> Vec<Decoded> {
    let file: SpecFile = serde_json::from_str(SPECCHECK_JSON).expect("speccheck json parses");
    file.cases
        .into_iter()
        .map(|c| {
            let key_bytes: [u8; 32] = hex::decode(&c.pub_key).unwrap().try_into().unwrap();
            Decoded {
                case: c.case,
                message: hex::decode(&c.message).unwrap(),
                key: PublicKey::from_bytes(key_bytes),
                key_bytes,
                signature: hex::decode(&c.signature).unwrap().try_into().unwrap(),
            }
        })
        .collect()
}

/// A deterministic signer for test principal `i`.
pub fn signer(i: u64) -> IntentSigner {
    let mut seed = [0xa5u8; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    IntentSigner::from_seed(seed)
}

/// A valid signed message for the batch fillers: (key, message, signature).
pub struct Owned {
    /// Prepared key.
    pub key: PublicKey,
    /// Message (no prefix).
    pub message: Vec<u8>,
    /// Signature.
    pub signature: [u8; 64],
}

impl Owned {
    /// A valid signature by principal `principal` over `message`, with an empty prefix.
    pub fn valid(principal: u64, message: Vec<u8>) -> Owned {
        let s = signer(principal);
        // IntentSigner signs INTENT_SIGNING_DOMAIN || message; strip nothing:
        // these fillers are verified with that prefix.
        let signature = s.sign(&message);
        Owned {
            key: PublicKey::from_bytes(s.public_key()),
            message,
            signature,
        }
    }

    /// The verification item, with the intent signing prefix.
    pub fn item(&self) -> SigItem<'_> {
        SigItem {
            key: &self.key,
            prefix: warrant_schemas::INTENT_SIGNING_DOMAIN,
            message: &self.message,
            signature: &self.signature,
        }
    }
}

/// `buf` with the table at `table_pos` given a new vtable, appended to the
/// buffer: the old one, widened to `slots` fields with zero entries (unset
/// fields), and, when `set` is true, one more field at index `slots` that
/// points at the table's first present field. What a writer with a schema
/// of more fields produces, as far as a reader of this one can tell.
///
/// Panics on a buffer that is not a verified FlatBuffer (test input only).
pub fn with_wider_vtable(buf: &[u8], table_pos: usize, slots: usize, set: bool) -> Vec<u8> {
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let soffset = i32::from_le_bytes(buf[table_pos..table_pos + 4].try_into().unwrap());
    let old = usize::try_from(table_pos as i64 - i64::from(soffset)).unwrap();
    let old_len = usize::from(u16_at(buf, old));
    let mut entries: Vec<u16> = (old + 4..old + old_len)
        .step_by(2)
        .map(|at| u16_at(buf, at))
        .collect();
    assert!(entries.len() <= slots, "the table already has more fields");
    let present = *entries.iter().find(|e| **e != 0).expect("a present field");
    entries.resize(slots, 0);
    if set {
        entries.push(present);
    }
    let mut out = buf.to_vec();
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    let new = out.len();
    let len = u16::try_from(4 + 2 * entries.len()).unwrap();
    out.extend(len.to_le_bytes());
    out.extend(u16_at(buf, old + 2).to_le_bytes());
    for e in entries {
        out.extend(e.to_le_bytes());
    }
    // The table finds its vtable at `table_pos - soffset`.
    let soffset = i32::try_from(table_pos as i64 - new as i64).unwrap();
    out[table_pos..table_pos + 4].copy_from_slice(&soffset.to_le_bytes());
    out
}

/// The position of a buffer's root table.
pub fn root_table(buf: &[u8]) -> usize {
    u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize
}
