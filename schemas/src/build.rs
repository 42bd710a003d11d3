//! Builders: plain Rust values in, finished FlatBuffers out.
//!
//! Each `*Fields` struct lists a root table's fields; `write` encodes it into
//! a reusable [`FlatBufferBuilder`] (its buffer is reused; an intent with
//! attributes still allocates one small vector of offsets), and `encode_*`
//! returns a fresh `Vec<u8>`.
//! Every buffer carries its file identifier and [`FORMAT_VERSION`].

use flatbuffers::FlatBufferBuilder;

use crate::wire::{self, AttrKind, Hash256, Id128, Reason, Signature64, Verdict};
use crate::{
    CHECKPOINT_IDENTIFIER, DECISION_IDENTIFIER, FORMAT_VERSION, INTENT_IDENTIFIER,
    LINEAGE_RECORD_IDENTIFIER, SIGNED_INTENT_IDENTIFIER,
};

/// A typed intent attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Attribute name, unique within an intent.
    pub key: &'a str,
    /// Its value.
    pub value: AttrValue<'a>,
}

/// The value of an [`Attr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrValue<'a> {
    /// A signed integer (amounts travel as integer minor units).
    Int(i64),
    /// A string (currency codes, tags).
    Str(&'a str),
    /// A boolean flag.
    Bool(bool),
}

/// The fields of an `Intent` (see `schemas/fbs/intent.fbs` for each one's meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntentFields<'a> {
    /// Unique intent id.
    pub id: [u8; 16],
    /// Requesting identity.
    pub principal: &'a str,
    /// Id of the signing key ([`crate::key_id`]); [`crate::IntentSigner`] fills it in.
    pub key_id: [u8; 16],
    /// Workload type.
    pub action: &'a str,
    /// Scope.
    pub resource: &'a str,
    /// Environment.
    pub environment: &'a str,
    /// Region.
    pub region: &'a str,
    /// Typed attributes.
    pub attributes: &'a [Attr<'a>],
    /// Creation time, µs since the Unix epoch.
    pub issued_at_us: u64,
    /// Decide-by time, µs since the Unix epoch.
    pub deadline_us: u64,
    /// Requested validity of the authorization, µs.
    pub requested_validity_us: u64,
    /// Random nonce.
    pub nonce: [u8; 16],
    /// Parent intent, for chained executions.
    pub parent_id: Option<[u8; 16]>,
    /// SHA-256 of the payload to execute.
    pub payload_digest: [u8; 32],
}

impl IntentFields<'static> {
    /// A complete, plausible intent for examples and tests: a 12.50 EUR
    /// payment in production, EU region, issued at t = 1 s, deadline 1 s later.
    pub fn example() -> Self {
        const ATTRS: &[Attr<'static>] = &[
            Attr {
                key: "amount",
                value: AttrValue::Int(1250),
            },
            Attr {
                key: "currency",
                value: AttrValue::Str("EUR"),
            },
        ];
        IntentFields {
            id: [1; 16],
            principal: "svc-example",
            key_id: [0; 16],
            action: "payments.transfer",
            resource: "accounts/eu/1234",
            environment: "prod",
            region: "DE",
            attributes: ATTRS,
            issued_at_us: 1_000_000,
            deadline_us: 2_000_000,
            requested_validity_us: 60_000_000,
            nonce: [2; 16],
            parent_id: None,
            payload_digest: [3; 32],
        }
    }
}

impl IntentFields<'_> {
    /// Encodes into `fbb` (reset first); the bytes are `fbb.finished_data()`.
    pub fn write(&self, fbb: &mut FlatBufferBuilder<'_>) {
        fbb.reset();
        let principal = fbb.create_string(self.principal);
        let action = fbb.create_string(self.action);
        let resource = fbb.create_string(self.resource);
        let environment = fbb.create_string(self.environment);
        let region = fbb.create_string(self.region);
        let attributes = if self.attributes.is_empty() {
            None
        } else {
            let mut offsets = Vec::with_capacity(self.attributes.len());
            for attr in self.attributes {
                let key = fbb.create_string(attr.key);
                let (kind, int_value, str_value, bool_value) = match attr.value {
                    AttrValue::Int(v) => (AttrKind::Int, v, None, false),
                    AttrValue::Str(s) => (AttrKind::Str, 0, Some(fbb.create_string(s)), false),
                    AttrValue::Bool(b) => (AttrKind::Bool, 0, None, b),
                };
                offsets.push(wire::Attribute::create(
                    fbb,
                    &wire::AttributeArgs {
                        key: Some(key),
                        kind,
                        int_value,
                        str_value,
                        bool_value,
                    },
                ));
            }
            Some(fbb.create_vector(&offsets))
        };
        let id = Id128(self.id);
        let key_id = Id128(self.key_id);
        let nonce = Id128(self.nonce);
        let parent = self.parent_id.map(Id128);
        let payload_digest = Hash256(self.payload_digest);
        let root = wire::Intent::create(
            fbb,
            &wire::IntentArgs {
                format_version: FORMAT_VERSION,
                id: Some(&id),
                principal: Some(principal),
                key_id: Some(&key_id),
                action: Some(action),
                resource: Some(resource),
                environment: Some(environment),
                region: Some(region),
                attributes,
                issued_at_us: self.issued_at_us,
                deadline_us: self.deadline_us,
                requested_validity_us: self.requested_validity_us,
                nonce: Some(&nonce),
                parent_id: parent.as_ref(),
                payload_digest: Some(&payload_digest),
            },
        );
        fbb.finish(root, Some(INTENT_IDENTIFIER));
    }
}

/// Encodes an `Intent` into a new buffer.
pub fn encode_intent(fields: &IntentFields<'_>) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(512);
    fields.write(&mut fbb);
    fbb.finished_data().to_vec()
}

/// Wraps exact `Intent` bytes and their signature into a `SignedIntent`.
pub fn write_signed_intent(fbb: &mut FlatBufferBuilder<'_>, intent: &[u8], signature: &[u8; 64]) {
    fbb.reset();
    let intent = fbb.create_vector(intent);
    let signature = Signature64(*signature);
    let root = wire::SignedIntent::create(
        fbb,
        &wire::SignedIntentArgs {
            format_version: FORMAT_VERSION,
            intent: Some(intent),
            signature: Some(&signature),
        },
    );
    fbb.finish(root, Some(SIGNED_INTENT_IDENTIFIER));
}

/// Encodes a `SignedIntent` into a new buffer.
pub fn encode_signed_intent(intent: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(intent.len() + 128);
    write_signed_intent(&mut fbb, intent, signature);
    fbb.finished_data().to_vec()
}

/// The fields of a `Decision` (see `schemas/fbs/decision.fbs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionFields<'a> {
    /// Id of the intent decided.
    pub intent_id: [u8; 16],
    /// The intent's digest ([`crate::intent_digest`]).
    pub intent_digest: [u8; 32],
    /// Authorize or deny.
    pub verdict: Verdict,
    /// Why.
    pub reason: Reason,
    /// Deciding rule, empty if none.
    pub rule_id: &'a str,
    /// Hash of the compiled policy.
    pub policy_hash: [u8; 32],
    /// Version of the compiled policy.
    pub policy_version: u64,
    /// Decision time, µs since the epoch.
    pub issued_at_us: u64,
    /// End of validity, µs since the epoch.
    pub valid_until_us: u64,
    /// Executor audience.
    pub audience: &'a str,
    /// Engine key that signs the batch.
    pub engine_key_id: [u8; 16],
    /// Lineage partition.
    pub lineage_partition: u32,
    /// Lineage sequence number.
    pub lineage_sequence: u64,
    /// Merkle root of the signed batch.
    pub batch_root: [u8; 32],
    /// This decision's leaf index in the batch.
    pub leaf_index: u32,
    /// Number of leaves in the batch.
    pub batch_size: u32,
    /// Inclusion proof, leaf to root.
    pub proof: &'a [[u8; 32]],
    /// Engine signature over the batch root.
    pub batch_signature: [u8; 64],
}

impl DecisionFields<'_> {
    /// Encodes into `fbb` (reset first); the bytes are `fbb.finished_data()`.
    pub fn write(&self, fbb: &mut FlatBufferBuilder<'_>) {
        fbb.reset();
        let rule_id = fbb.create_string(self.rule_id);
        let audience = fbb.create_string(self.audience);
        let proof = fbb.create_vector_from_iter(self.proof.iter().map(|h| Hash256(*h)));
        let intent_id = Id128(self.intent_id);
        let intent_digest = Hash256(self.intent_digest);
        let policy_hash = Hash256(self.policy_hash);
        let engine_key_id = Id128(self.engine_key_id);
        let batch_root = Hash256(self.batch_root);
        let batch_signature = Signature64(self.batch_signature);
        let root = wire::Decision::create(
            fbb,
            &wire::DecisionArgs {
                format_version: FORMAT_VERSION,
                intent_id: Some(&intent_id),
                intent_digest: Some(&intent_digest),
                verdict: self.verdict,
                reason: self.reason,
                rule_id: Some(rule_id),
                policy_hash: Some(&policy_hash),
                policy_version: self.policy_version,
                issued_at_us: self.issued_at_us,
                valid_until_us: self.valid_until_us,
                audience: Some(audience),
                engine_key_id: Some(&engine_key_id),
                lineage_partition: self.lineage_partition,
                lineage_sequence: self.lineage_sequence,
                batch_root: Some(&batch_root),
                leaf_index: self.leaf_index,
                batch_size: self.batch_size,
                proof: Some(proof),
                batch_signature: Some(&batch_signature),
            },
        );
        fbb.finish(root, Some(DECISION_IDENTIFIER));
    }
}

/// Encodes many buffers through one reused builder: no allocation or
/// growth per buffer beyond the returned bytes (the engine's seal stage).
pub struct Encoder {
    fbb: FlatBufferBuilder<'static>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").finish_non_exhaustive()
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            fbb: FlatBufferBuilder::with_capacity(1024),
        }
    }
}

impl Encoder {
    /// A `Decision`.
    pub fn decision(&mut self, fields: &DecisionFields<'_>) -> Vec<u8> {
        fields.write(&mut self.fbb);
        self.fbb.finished_data().to_vec()
    }

    /// A `LineageRecord`.
    pub fn lineage_record(&mut self, fields: &LineageFields) -> Vec<u8> {
        fields.write(&mut self.fbb);
        self.fbb.finished_data().to_vec()
    }
}

/// Encodes a `Decision` into a new buffer.
pub fn encode_decision(fields: &DecisionFields<'_>) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(512);
    fields.write(&mut fbb);
    fbb.finished_data().to_vec()
}

/// The fields of a `LineageRecord` (see `schemas/fbs/lineage.fbs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineageFields {
    /// Partition of the log.
    pub partition: u32,
    /// Gap-free sequence number within the partition.
    pub sequence: u64,
    /// Merkle leaf hash of the previous record (zeros for sequence 0).
    pub prev_hash: [u8; 32],
    /// Merkle leaf hash of the logged decision (see `lineage.fbs`).
    pub decision_digest: [u8; 32],
    /// Intent decided.
    pub intent_id: [u8; 16],
    /// Its parent, if chained.
    pub parent_id: Option<[u8; 16]>,
    /// The verdict logged.
    pub verdict: Verdict,
    /// The reason logged.
    pub reason: Reason,
    /// Decision time, µs since the epoch.
    pub issued_at_us: u64,
    /// The replay memory the decision left: nonce key and until when it is
    /// remembered (µs), if its verdict was remembered.
    pub replay: Option<([u8; 16], u64)>,
    /// The digest of the intent decided ([`crate::intent_digest`]).
    pub intent_digest: [u8; 32],
    /// The decision's `valid_until_us` (0 for a deny).
    pub valid_until_us: u64,
}

impl LineageFields {
    /// Encodes into `fbb` (reset first); the bytes are `fbb.finished_data()`.
    pub fn write(&self, fbb: &mut FlatBufferBuilder<'_>) {
        fbb.reset();
        let prev_hash = Hash256(self.prev_hash);
        let decision_digest = Hash256(self.decision_digest);
        let intent_id = Id128(self.intent_id);
        let parent = self.parent_id.map(Id128);
        let nonce_key = self.replay.map(|(k, _)| Id128(k));
        let intent_digest = Hash256(self.intent_digest);
        let root = wire::LineageRecord::create(
            fbb,
            &wire::LineageRecordArgs {
                format_version: FORMAT_VERSION,
                partition: self.partition,
                sequence: self.sequence,
                prev_hash: Some(&prev_hash),
                decision_digest: Some(&decision_digest),
                intent_id: Some(&intent_id),
                parent_id: parent.as_ref(),
                verdict: self.verdict,
                reason: self.reason,
                issued_at_us: self.issued_at_us,
                nonce_key: nonce_key.as_ref(),
                remember_until_us: self.replay.map_or(0, |(_, u)| u),
                intent_digest: Some(&intent_digest),
                valid_until_us: self.valid_until_us,
            },
        );
        fbb.finish(root, Some(LINEAGE_RECORD_IDENTIFIER));
    }
}

/// Encodes a `LineageRecord` into a new buffer.
pub fn encode_lineage_record(fields: &LineageFields) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    fields.write(&mut fbb);
    fbb.finished_data().to_vec()
}

/// The fields of a `Checkpoint` (see `schemas/fbs/checkpoint.fbs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointFields<'a> {
    /// Log name, e.g. `warrant.lineage/3`.
    pub origin: &'a str,
    /// Records covered.
    pub size: u64,
    /// Merkle root over them.
    pub root: [u8; 32],
    /// Checkpoint time, µs since the epoch.
    pub issued_at_us: u64,
    /// Signing engine key.
    pub engine_key_id: [u8; 16],
    /// Signature over (origin, size, root).
    pub signature: [u8; 64],
    /// The Merkle frontier at `size` (roots of the maximal perfect
    /// subtrees, largest first); empty to leave it out.
    pub frontier: &'a [[u8; 32]],
}

impl CheckpointFields<'_> {
    /// Encodes into `fbb` (reset first); the bytes are `fbb.finished_data()`.
    pub fn write(&self, fbb: &mut FlatBufferBuilder<'_>) {
        fbb.reset();
        let origin = fbb.create_string(self.origin);
        let root_hash = Hash256(self.root);
        let engine_key_id = Id128(self.engine_key_id);
        let signature = Signature64(self.signature);
        let frontier = (!self.frontier.is_empty()).then(|| {
            let hashes: Vec<Hash256> = self.frontier.iter().map(|h| Hash256(*h)).collect();
            fbb.create_vector(&hashes)
        });
        let root = wire::Checkpoint::create(
            fbb,
            &wire::CheckpointArgs {
                format_version: FORMAT_VERSION,
                origin: Some(origin),
                size: self.size,
                root: Some(&root_hash),
                issued_at_us: self.issued_at_us,
                engine_key_id: Some(&engine_key_id),
                signature: Some(&signature),
                frontier,
            },
        );
        fbb.finish(root, Some(CHECKPOINT_IDENTIFIER));
    }
}

/// Encodes a `Checkpoint` into a new buffer.
pub fn encode_checkpoint(fields: &CheckpointFields<'_>) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    fields.write(&mut fbb);
    fbb.finished_data().to_vec()
}
