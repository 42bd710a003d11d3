//! Errors of the wire-format readers.

/// Why a buffer was refused.
///
/// Every variant is the sender's fault (bad input): retrying the same bytes
/// gives the same error. The engine turns any of them into a deny decision
/// with reason `Malformed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is larger than [`crate::Limits::max_buffer_bytes`].
    #[error("buffer of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Buffer length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The buffer does not carry the expected file identifier.
    #[error("expected file identifier `{expected}` ({}), found {}", kind(expected), found_text(*found))]
    WrongIdentifier {
        /// Identifier of the table the reader expects.
        expected: &'static str,
        /// The four bytes found, if the buffer is long enough to have them.
        found: Option<[u8; 4]>,
    },
    /// The FlatBuffers verifier refused the buffer (out-of-bounds offsets,
    /// missing required fields, bad UTF-8, depth or table limits, ...).
    #[error("invalid flatbuffer: {0}")]
    Invalid(String),
    /// The buffer's `format_version` is not one this build reads.
    #[error("unsupported format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the buffer.
        found: u16,
        /// Version this build reads.
        supported: u16,
    },
    /// A string or byte field is longer than the limits allow.
    #[error("field `{field}` is {len} bytes long, more than the limit of {max}")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A vector has more elements than the limits allow.
    #[error("field `{field}` has {len} elements, more than the limit of {max}")]
    TooManyElements {
        /// Field name.
        field: &'static str,
        /// Its element count.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field that must not be empty is empty.
    #[error("field `{field}` is empty")]
    Empty {
        /// Field name.
        field: &'static str,
    },
    /// Two attributes of one intent share a key.
    #[error("attribute key `{key}` appears more than once")]
    DuplicateAttribute {
        /// The repeated key.
        key: String,
    },
    /// An enum field holds a value this format version does not define.
    #[error("field `{field}` has unknown value {value}")]
    UnknownEnum {
        /// Field name.
        field: &'static str,
        /// The raw value.
        value: u16,
    },
    /// A decision's leaf index is not below its batch size.
    #[error("leaf index {index} is not below batch size {size}")]
    LeafOutOfRange {
        /// Leaf index.
        index: u32,
        /// Batch size.
        size: u32,
    },
    /// An attribute's declared kind has no value of that kind, or an unknown kind.
    #[error("attribute `{key}` has kind {kind} but no matching value")]
    BadAttribute {
        /// The attribute key.
        key: String,
        /// The raw kind value.
        kind: u8,
    },
    /// A table sets a field this build's schema does not have: the buffer
    /// was written for a newer schema, and a field this reader cannot
    /// interpret may restrict what the rest of the buffer says.
    #[error(
        "`{table}` sets field {index}, which this build does not know \
         (it knows fields 0 to {}): written for a newer schema; upgrade the reader",
        known.saturating_sub(1)
    )]
    UnknownField {
        /// The table.
        table: &'static str,
        /// Index of the first unknown field set (in declaration order, from 0).
        index: usize,
        /// How many fields this build knows.
        known: usize,
    },
}

impl From<flatbuffers::InvalidFlatbuffer> for WireError {
    fn from(e: flatbuffers::InvalidFlatbuffer) -> Self {
        WireError::Invalid(e.to_string())
    }
}

/// What a file identifier names, for messages.
fn kind(identifier: &str) -> &'static str {
    match identifier {
        crate::SIGNED_INTENT_IDENTIFIER => "a SignedIntent",
        crate::INTENT_IDENTIFIER => "an Intent",
        crate::DECISION_IDENTIFIER => "a Decision",
        crate::LINEAGE_RECORD_IDENTIFIER => "a LineageRecord",
        crate::CHECKPOINT_IDENTIFIER => "a Checkpoint",
        _ => "not a Warrant table",
    }
}

/// The identifier found, readable: `"WSI1" (a SignedIntent)`, or its bytes
/// in hex when they are not printable.
fn found_text(found: Option<[u8; 4]>) -> String {
    match found {
        None => "none (the buffer is too short)".into(),
        Some(b) if b.iter().all(|c| c.is_ascii_graphic()) => {
            let s: String = b.iter().map(|&c| char::from(c)).collect();
            format!("`{s}` ({})", kind(&s))
        }
        Some(b) => format!(
            "bytes {}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}
