//! The auditor's check of a whole deployment's output: given everything on
//! the intents, decisions and lineage topics, prove that
//!
//! 1. every intent has a decision;
//! 2. no intent has two verdicts that disagree (decisions re-emitted after
//!    a crash are counted, and must agree; [`consistent`] names the
//!    differences the engine may make: a redelivery denied where the
//!    first reading authorized, which fails closed, or authorized after a
//!    deny it did not remember and a later reading lifts), and every later
//!    authorization of an intent ends exactly when its first does;
//! 3. no invalid intent was authorized: every authorization is re-derived
//!    from scratch (the intent opens, its key is trusted for its principal
//!    and not revoked, its signature verifies, it was within its validity
//!    window when decided, the policy the decision names is one the auditor
//!    holds and allows it, its validity is within what that policy and the
//!    engine's maximum grant, no *other* intent with the
//!    same principal and nonce was authorized) and the decision itself
//!    verifies with the executor's verifier against an engine key;
//! 4. every partition's lineage log verifies end to end against the engine
//!    keys, and every decision has exactly one lineage record, at the
//!    position the decision names, logging the same intent, digest,
//!    verdict, reason and end of validity.
//!
//! It trusts nothing the engine computed: only the engine public keys, the
//! trust store and the policy it is given. `warrant audit` runs it on a
//! deployment's topics; the chaos script runs it after its kills.

use std::collections::{BTreeMap, HashMap, HashSet};

use warrant_policy::{Policy, Request};
use warrant_schemas::wire::{Reason, Verdict};
use warrant_schemas::{
    Attr, AttrValue, INTENT_SIGNING_DOMAIN, Limits, intent_digest, open_decision,
    open_lineage_record, open_signed_intent,
};

use crate::lineage::file::by_partition;
use crate::lineage::verify_log;
use crate::seal::{EngineKeys, decision_leaf_hash, verify_decision};
use crate::trust::{Lookup, TrustStore};
use crate::verify::{SigItem, verify_one};

/// Whether `then`, a later verdict for the same intent (a redelivery after
/// a crash or a rebalance), agrees with `first`. The engine checks time and
/// key state before its replay memory, remembers the verdicts its policy
/// stage gives (a redelivery of a remembered deny stays denied), and a
/// redelivery is judged by the policy and keys in force when it is read,
/// so:
///
/// - any deny may follow any verdict: a redelivery read after its
///   deadline, its key's revocation, a policy change, or with no room, is
///   denied, and the deny fails closed (an earlier authorization stands
///   until it ends; a later one never outlasts it, checked apart);
/// - an authorization may follow a deny the engine did not remember and
///   that a later reading can lift: "overloaded" and "internal error"
///   (transient), "revoked key" and "unknown key" (an operator trusts the
///   key again), "not yet valid" (its time has come), "malformed" (for an
///   intent that opens, the one malformed deny a later reading lifts is a
///   copy read from a partition its principal does not map to: anyone who
///   can publish can put one there, and the copy on the right partition is
///   decided on its merits; the other malformed denies are fixed by the
///   bytes, and an unreadable record's digest names no intent), "replayed nonce"
///   (the other intent's window ended and freed the nonce: whether it was
///   free is checked apart, on every pair of authorized intents sharing a
///   nonce). The policy stage also remembers a "replayed nonce" deny of
///   an intent whose remembered authorization it will not reissue; an
///   authorization after that one would pass this check, though the
///   engine never gives one (a remembered deny stays).
///
/// Never the other way round: an authorization after a remembered deny
/// (no policy, no matching rule, deny rule), after a deny no later
/// reading lifts (bad signature), or after the intent's time was seen run
/// out (expired, deadline exceeded).
pub fn consistent(first: Reason, then: Reason) -> bool {
    then != Reason::Authorized
        || first == Reason::Authorized
        || matches!(
            first,
            Reason::Overloaded
                | Reason::InternalError
                | Reason::RevokedKey
                | Reason::UnknownKey
                | Reason::NotYetValid
                | Reason::Malformed
                | Reason::ReplayedNonce
        )
}

/// A decision that says "authorize" with another reason (or the reverse)
/// contradicts itself: it agrees with nothing, itself included.
const CONTRADICTION: Reason = Reason(u16::MAX);

/// What the auditor is given besides the topics.
pub struct Ground<'a> {
    /// The trust store the intents were to be judged by.
    pub trust: &'a TrustStore,
    /// The policy in force.
    pub policy: &'a Policy,
    /// Policies in force before it (hot reloads): an authorization is
    /// judged by the one whose hash it names, and one naming a policy the
    /// auditor does not hold is a violation (it cannot be re-derived).
    pub earlier_policies: &'a [Policy],
    /// The engine's maximum validity, µs: no authorization lasts longer,
    /// whatever its rule grants.
    pub max_validity_us: u64,
    /// Every engine public key that may have signed (current and previous).
    pub engine_keys: &'a [[u8; 32]],
    /// The audience decisions are issued for.
    pub audience: &'a str,
    /// The engine's allowed clock skew, µs.
    pub max_clock_skew_us: u64,
    /// The engine's maximum intent age, µs.
    pub max_intent_age_us: u64,
}

/// An authorized use of a nonce: (first authorization's issue time, end
/// of the engine's memory of it, intent digest).
type NonceUse = (u64, u64, [u8; 32]);

/// Authorized uses of one (principal, nonce), each as (first
/// authorization's issue time, end of the window the engine remembers its
/// nonce for, digest): the pairs (earlier, later) where the later was
/// authorized while the earlier's nonce was still remembered, a replay the
/// engine should have denied. A use after that window is a fresh one.
fn reused_while_remembered(mut uses: Vec<NonceUse>) -> Vec<([u8; 32], [u8; 32])> {
    uses.sort_unstable();
    let mut found = Vec::new();
    // The earlier use whose memory lasts longest so far.
    let mut longest: Option<(u64, [u8; 32])> = None;
    for (at, until, digest) in uses {
        if let Some((end, earlier)) = longest
            && at < end
        {
            found.push((earlier, digest));
        }
        if until > longest.map_or(0, |(end, _)| end) {
            longest = Some((until, digest));
        }
    }
    found
}

/// What the audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AuditReport {
    /// Intent messages read.
    pub intents: u64,
    /// Distinct intents (by digest of their bytes).
    pub distinct_intents: u64,
    /// Decision messages read.
    pub decisions: u64,
    /// Decisions beyond the first for the same intent (re-emitted).
    pub re_emitted: u64,
    /// Intents authorized.
    pub authorized: u64,
    /// Intents denied.
    pub denied: u64,
    /// Lineage records verified.
    pub lineage_records: u64,
    /// Lineage partitions verified.
    pub lineage_partitions: usize,
    /// Signed checkpoints verified.
    pub checkpoints: usize,
    /// Intents with no decision.
    pub missing: u64,
    /// Intents with two verdicts that do not agree ([`consistent`]).
    pub conflicting: u64,
    /// Intents authorized, then denied on a redelivery for time, key
    /// revocation, room or policy (consistent, counted).
    pub redelivery_denies: u64,
    /// Authorizations that do not hold up.
    pub invalid_authorized: u64,
    /// Decisions with no lineage record.
    pub unlogged: u64,
    /// Decisions whose lineage record disagrees with them: it sits at
    /// another position than the decision names (an executor or auditor
    /// following the decision's pointer finds another record), or logs
    /// another intent, intent digest, verdict, reason or end of validity
    /// (what an engine taking the partition over rebuilds its replay
    /// memory from); or the decision is logged more than once.
    pub lineage_disagrees: u64,
    /// Decisions for no intent on the topic, or that do not parse.
    pub orphan_decisions: u64,
    /// Lineage records that log no decision on the decisions topic. Not a
    /// violation by itself: an engine that stops between writing lineage
    /// and decisions leaves some (its intents are decided again). But a
    /// record appended by someone else after a partition's last checkpoint
    /// shows up here too, and nowhere else once the partition's next owner
    /// has checkpointed it (see SECURITY.md).
    pub lineage_without_decision: u64,
    /// Every violation, described (the first 20 of each kind).
    pub violations: Vec<String>,
}

impl AuditReport {
    /// Violations counted.
    pub fn violation_count(&self) -> u64 {
        self.missing
            + self.conflicting
            + self.invalid_authorized
            + self.unlogged
            + self.lineage_disagrees
            + self.orphan_decisions
            + u64::from(self.violations.iter().any(|v| v.starts_with("lineage")))
    }
}

impl std::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "intents            {:>10} ({} distinct)",
            self.intents, self.distinct_intents
        )?;
        writeln!(
            f,
            "decisions          {:>10} ({} re-emitted, all with their first verdict unless counted below)",
            self.decisions, self.re_emitted
        )?;
        writeln!(f, "authorized         {:>10}", self.authorized)?;
        writeln!(f, "denied             {:>10}", self.denied)?;
        writeln!(
            f,
            "lineage            {:>10} records in {} partitions, {} signed checkpoints, verified",
            self.lineage_records, self.lineage_partitions, self.checkpoints
        )?;
        writeln!(f, "missing decisions  {:>10}", self.missing)?;
        writeln!(
            f,
            "two verdicts       {:>10} (and {} authorizations denied on a later redelivery: consistent)",
            self.conflicting, self.redelivery_denies
        )?;
        writeln!(f, "invalid authorized {:>10}", self.invalid_authorized)?;
        writeln!(f, "not in the lineage {:>10}", self.unlogged)?;
        writeln!(f, "lineage disagrees  {:>10}", self.lineage_disagrees)?;
        writeln!(f, "orphan decisions   {:>10}", self.orphan_decisions)?;
        writeln!(
            f,
            "lineage only       {:>10} records logging no decision on the topic (not a violation alone)",
            self.lineage_without_decision
        )?;
        write!(f, "violations         {:>10}", self.violation_count())?;
        for v in &self.violations {
            write!(f, "\n  {v}")?;
        }
        Ok(())
    }
}

/// What a lineage record says of the decision it logs.
struct Logged {
    partition: u32,
    sequence: u64,
    intent_id: [u8; 16],
    intent_digest: Option<[u8; 32]>,
    verdict: Verdict,
    reason: Reason,
    valid_until_us: u64,
    /// Further records logging the same decision.
    copies: u64,
}

/// How a decision and the lineage record logging it (found by the
/// decision's leaf hash) disagree, if they do.
fn disagreement(at: &Logged, d: &warrant_schemas::wire::Decision<'_>) -> Option<String> {
    if (at.partition, at.sequence) != (d.lineage_partition(), d.lineage_sequence()) {
        Some(format!(
            "it names lineage position {}:{}, its record is at {}:{}",
            d.lineage_partition(),
            d.lineage_sequence(),
            at.partition,
            at.sequence
        ))
    } else if at.copies > 0 {
        Some(format!("it is logged {} times", at.copies + 1))
    } else if at.intent_id != d.intent_id().0 {
        Some(format!(
            "its record logs intent {}",
            hex::encode(at.intent_id)
        ))
    } else if at.intent_digest != Some(d.intent_digest().0) {
        Some("its record logs another intent digest, or none".to_owned())
    } else if at.valid_until_us
        != if d.verdict() == Verdict::Authorize {
            d.valid_until_us()
        } else {
            0
        }
    {
        Some(format!(
            "its record logs validity until {} µs, the decision until {} µs",
            at.valid_until_us,
            d.valid_until_us()
        ))
    } else if (at.verdict, at.reason) != (d.verdict(), d.reason()) {
        Some(format!(
            "its record logs {} ({}), the decision says {} ({})",
            at.verdict.variant_name().unwrap_or("?"),
            at.reason.variant_name().unwrap_or("?"),
            d.verdict().variant_name().unwrap_or("?"),
            d.reason().variant_name().unwrap_or("?"),
        ))
    } else {
        None
    }
}

/// Adds a violation description, at most 20 per kind.
fn note(report: &mut AuditReport, kind: &str, what: String) {
    if report
        .violations
        .iter()
        .filter(|v| v.starts_with(kind))
        .count()
        < 20
    {
        report.violations.push(format!("{kind}: {what}"));
    }
}

/// Why an authorization does not hold, if it does not.
fn why_invalid(
    intent: &[u8],
    decision: &[u8],
    ground: &Ground<'_>,
    keys: &EngineKeys,
) -> Option<String> {
    let limits = Limits::default();
    let d = match open_decision(decision, &limits) {
        Ok(d) => d,
        Err(e) => return Some(format!("the decision does not open: {e}")),
    };
    let issued = d.issued_at_us();
    if let Err(e) = verify_decision(
        decision,
        keys,
        &intent_digest(intent),
        ground.audience,
        issued,
    ) {
        return Some(format!("the decision does not verify: {e}"));
    }
    let s = match open_signed_intent(intent, &limits) {
        Ok(s) => s,
        Err(e) => return Some(format!("the intent does not open: {e}")),
    };
    let i = s.intent;
    let key = match ground.trust.lookup(&i.key_id().0, i.principal()) {
        Lookup::Usable(k, status) => (k, status),
        Lookup::Unknown => return Some("its key is not trusted for its principal".into()),
        Lookup::Revoked => return Some("its key is revoked".into()),
    };
    let item = SigItem {
        key: key.0,
        prefix: INTENT_SIGNING_DOMAIN,
        message: s.intent_bytes,
        signature: s.signature,
    };
    if let Err(e) = verify_one(&item) {
        return Some(format!("its signature does not verify: {e}"));
    }
    if i.issued_at_us() > issued.saturating_add(ground.max_clock_skew_us) {
        return Some("decided before it was issued".into());
    }
    // The window ends *at* its deadline and maximum age, as the engine's
    // (`pipeline::past_window`): at that instant its nonce is forgotten.
    if issued >= i.issued_at_us().saturating_add(ground.max_intent_age_us) {
        return Some("decided after it expired".into());
    }
    if issued >= i.deadline_us() {
        return Some("decided after its deadline".into());
    }
    let named = d.policy_hash().map_or([0; 32], |h| h.0);
    let Some(policy) = std::iter::once(ground.policy)
        .chain(ground.earlier_policies)
        .find(|p| p.hash() == named)
    else {
        return Some(format!(
            "decided under policy {} (version {}), which the auditor was not given",
            hex::encode(&named[..8]),
            d.policy_version()
        ));
    };
    let mut attrs = Vec::new();
    if let Some(list) = i.attributes() {
        for a in list {
            let value = match a.kind() {
                warrant_schemas::wire::AttrKind::Int => AttrValue::Int(a.int_value()),
                warrant_schemas::wire::AttrKind::Bool => AttrValue::Bool(a.bool_value()),
                _ => AttrValue::Str(a.str_value().unwrap_or("")),
            };
            attrs.push(Attr {
                key: a.key(),
                value,
            });
        }
    }
    let outcome = policy.evaluate(&Request {
        principal: i.principal(),
        action: i.action(),
        resource: i.resource(),
        environment: i.environment(),
        region: i.region(),
        attributes: &attrs,
        minute_of_day: u16::try_from((issued / 60_000_000) % 1440).unwrap_or(0),
        key_status: key.1,
    });
    if !outcome.is_allow() {
        return Some(format!(
            "the policy does not allow it ({})",
            policy.reason(&outcome).variant_name().unwrap_or("deny")
        ));
    }
    // Never longer than the rule grants, the intent asked for and the
    // engine's maximum (the engine may cut it further: a redelivery's
    // first authorization).
    let granted = policy
        .granted_validity_us(&outcome, i.requested_validity_us())
        .min(ground.max_validity_us);
    if d.valid_until_us() > issued.saturating_add(granted) {
        return Some(format!(
            "valid for {} µs after its issue, longer than the {granted} µs the policy and the engine's max_validity grant it",
            d.valid_until_us().saturating_sub(issued)
        ));
    }
    None
}

/// Audits a deployment's output. `intents` and `lineage` are (partition,
/// bytes) in topic order; `decisions` are the decision messages.
pub fn audit(
    intents: &[(u32, Vec<u8>)],
    decisions: &[Vec<u8>],
    lineage: &[(u32, Vec<u8>)],
    ground: &Ground<'_>,
) -> AuditReport {
    let mut r = AuditReport {
        intents: intents.len() as u64,
        decisions: decisions.len() as u64,
        ..AuditReport::default()
    };
    let mut keys = EngineKeys::new();
    for k in ground.engine_keys {
        if let Err(e) = keys.add(k) {
            note(&mut r, "engine key", format!("{}: {e}", hex::encode(k)));
        }
    }
    let by_digest: HashMap<[u8; 32], &[u8]> = intents
        .iter()
        .map(|(_, b)| (intent_digest(b), b.as_slice()))
        .collect();
    r.distinct_intents = by_digest.len() as u64;

    // Lineage first: which decisions are logged, and what each record
    // says of its decision.
    let mut logged: HashMap<[u8; 32], Logged> = HashMap::new();
    let decided: HashSet<[u8; 32]> = decisions
        .iter()
        .filter_map(|d| decision_leaf_hash(d).ok())
        .collect();
    for (p, frames) in by_partition(lineage) {
        match verify_log(p, &frames.records, &frames.checkpoints, ground.engine_keys) {
            Ok(report) => {
                r.lineage_records += report.records;
                r.checkpoints += report.checkpoints;
                r.lineage_partitions += 1;
            }
            Err(e) => note(&mut r, "lineage", format!("partition {p}: {e}")),
        }
        for rec in &frames.records {
            if let Ok(l) = open_lineage_record(rec, &Limits::default()) {
                let digest = l.decision_digest().0;
                if !decided.contains(&digest) {
                    r.lineage_without_decision += 1;
                }
                logged
                    .entry(digest)
                    .and_modify(|at| at.copies += 1)
                    .or_insert(Logged {
                        partition: l.partition(),
                        sequence: l.sequence(),
                        intent_id: l.intent_id().0,
                        intent_digest: l.intent_digest().map(|h| h.0),
                        verdict: l.verdict(),
                        reason: l.reason(),
                        valid_until_us: l.valid_until_us(),
                        copies: 0,
                    });
            }
        }
    }

    // Verdicts by intent digest.
    let mut verdicts: BTreeMap<[u8; 32], Vec<(Reason, usize)>> = BTreeMap::new();
    for (n, d) in decisions.iter().enumerate() {
        let Ok(open) = open_decision(d, &Limits::default()) else {
            r.orphan_decisions += 1;
            note(
                &mut r,
                "orphan decision",
                format!("decision {n} does not parse"),
            );
            continue;
        };
        let digest = open.intent_digest().0;
        if !by_digest.contains_key(&digest) {
            r.orphan_decisions += 1;
            note(
                &mut r,
                "orphan decision",
                format!(
                    "decision {n} is for no intent on the topic ({})",
                    hex::encode(open.intent_id().0)
                ),
            );
            continue;
        }
        match decision_leaf_hash(d).ok().and_then(|h| logged.get(&h)) {
            Some(at) => {
                if let Some(why) = disagreement(at, &open) {
                    r.lineage_disagrees += 1;
                    note(
                        &mut r,
                        // Not "lineage ...": that kind is the log's own.
                        "disagrees with its lineage record",
                        format!("decision {n} ({}): {why}", hex::encode(open.intent_id().0)),
                    );
                }
            }
            None => {
                r.unlogged += 1;
                note(
                    &mut r,
                    "not in the lineage",
                    format!("decision {n} ({})", hex::encode(open.intent_id().0)),
                );
            }
        }
        let reason =
            if (open.verdict() == Verdict::Authorize) != (open.reason() == Reason::Authorized) {
                CONTRADICTION
            } else {
                open.reason()
            };
        verdicts.entry(digest).or_default().push((reason, n));
    }

    // Nonces authorized, for the replay check: (principal, nonce) → each
    // authorized intent's (first authorization's issue time, end of the
    // window the engine remembers its nonce for, digest).
    let mut nonces: HashMap<(String, [u8; 16]), Vec<NonceUse>> = HashMap::new();
    for (digest, intent) in &by_digest {
        let Some(list) = verdicts.get(digest) else {
            r.missing += 1;
            note(
                &mut r,
                "missing decision",
                format!("intent {}", hex::encode(&digest[..8])),
            );
            continue;
        };
        r.re_emitted += list.len() as u64 - 1;
        // In the order they were emitted (decisions are keyed by intent
        // id: one partition, offset order).
        let agree = list.iter().enumerate().all(|(i, (a, _))| {
            *a != CONTRADICTION && list.iter().skip(i + 1).all(|(b, _)| consistent(*a, *b))
        });
        let authorized = list.iter().any(|(x, _)| *x == Reason::Authorized);
        if !agree {
            r.conflicting += 1;
            let seen: Vec<&str> = list
                .iter()
                .map(|(x, _)| x.variant_name().unwrap_or("?"))
                .collect();
            note(
                &mut r,
                "two verdicts",
                format!("intent {}: {seen:?}", hex::encode(&digest[..8])),
            );
        } else if authorized && list.iter().any(|(x, _)| *x != Reason::Authorized) {
            r.redelivery_denies += 1;
        }
        if !authorized {
            r.denied += 1;
            continue;
        }
        r.authorized += 1;
        // Every authorization is re-derived, not only the first, and all
        // end at the first's end: an executor remembers a consumed
        // decision until its end, so one ending later could run again
        // once the first is forgotten, and one ending sooner, consumed
        // first and forgotten, would leave the first usable.
        let mut first_end: Option<u64> = None;
        for (_, n) in list.iter().filter(|(x, _)| *x == Reason::Authorized) {
            let Some(d) = decisions.get(*n) else { continue };
            let end = open_decision(d, &Limits::default()).map_or(0, |d| d.valid_until_us());
            let other_end = first_end.filter(|&first| end != first).map(|first| {
                format!(
                    "a later authorization ends at {end} µs, not at its first's end ({first} µs)"
                )
            });
            first_end.get_or_insert(end);
            if let Some(why) = other_end.or_else(|| why_invalid(intent, d, ground, &keys)) {
                r.invalid_authorized += 1;
                note(
                    &mut r,
                    "invalid authorized",
                    format!("intent {}: {why}", hex::encode(&digest[..8])),
                );
                break;
            }
        }
        if let Ok(s) = open_signed_intent(intent, &Limits::default()) {
            let first_authorized = list
                .iter()
                .filter(|(x, _)| *x == Reason::Authorized)
                .filter_map(|(_, n)| decisions.get(*n))
                .filter_map(|d| open_decision(d, &Limits::default()).ok())
                .map(|d| d.issued_at_us())
                .min()
                .unwrap_or(0);
            // As the engine's replay memory keeps it (`pipeline::decode`).
            let remembered_until = s.intent.deadline_us().min(
                s.intent
                    .issued_at_us()
                    .saturating_add(ground.max_intent_age_us),
            );
            nonces
                .entry((s.intent.principal().to_owned(), s.intent.nonce().0))
                .or_default()
                .push((first_authorized, remembered_until, *digest));
        }
    }
    // Two intents sharing a nonce may both be authorized only when the
    // later one was decided after the engine's memory of the earlier one
    // ended: a nonce is remembered for its intent's window, then free.
    for ((principal, _), uses) in nonces {
        for (earlier, later) in reused_while_remembered(uses) {
            r.invalid_authorized += 1;
            note(
                &mut r,
                "invalid authorized",
                format!(
                    "intents {} and {} of {principal} share a nonce and were both \
                     authorized, the second while the first's nonce was remembered",
                    hex::encode(&earlier[..8]),
                    hex::encode(&later[..8]),
                ),
            );
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::reused_while_remembered;

    #[test]
    fn a_nonce_is_a_replay_only_while_the_engine_remembers_it() {
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        // b authorized at 150, while a's nonce was remembered (until 200).
        assert_eq!(
            reused_while_remembered(vec![(150, 900, b), (100, 200, a)]),
            [(a, b)]
        );
        // b authorized at 200, when a's window had ended: a fresh use.
        assert!(reused_while_remembered(vec![(100, 200, a), (200, 900, b)]).is_empty());
        // c falls in a's long window though b's short one has ended.
        assert_eq!(
            reused_while_remembered(vec![(500, 600, c), (100, 1_000, a), (300, 400, b)]),
            [(a, b), (a, c)]
        );
    }
}
