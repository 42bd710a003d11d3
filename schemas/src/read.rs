//! Readers: the only way untrusted bytes become typed values.
//!
//! Each reader, in order: checks the buffer size against [`Limits`], checks
//! the file identifier, runs the FlatBuffers verifier (bounds, alignment,
//! required fields, UTF-8, depth and table-count limits), checks the format
//! version, refuses fields this build does not know, then checks the
//! semantic limits (string lengths, vector lengths, unique attribute keys).
//! Only then are the generated accessors used, so none of them can read out
//! of bounds or hit a missing required field.
//!
//! Unknown fields are refused, not skipped as FlatBuffers readers usually
//! do: every Warrant buffer is signed or signs something, and a field added
//! by a newer schema may restrict the rest (a limit on an intent, a
//! condition on a decision). A reader that dropped it would act on less
//! than was signed. Upgrade readers (engines, executors, auditors) before
//! writers set a new field; a field present but unset (a vtable entry of
//! 0) is accepted.

use flatbuffers::{Follow, Verifiable, VerifierOptions};

use crate::error::WireError;
use crate::wire::{self, AttrKind};
use crate::{
    CHECKPOINT_IDENTIFIER, DECISION_IDENTIFIER, FORMAT_VERSION, INTENT_IDENTIFIER,
    LINEAGE_RECORD_IDENTIFIER, SIGNED_INTENT_IDENTIFIER,
};

/// Explicit bounds for opening untrusted buffers.
///
/// The defaults fit every legitimate Warrant message with room to spare and
/// keep the cost of verifying a hostile buffer small and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest buffer accepted, in bytes (default 64 KiB).
    pub max_buffer_bytes: usize,
    /// Deepest table nesting the verifier follows (default 8; Warrant's
    /// formats nest at most 3 deep).
    pub max_depth: usize,
    /// Most tables the verifier visits in one buffer (default 256).
    pub max_tables: usize,
    /// Longest string field, in bytes (default 256).
    pub max_string_bytes: usize,
    /// Most attributes on one intent (default 32).
    pub max_attributes: usize,
    /// Longest Merkle inclusion proof (default 32 levels: batches of up to 2^32).
    pub max_proof_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_buffer_bytes: 64 * 1024,
            max_depth: 8,
            max_tables: 256,
            max_string_bytes: 256,
            max_attributes: 32,
            max_proof_len: 32,
        }
    }
}

impl Limits {
    fn verifier_options(&self) -> VerifierOptions {
        VerifierOptions {
            max_depth: self.max_depth,
            max_tables: self.max_tables,
            // The apparent size counts shared sub-objects once per reference;
            // twice the buffer bound stops a DAG blow-up without refusing
            // any honest buffer (Warrant's builders never share objects).
            max_apparent_size: self.max_buffer_bytes.saturating_mul(2),
            ignore_missing_null_terminator: false,
        }
    }

    fn check_str(&self, field: &'static str, s: &str) -> Result<(), WireError> {
        if s.len() > self.max_string_bytes {
            return Err(WireError::FieldTooLong {
                field,
                len: s.len(),
                max: self.max_string_bytes,
            });
        }
        Ok(())
    }

    fn check_nonempty_str(&self, field: &'static str, s: &str) -> Result<(), WireError> {
        if s.is_empty() {
            return Err(WireError::Empty { field });
        }
        self.check_str(field, s)
    }
}

/// How many fields each table of this build's schema has, by table name:
/// a buffer that sets a field past these is refused
/// ([`WireError::UnknownField`]). `tests/tests/schema_compat.rs` checks
/// them against the schema files.
pub const KNOWN_FIELDS: [(&str, usize); 6] = [
    ("Attribute", ATTRIBUTE_FIELDS),
    ("Checkpoint", CHECKPOINT_FIELDS),
    ("Decision", DECISION_FIELDS),
    ("Intent", INTENT_FIELDS),
    ("LineageRecord", LINEAGE_RECORD_FIELDS),
    ("SignedIntent", SIGNED_INTENT_FIELDS),
];

/// The number of fields of a table whose last field's vtable slot is `last`
/// (slot 4 is field 0, and each field takes 2 bytes).
const fn fields_through(last: flatbuffers::VOffsetT) -> usize {
    (last as usize - 4) / 2 + 1
}

// Counted from each table's last field in the generated code. A field
// appended and regenerated leaves these naming the old last field: the
// readers would refuse the new one until they are moved to it, which
// `tests/tests/schema_compat.rs` (`readers_know_exactly_the_schemas_fields`)
// reports.
const ATTRIBUTE_FIELDS: usize = fields_through(wire::Attribute::VT_BOOL_VALUE);
const CHECKPOINT_FIELDS: usize = fields_through(wire::Checkpoint::VT_FRONTIER);
const DECISION_FIELDS: usize = fields_through(wire::Decision::VT_BATCH_SIGNATURE);
const INTENT_FIELDS: usize = fields_through(wire::Intent::VT_PAYLOAD_DIGEST);
const LINEAGE_RECORD_FIELDS: usize = fields_through(wire::LineageRecord::VT_VALID_UNTIL_US);
const SIGNED_INTENT_FIELDS: usize = fields_through(wire::SignedIntent::VT_SIGNATURE);

/// Refuses a table that sets any field past its first `known`. Runs after
/// the verifier, which has checked that the vtable lies in the buffer.
fn known_fields_only(
    table: &flatbuffers::Table<'_>,
    name: &'static str,
    known: usize,
) -> Result<(), WireError> {
    let vtable = table.vtable();
    // Two u16 of sizes, then one u16 per field. (`VTable::num_fields`
    // would underflow on a vtable shorter than its own header.)
    let slots = (vtable.num_bytes() / 2).saturating_sub(2);
    for index in known..slots {
        let slot = u16::try_from(4 + 2 * index).unwrap_or(u16::MAX);
        if vtable.get(slot) != 0 {
            return Err(WireError::UnknownField {
                table: name,
                index,
                known,
            });
        }
    }
    Ok(())
}

/// Size, identifier and verifier checks shared by every reader.
fn open_root<'a, T>(
    buf: &'a [u8],
    identifier: &'static str,
    limits: &Limits,
) -> Result<T::Inner, WireError>
where
    T: 'a + Follow<'a> + Verifiable,
{
    if buf.len() > limits.max_buffer_bytes {
        return Err(WireError::TooLarge {
            len: buf.len(),
            max: limits.max_buffer_bytes,
        });
    }
    // The identifier sits at bytes 4..8, right after the root offset.
    // (flatbuffers::buffer_has_identifier asserts on short buffers, so the
    // check is done here, without panicking.)
    let found = buf.get(4..8);
    if found != Some(identifier.as_bytes()) {
        return Err(WireError::WrongIdentifier {
            expected: identifier,
            found: found.and_then(|f| <[u8; 4]>::try_from(f).ok()),
        });
    }
    Ok(flatbuffers::root_with_opts::<T>(
        &limits.verifier_options(),
        buf,
    )?)
}

fn check_verdict_reason(verdict: wire::Verdict, reason: wire::Reason) -> Result<(), WireError> {
    if verdict.0 > wire::Verdict::ENUM_MAX {
        return Err(WireError::UnknownEnum {
            field: "verdict",
            value: u16::from(verdict.0),
        });
    }
    if reason.0 > wire::Reason::ENUM_MAX {
        return Err(WireError::UnknownEnum {
            field: "reason",
            value: reason.0,
        });
    }
    Ok(())
}

fn check_version(found: u16) -> Result<(), WireError> {
    if found != FORMAT_VERSION {
        return Err(WireError::UnsupportedVersion {
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Opens an `Intent` buffer.
pub fn open_intent<'a>(buf: &'a [u8], limits: &Limits) -> Result<wire::Intent<'a>, WireError> {
    let intent = open_root::<wire::Intent>(buf, INTENT_IDENTIFIER, limits)?;
    check_version(intent.format_version())?;
    known_fields_only(&intent._tab, "Intent", INTENT_FIELDS)?;
    limits.check_nonempty_str("principal", intent.principal())?;
    limits.check_nonempty_str("action", intent.action())?;
    limits.check_str("resource", intent.resource())?;
    limits.check_str("environment", intent.environment())?;
    limits.check_str("region", intent.region())?;
    if let Some(attrs) = intent.attributes() {
        if attrs.len() > limits.max_attributes {
            return Err(WireError::TooManyElements {
                field: "attributes",
                len: attrs.len(),
                max: limits.max_attributes,
            });
        }
        for (i, attr) in attrs.iter().enumerate() {
            known_fields_only(&attr._tab, "Attribute", ATTRIBUTE_FIELDS)?;
            let key = attr.key();
            limits.check_nonempty_str("attributes.key", key)?;
            let bad = || WireError::BadAttribute {
                key: key.to_owned(),
                kind: attr.kind().0,
            };
            match (attr.kind(), attr.str_value()) {
                (AttrKind::Str, Some(s)) => limits.check_str("attributes.str_value", s)?,
                // A string on an Int or Bool attribute is a stray field; a
                // Str attribute without one has no value.
                (AttrKind::Int | AttrKind::Bool, None) => {}
                _ => return Err(bad()),
            }
            // Quadratic, but bounded by max_attributes (32 by default) and
            // allocation-free; a hash set would cost more at these sizes.
            if attrs.iter().take(i).any(|earlier| earlier.key() == key) {
                return Err(WireError::DuplicateAttribute {
                    key: key.to_owned(),
                });
            }
        }
    }
    Ok(intent)
}

/// A verified `SignedIntent` and the `Intent` inside it.
#[derive(Debug, Clone, Copy)]
pub struct SignedIntentRef<'a> {
    /// The exact `Intent` bytes the signature covers (after the domain prefix).
    pub intent_bytes: &'a [u8],
    /// The ed25519 signature, R then S.
    pub signature: &'a [u8; 64],
    /// The intent, opened from `intent_bytes` through the verifier.
    pub intent: wire::Intent<'a>,
}

impl SignedIntentRef<'_> {
    /// The intent's digest ([`crate::intent_digest`]): over the signed
    /// `Intent` bytes and the signature, not the wrapper.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::new()
            .chain_update(crate::INTENT_DIGEST_DOMAIN)
            .chain_update(self.intent_bytes)
            .chain_update(self.signature)
            .finalize()
            .into()
    }
}

/// Opens a `SignedIntent` buffer and the `Intent` it carries.
///
/// The signature is *not* checked here: that is the engine's verifier's job,
/// over `INTENT_SIGNING_DOMAIN || intent_bytes`.
pub fn open_signed_intent<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<SignedIntentRef<'a>, WireError> {
    let signed = open_root::<wire::SignedIntent>(buf, SIGNED_INTENT_IDENTIFIER, limits)?;
    check_version(signed.format_version())?;
    known_fields_only(&signed._tab, "SignedIntent", SIGNED_INTENT_FIELDS)?;
    let intent_bytes = signed.intent().bytes();
    let intent = open_intent(intent_bytes, limits)?;
    Ok(SignedIntentRef {
        intent_bytes,
        signature: &signed.signature().0,
        intent,
    })
}

/// Opens a `Decision` buffer.
pub fn open_decision<'a>(buf: &'a [u8], limits: &Limits) -> Result<wire::Decision<'a>, WireError> {
    let decision = open_root::<wire::Decision>(buf, DECISION_IDENTIFIER, limits)?;
    check_version(decision.format_version())?;
    known_fields_only(&decision._tab, "Decision", DECISION_FIELDS)?;
    check_verdict_reason(decision.verdict(), decision.reason())?;
    if decision.leaf_index() >= decision.batch_size() {
        return Err(WireError::LeafOutOfRange {
            index: decision.leaf_index(),
            size: decision.batch_size(),
        });
    }
    if let Some(rule) = decision.rule_id() {
        limits.check_str("rule_id", rule)?;
    }
    if let Some(audience) = decision.audience() {
        limits.check_str("audience", audience)?;
    }
    if let Some(proof) = decision.proof()
        && proof.len() > limits.max_proof_len
    {
        return Err(WireError::TooManyElements {
            field: "proof",
            len: proof.len(),
            max: limits.max_proof_len,
        });
    }
    Ok(decision)
}

/// Opens a `LineageRecord` buffer.
pub fn open_lineage_record<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<wire::LineageRecord<'a>, WireError> {
    let record = open_root::<wire::LineageRecord>(buf, LINEAGE_RECORD_IDENTIFIER, limits)?;
    check_version(record.format_version())?;
    known_fields_only(&record._tab, "LineageRecord", LINEAGE_RECORD_FIELDS)?;
    check_verdict_reason(record.verdict(), record.reason())?;
    Ok(record)
}

/// Opens a `Checkpoint` buffer.
pub fn open_checkpoint<'a>(
    buf: &'a [u8],
    limits: &Limits,
) -> Result<wire::Checkpoint<'a>, WireError> {
    let checkpoint = open_root::<wire::Checkpoint>(buf, CHECKPOINT_IDENTIFIER, limits)?;
    check_version(checkpoint.format_version())?;
    known_fields_only(&checkpoint._tab, "Checkpoint", CHECKPOINT_FIELDS)?;
    limits.check_nonempty_str("origin", checkpoint.origin())?;
    Ok(checkpoint)
}
