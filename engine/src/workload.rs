//! Generated workloads: the signed intents `warrant demo` and `loadgen`
//! publish, a configurable mix of valid and hostile ones.
//!
//! Every intent is built from its index, so a run is reproducible and a
//! decision is matched back to its intent by id alone: a readable intent's
//! id is its index (little-endian) followed by the run's 8-byte tag; an
//! unreadable (malformed) one is decided under the first 16 bytes of its
//! SHA-256, which [`Generated::decision_id`] gives.
//!
//! Principal `p` signs with a key derived from `p` ([`signer_for`]), so the
//! engine's trust store can be written once ([`trust_store`]) and loaded by
//! an engine in another process.

use std::time::Duration;

use warrant_schemas::wire::Reason;
use warrant_schemas::{Attr, AttrValue, IntentFields, IntentSigner, Limits, intent_digest, sha256};

use crate::trust::{KeyState, TrustError, TrustStore};

/// Percentages of each kind of intent; the rest are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mix {
    /// Signature with one bit of S flipped.
    pub forged: u8,
    /// Issued long before the engine's maximum age.
    pub expired: u8,
    /// A new intent reusing an earlier intent's nonce.
    pub replayed: u8,
    /// Validly signed, denied by a policy deny rule.
    pub denied: u8,
    /// Signed by a key the trust store does not hold.
    pub unknown_key: u8,
    /// A truncated buffer.
    pub malformed: u8,
    /// A valid child of an earlier valid intent (lineage link).
    pub chained: u8,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            forged: 5,
            expired: 2,
            replayed: 2,
            denied: 5,
            unknown_key: 1,
            malformed: 1,
            chained: 10,
        }
    }
}

impl Mix {
    /// No hostile intents: every one valid (none chained).
    pub fn valid_only() -> Mix {
        Mix {
            forged: 0,
            expired: 0,
            replayed: 0,
            denied: 0,
            unknown_key: 0,
            malformed: 0,
            chained: 0,
        }
    }

    /// The percentages, checked to add up to at most 100.
    pub fn check(&self) -> Result<(), String> {
        let total: u32 = [
            self.forged,
            self.expired,
            self.replayed,
            self.denied,
            self.unknown_key,
            self.malformed,
            self.chained,
        ]
        .iter()
        .map(|&p| u32::from(p))
        .sum();
        if total > 100 {
            return Err(format!("the mix adds up to {total}%, over 100%"));
        }
        Ok(())
    }

    /// The percentage of `kind` (valid: what is left).
    pub fn percent(&self, kind: Kind) -> u8 {
        match kind {
            Kind::Forged => self.forged,
            Kind::Expired => self.expired,
            Kind::Replayed => self.replayed,
            Kind::Denied => self.denied,
            Kind::UnknownKey => self.unknown_key,
            Kind::Malformed => self.malformed,
            Kind::Chained => self.chained,
            Kind::Valid => Kind::ALL
                .iter()
                .filter(|&&k| k != Kind::Valid)
                .fold(100u8, |left, &k| left.saturating_sub(self.percent(k))),
        }
    }
}

/// The kind of a generated intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Should be authorized.
    Valid,
    /// Valid, with a parent.
    Chained,
    /// Bad signature.
    Forged,
    /// Expired.
    Expired,
    /// Reuses a nonce.
    Replayed,
    /// Denied by a rule.
    Denied,
    /// Unknown key.
    UnknownKey,
    /// Malformed.
    Malformed,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 8] = [
        Kind::Valid,
        Kind::Chained,
        Kind::Forged,
        Kind::Expired,
        Kind::Replayed,
        Kind::Denied,
        Kind::UnknownKey,
        Kind::Malformed,
    ];

    /// The reason an intent of this kind must get.
    pub fn expected(self) -> Reason {
        match self {
            Kind::Valid | Kind::Chained => Reason::Authorized,
            Kind::Forged => Reason::BadSignature,
            Kind::Expired => Reason::Expired,
            Kind::Replayed => Reason::ReplayedNonce,
            Kind::Denied => Reason::DenyRule,
            Kind::UnknownKey => Reason::UnknownKey,
            Kind::Malformed => Reason::Malformed,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Chained => "chained",
            Kind::Forged => "forged",
            Kind::Expired => "expired",
            Kind::Replayed => "replayed",
            Kind::Denied => "policy-denied",
            Kind::UnknownKey => "unknown key",
            Kind::Malformed => "malformed",
        }
    }

    /// Whether it should be authorized.
    pub fn is_valid(self) -> bool {
        matches!(self, Kind::Valid | Kind::Chained)
    }
}

/// The name of a reason, for reports.
pub fn reason_name(r: Reason) -> &'static str {
    r.variant_name().unwrap_or("unknown")
}

/// Principal `p`'s name: two treasury services, then agents.
pub fn principal_name(p: usize) -> String {
    match p {
        0 => "svc-treasury".into(),
        1 => "svc-payouts".into(),
        n => format!("agent-{n:04}"),
    }
}

/// Principal `p`'s signing key, derived from `p`. These are test keys:
/// anyone can derive them; never trust them outside a load test.
pub fn signer_for(p: usize) -> IntentSigner {
    let mut seed = [0x5e; 32];
    for (d, s) in seed.iter_mut().zip((p as u64).to_le_bytes()) {
        *d = s;
    }
    IntentSigner::from_seed(seed)
}

/// The trust store that holds the first `principals` generated keys.
pub fn trust_store(principals: usize) -> Result<TrustStore, TrustError> {
    let mut trust = TrustStore::new();
    for p in 0..principals.max(2) {
        trust.add(
            &principal_name(p),
            signer_for(p).public_key(),
            KeyState::Active,
        )?;
    }
    Ok(trust)
}

/// Picks intent `i`'s kind: a fixed spread of the percentages.
pub fn kind_of(i: u64, mix: &Mix) -> Kind {
    let bucket = (i.wrapping_mul(7919).wrapping_add(13) % 100) as u8;
    let mut edge = 0u8;
    for (pct, kind) in [
        (mix.forged, Kind::Forged),
        (mix.expired, Kind::Expired),
        (mix.replayed, Kind::Replayed),
        (mix.denied, Kind::Denied),
        (mix.unknown_key, Kind::UnknownKey),
        (mix.malformed, Kind::Malformed),
        (mix.chained, Kind::Chained),
    ] {
        edge = edge.saturating_add(pct);
        if bucket < edge {
            return kind;
        }
    }
    Kind::Valid
}

/// The id of readable intent `i` in the run tagged `tag`.
pub fn intent_id(i: u64, tag: &[u8; 8]) -> [u8; 16] {
    let mut id = [0u8; 16];
    for (d, s) in id.iter_mut().zip(i.to_le_bytes().iter().chain(tag)) {
        *d = *s;
    }
    id
}

/// The index of a readable intent of the run tagged `tag`, from its id.
pub fn index_of(id: &[u8; 16], tag: &[u8; 8]) -> Option<u64> {
    if id.get(8..) != Some(&tag[..]) {
        return None;
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(id.get(..8)?);
    Some(u64::from_le_bytes(n))
}

/// The first 16 bytes of a digest.
pub fn first16(digest: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (d, s) in out.iter_mut().zip(digest) {
        *d = *s;
    }
    out
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Signing principals (at least 2: the treasury services).
    pub principals: usize,
    /// The kinds of intents.
    pub mix: Mix,
    /// Bytes of opaque payload carried in each intent (0: none; at most
    /// [`MAX_PAYLOAD_BYTES`]): `memo00`, `memo01`, ... attributes of up to
    /// 256 bytes each, the longest string an intent may hold.
    pub payload_bytes: usize,
    /// Deadline after the scheduled send time.
    pub deadline: Duration,
    /// Validity requested for the authorization.
    pub validity: Duration,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            principals: 16,
            mix: Mix::default(),
            payload_bytes: 0,
            deadline: Duration::from_secs(1),
            validity: Duration::from_secs(60),
        }
    }
}

/// The largest payload a generated intent carries: 30 attributes of 256
/// bytes (an intent holds at most 32 attributes of at most 256 bytes; the
/// other two are the amount and currency).
pub const MAX_PAYLOAD_BYTES: usize = 30 * 256;

/// One generated intent.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Its index in the run.
    pub index: u64,
    /// What it is.
    pub kind: Kind,
    /// Its principal: the partition key.
    pub key: String,
    /// The signed intent as published.
    pub bytes: Vec<u8>,
    /// For a replay: the index of the intent whose nonce it reuses.
    pub original: Option<u64>,
}

impl Generated {
    /// The intent id its decision carries.
    pub fn decision_id(&self, tag: &[u8; 8]) -> [u8; 16] {
        if self.kind == Kind::Malformed {
            first16(&intent_digest(&self.bytes))
        } else {
            intent_id(self.index, tag)
        }
    }
}

/// A principal's last valid intent: id, nonce, index, scheduled time (µs).
type Prior = ([u8; 16], [u8; 16], u64, u64);

/// Builds the intents of one run, in index order.
pub struct Workload {
    shape: Shape,
    tag: [u8; 8],
    signers: Vec<IntentSigner>,
    names: Vec<String>,
    stranger: IntentSigner,
    last: Vec<Option<Prior>>,
    /// (attribute name, value) of the payload chunks.
    memo: Vec<(String, String)>,
}

impl Workload {
    /// A workload for the run tagged `tag`.
    pub fn new(shape: Shape, tag: [u8; 8]) -> Result<Workload, String> {
        shape.mix.check()?;
        if shape.payload_bytes > MAX_PAYLOAD_BYTES {
            return Err(format!(
                "a payload of {} bytes is over the {MAX_PAYLOAD_BYTES} an intent can carry \
                 (32 attributes of at most 256 bytes)",
                shape.payload_bytes
            ));
        }
        let principals = shape.principals.max(2);
        Ok(Workload {
            signers: (0..principals).map(signer_for).collect(),
            names: (0..principals).map(principal_name).collect(),
            stranger: IntentSigner::from_seed([0xee; 32]),
            last: vec![None; principals],
            memo: (0..shape.payload_bytes.div_ceil(256))
                .map(|c| {
                    let len = (shape.payload_bytes - c * 256).min(256);
                    (format!("memo{c:02}"), "x".repeat(len))
                })
                .collect(),
            shape,
            tag,
        })
    }

    /// The run's tag.
    pub fn tag(&self) -> [u8; 8] {
        self.tag
    }

    /// Intent `i`, scheduled for `scheduled_us` (µs since the Unix epoch).
    /// Call in index order: replays and children refer to earlier intents.
    pub fn generate(&mut self, i: u64, scheduled_us: u64) -> Generated {
        let principals = self.names.len().max(1);
        let p = usize::try_from(i % principals as u64).unwrap_or(0);
        let name = self.names.get(p).cloned().unwrap_or_default();
        let mut kind = kind_of(i, &self.shape.mix);
        let prior = self.last.get(p).copied().flatten();
        if matches!(kind, Kind::Replayed | Kind::Chained) && prior.is_none() {
            kind = Kind::Valid;
        }
        // The engine remembers a nonce until its intent's deadline: reusing
        // it later is a fresh use, rightly authorized, not a replay. A
        // replay is made only of an intent whose deadline is at least half
        // a deadline away (room for the replay to be queued and decided).
        let half = u64::try_from(self.shape.deadline.as_micros() / 2).unwrap_or(u64::MAX);
        if kind == Kind::Replayed
            && prior.is_some_and(|(_, _, _, at)| scheduled_us.saturating_sub(at) >= half)
        {
            kind = Kind::Valid;
        }
        let id = intent_id(i, &self.tag);
        let mut nonce = first16(&sha256(&id));
        let agent = p >= 2;
        let amount = if kind == Kind::Denied && !agent {
            20_000_000
        } else {
            1_250
        };
        let mut attrs = vec![
            Attr {
                key: "amount",
                value: AttrValue::Int(amount),
            },
            Attr {
                key: "currency",
                value: AttrValue::Str("EUR"),
            },
        ];
        for (key, value) in &self.memo {
            attrs.push(Attr {
                key,
                value: AttrValue::Str(value),
            });
        }
        let (action, resource) = match (agent, kind == Kind::Denied) {
            (true, false) => ("reports.daily", "reports/eu"),
            _ => ("payments.transfer", "accounts/eu/1234"),
        };
        let mut parent = None;
        let mut original = None;
        if let Some((pid, pnonce, pindex, _)) = prior {
            if kind == Kind::Chained {
                parent = Some(pid);
            }
            if kind == Kind::Replayed {
                nonce = pnonce;
                original = Some(pindex);
            }
        }
        let issued = if kind == Kind::Expired {
            scheduled_us.saturating_sub(3_600_000_000)
        } else {
            scheduled_us
        };
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let fields = IntentFields {
            id,
            principal: &name,
            action,
            resource,
            attributes: &attrs,
            issued_at_us: issued,
            deadline_us: scheduled_us.saturating_add(micros(self.shape.deadline)),
            requested_validity_us: micros(self.shape.validity),
            nonce,
            parent_id: parent,
            ..IntentFields::example()
        };
        let mut bytes = match (kind, self.signers.get(p)) {
            (Kind::UnknownKey, _) | (_, None) => self.stranger.sign_intent(&fields),
            (_, Some(signer)) => signer.sign_intent(&fields),
        };
        match kind {
            Kind::Forged => {
                if let Ok(s) = warrant_schemas::open_signed_intent(&bytes, &Limits::default()) {
                    let mut sig = *s.signature;
                    if let Some(b) = sig.get_mut(40) {
                        *b ^= 1;
                    }
                    bytes = warrant_schemas::encode_signed_intent(s.intent_bytes, &sig);
                }
            }
            Kind::Malformed => bytes.truncate(bytes.len() / 2),
            Kind::Valid | Kind::Chained => {
                if let Some(slot) = self.last.get_mut(p) {
                    *slot = Some((id, nonce, i, scheduled_us));
                }
            }
            _ => {}
        }
        Generated {
            index: i,
            kind,
            key: name,
            bytes,
            original,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn ids_round_trip_and_kinds_follow_the_mix() {
        let tag = *b"runtag01";
        let mut w = Workload::new(Shape::default(), tag).unwrap();
        let mut counts = std::collections::HashMap::new();
        for i in 0..10_000 {
            let g = w.generate(i, 1_000_000_000_000);
            *counts.entry(g.kind).or_insert(0u32) += 1;
            if g.kind != Kind::Malformed {
                assert_eq!(index_of(&g.decision_id(&tag), &tag), Some(i));
            } else {
                assert_eq!(index_of(&g.decision_id(&tag), &tag), None);
            }
        }
        // 5 % forged of 10,000: the spread is exact per 100 indices.
        assert_eq!(counts.get(&Kind::Forged), Some(&500));
        assert_eq!(Mix::default().percent(Kind::Valid), 74);
    }

    #[test]
    fn a_replay_reuses_only_a_nonce_the_engine_still_remembers() {
        let shape = Shape::default();
        let half = u64::try_from(shape.deadline.as_micros() / 2).unwrap();
        for (gap_us, replays_expected) in [(200, true), (100_000, false)] {
            let mut w = Workload::new(shape.clone(), [2; 8]).unwrap();
            let mut at = Vec::new();
            let mut replays = 0;
            for i in 0..2_000u64 {
                let g = w.generate(i, 1_000_000_000_000 + i * gap_us);
                at.push(1_000_000_000_000 + i * gap_us);
                if g.kind == Kind::Replayed {
                    replays += 1;
                    let o = usize::try_from(g.original.unwrap()).unwrap();
                    // The original's deadline is at least half a deadline
                    // after the replay is due.
                    assert!(at[usize::try_from(i).unwrap()] - at[o] < half);
                }
            }
            assert_eq!(replays > 0, replays_expected, "gap {gap_us} µs");
        }
    }

    #[test]
    fn payloads_up_to_the_limit_open_and_larger_ones_are_refused() {
        for bytes in [1, 256, 257, MAX_PAYLOAD_BYTES] {
            let shape = Shape {
                payload_bytes: bytes,
                mix: Mix::valid_only(),
                ..Shape::default()
            };
            let g = Workload::new(shape, [1; 8]).unwrap().generate(0, 1);
            let s = warrant_schemas::open_signed_intent(&g.bytes, &Limits::default()).unwrap();
            let carried: usize = s
                .intent
                .attributes()
                .unwrap()
                .iter()
                .filter(|a| a.key().starts_with("memo"))
                .map(|a| a.str_value().map_or(0, str::len))
                .sum();
            assert_eq!(carried, bytes);
        }
        let shape = Shape {
            payload_bytes: MAX_PAYLOAD_BYTES + 1,
            ..Shape::default()
        };
        assert!(Workload::new(shape, [1; 8]).is_err());
    }

    #[test]
    fn an_overfull_mix_is_refused() {
        let mix = Mix {
            forged: 60,
            denied: 50,
            ..Mix::default()
        };
        assert!(
            Workload::new(
                Shape {
                    mix,
                    ..Shape::default()
                },
                [0; 8]
            )
            .is_err()
        );
    }
}
