//! The auditor's check (`warrant_engine::audit`) on an engine's real
//! output: a clean run has no violation, and each kind of damage an
//! auditor must catch is caught: a lost decision, an authorization the
//! policy or the trust store does not back, a lineage record removed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use warrant_engine::audit::{AuditReport, Ground, audit};
use warrant_engine::pipeline::{Config, Engine, now_us};
use warrant_engine::seal::EngineKey;
use warrant_engine::transport::embedded::{Collector, Topic};
use warrant_engine::trust::TrustStore;
use warrant_engine::workload::{Mix, Shape, Workload, trust_store};
use warrant_policy::{Policy, PolicyStore};

struct Run {
    intents: Vec<(u32, Vec<u8>)>,
    decisions: Vec<Vec<u8>>,
    lineage: Vec<(u32, Vec<u8>)>,
    engine_key: [u8; 32],
    policy: Policy,
    trust: TrustStore,
}

fn payments() -> Policy {
    Policy::from_sources(&[("payments.toml", warrant_engine::demo::POLICY)]).unwrap()
}

/// 1,000 intents of every kind, issued at `now`.
fn generate(now: u64) -> Vec<(String, Vec<u8>)> {
    let mut w = Workload::new(
        Shape {
            principals: 8,
            mix: Mix::default(),
            deadline: Duration::from_secs(60),
            ..Shape::default()
        },
        [7; 8],
    )
    .unwrap();
    (0..1_000)
        .map(|i| {
            let g = w.generate(i, now);
            (g.key, g.bytes)
        })
        .collect()
}

/// 1,000 intents of every kind through the engine.
fn run() -> Run {
    run_with(payments(), &generate(now_us()))
}

/// `intents` through an engine (key seed 3) running `policy`.
fn run_with(policy: Policy, generated: &[(String, Vec<u8>)]) -> Run {
    let trust = trust_store(8).unwrap();
    let store = Arc::new(PolicyStore::new());
    store.install(policy);
    let key = EngineKey::from_seed([3; 32]);
    let engine_key = key.public_key();
    let topic = Topic::new(4, 4_096);
    let sink = Collector::new();
    let engine = Engine::start(
        Config {
            partitions: 4,
            ..Config::default()
        },
        topic.consumer(),
        sink.clone(),
        key,
        Arc::new(ArcSwap::from_pointee(trust.clone())),
        store,
    )
    .unwrap();
    let mut intents = Vec::new();
    for (key, bytes) in generated {
        let (p, _) = topic.publish(key.as_bytes(), bytes.clone()).unwrap();
        intents.push((p, bytes.clone()));
    }
    topic.close();
    engine.join().unwrap();
    let out = sink.take_snapshot();
    Run {
        intents,
        decisions: out.decisions.into_iter().map(|(_, d)| d).collect(),
        lineage: out.lineage,
        engine_key,
        policy: payments(),
        trust,
    }
}

fn check(r: &Run, policy: &Policy, trust: &TrustStore) -> AuditReport {
    audit(
        &r.intents,
        &r.decisions,
        &r.lineage,
        &ground(trust, policy, &[r.engine_key]),
    )
}

/// What the auditor is given, with the engine's default settings.
fn ground<'a>(
    trust: &'a TrustStore,
    policy: &'a Policy,
    engine_keys: &'a [[u8; 32]],
) -> Ground<'a> {
    let d = Config::default();
    Ground {
        trust,
        policy,
        earlier_policies: &[],
        max_validity_us: d.max_validity.as_micros() as u64,
        engine_keys,
        audience: "executor",
        max_clock_skew_us: d.max_clock_skew.as_micros() as u64,
        max_intent_age_us: d.max_intent_age.as_micros() as u64,
    }
}

#[test]
fn a_clean_run_has_no_violation_and_damage_is_found() {
    let r = run();
    let clean = check(&r, &r.policy, &r.trust);
    println!("{clean}");
    assert_eq!(clean.violation_count(), 0, "{clean}");
    assert_eq!(clean.intents, 1_000);
    assert_eq!(clean.decisions, 1_000);
    assert_eq!(clean.lineage_records, 1_000);
    assert_eq!(clean.lineage_without_decision, 0, "{clean}");
    assert!(clean.authorized > 600 && clean.denied > 100, "{clean}");

    // A decision lost.
    let lost = Run {
        decisions: r.decisions[1..].to_vec(),
        ..run_copy(&r)
    };
    let report = check(&lost, &r.policy, &r.trust);
    assert_eq!(report.missing, 1, "{report}");
    // Its lineage record now logs a decision the topic does not hold.
    assert_eq!(report.lineage_without_decision, 1, "{report}");

    // A decision emitted twice: counted, not a violation.
    let mut twice = run_copy(&r);
    twice.decisions.push(r.decisions[5].clone());
    let report = check(&twice, &r.policy, &r.trust);
    assert_eq!(
        (report.re_emitted, report.violation_count()),
        (1, 0),
        "{report}"
    );

    // Judged by a policy other than the one the engine ran (here one that
    // allows nothing): every authorization names a policy the auditor was
    // not given, and cannot be re-derived. Given the engine's policy as an
    // earlier one (a reload since), each is judged by it: clean. Judged by
    // a trust store without the keys: every authorization is invalid.
    let nothing = Policy::from_sources(&[(
        "none.toml",
        "[policy]\nname = \"none\"\nversion = 1\n[[rule]]\nid = \"deny-all\"\neffect = \"deny\"\n",
    )])
    .unwrap();
    let report = check(&r, &nothing, &r.trust);
    assert_eq!(report.invalid_authorized, clean.authorized, "{report}");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("was not given")),
        "{report}"
    );
    let reloaded = audit(
        &r.intents,
        &r.decisions,
        &r.lineage,
        &Ground {
            earlier_policies: std::slice::from_ref(&r.policy),
            ..ground(&r.trust, &nothing, &[r.engine_key])
        },
    );
    assert_eq!(reloaded.violation_count(), 0, "{reloaded}");
    let report = check(&r, &r.policy, &TrustStore::new());
    assert_eq!(report.invalid_authorized, clean.authorized, "{report}");

    // A lineage record removed: the log no longer verifies, and its
    // decision is not in the lineage.
    let mut cut = run_copy(&r);
    let i = cut
        .lineage
        .iter()
        .position(|(_, b)| warrant_schemas::open_lineage_record(b, &Default::default()).is_ok())
        .unwrap();
    cut.lineage.remove(i);
    let report = check(&cut, &r.policy, &r.trust);
    assert_eq!(report.unlogged, 1, "{report}");
    assert!(
        report.violations.iter().any(|v| v.starts_with("lineage")),
        "{report}"
    );

    // A decision by another engine key: it does not verify.
    let report = audit(
        &r.intents,
        &r.decisions,
        &r.lineage,
        &ground(
            &r.trust,
            &r.policy,
            &[EngineKey::from_seed([4; 32]).public_key()],
        ),
    );
    assert_eq!(report.invalid_authorized, clean.authorized, "{report}");

    // The same intents decided first by an engine that allows nothing,
    // then again by one that runs the real policy: a remembered deny
    // never turns into an authorization, so every authorized intent has
    // two verdicts. The other way round (a policy change that denies a
    // redelivery) fails closed and agrees.
    let now = now_us();
    let generated = generate(now);
    let nothing_allowed = run_with(nothing, &generated);
    let first = run_with(payments(), &generated);
    let authorized = check(&first, &first.policy, &first.trust).authorized;
    assert!(authorized > 0);
    let mut both = run_copy(&first);
    both.decisions = nothing_allowed.decisions.clone();
    both.decisions.extend(first.decisions.iter().cloned());
    let report = check(&both, &first.policy, &first.trust);
    assert_eq!(report.conflicting, authorized, "{report}");
    let mut both = run_copy(&first);
    both.decisions
        .extend(nothing_allowed.decisions.iter().cloned());
    let report = check(&both, &first.policy, &first.trust);
    assert_eq!(
        (report.conflicting, report.redelivery_denies),
        (0, authorized),
        "{report}"
    );

    // The same intents authorized again later by an engine that
    // remembers nothing of the first run: each second authorization ends
    // after the first, which an executor would take as a second warrant.
    let again = run_with(payments(), &generated);
    let mut both = run_copy(&first);
    both.decisions.extend(again.decisions.iter().cloned());
    let report = check(&both, &first.policy, &first.trust);
    assert_eq!(report.conflicting, 0, "{report}");
    assert_eq!(report.invalid_authorized, authorized, "{report}");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("not at its first's end")),
        "{report}"
    );

    // Judged by a policy that grants a shorter validity than the one the
    // engine ran: every authorization outlasts what it grants.
    let allow = |max: &str| {
        Policy::from_sources(&[(
            "allow.toml",
            &format!(
                "[policy]\nname = \"allow\"\nversion = 1\n[[rule]]\nid = \"all\"\neffect = \"allow\"\nmax_validity = \"{max}\"\n"
            ),
        )])
        .unwrap()
    };
    let long = run_with(allow("10m"), &generated);
    let as_run = check(&long, &allow("10m"), &long.trust);
    assert!(as_run.authorized > 0, "{as_run}");
    assert_eq!(as_run.invalid_authorized, 0, "{as_run}");
    // The same intents authorized again for less: each second
    // authorization ends sooner than the first, which an executor that
    // consumed it first would forget while the first is still good.
    let short = run_with(allow("1s"), &generated);
    let mut both = run_copy(&long);
    both.decisions.extend(short.decisions.iter().cloned());
    let report = check(&both, &allow("10m"), &long.trust);
    assert_eq!(report.invalid_authorized, as_run.authorized, "{report}");
    // Judged with an engine maximum of one second (the intents ask for 30
    // to 60, the rule grants ten minutes): every authorization outlasts
    // what the engine may grant.
    let report = audit(
        &long.intents,
        &long.decisions,
        &long.lineage,
        &Ground {
            max_validity_us: 1_000_000,
            ..ground(&long.trust, &allow("10m"), &[long.engine_key])
        },
    );
    assert_eq!(report.invalid_authorized, as_run.authorized, "{report}");
    assert!(
        report.violations.iter().any(|v| v.contains("longer than")),
        "{report}"
    );

    // A decision for an intent that is not on the topic.
    let mut orphan = run_copy(&r);
    orphan.intents.remove(0);
    let report = check(&orphan, &r.policy, &r.trust);
    assert_eq!(report.orphan_decisions, 1, "{report}");
}

#[test]
fn a_later_deny_always_agrees_a_later_authorization_only_after_a_lifted_deny() {
    use warrant_engine::audit::consistent;
    use warrant_schemas::wire::Reason;
    // Every reason the schema defines, a new one included.
    let all = Reason::ENUM_VALUES.iter().copied();
    // Fails closed: a redelivery read after its deadline, a revocation,
    // a policy change, or with no room is denied, whatever came first.
    for first in all.clone() {
        for then in all.clone().filter(|r| *r != Reason::Authorized) {
            assert!(consistent(first, then), "{first:?} then {then:?}");
        }
    }
    // Not remembered, and lifted by a later reading: room, the key
    // trusted again, its time come, the other intent's nonce window over.
    for first in [
        Reason::Overloaded,
        Reason::InternalError,
        Reason::RevokedKey,
        Reason::UnknownKey,
        Reason::NotYetValid,
        Reason::Malformed,
        Reason::ReplayedNonce,
    ] {
        assert!(consistent(first, Reason::Authorized), "{first:?}");
    }
    // Remembered, or never lifted: time runs one way, bytes and
    // signatures do not change.
    for first in [
        Reason::BadSignature,
        Reason::Expired,
        Reason::DeadlineExceeded,
        Reason::NoPolicy,
        Reason::NoMatchingRule,
        Reason::DenyRule,
    ] {
        assert!(!consistent(first, Reason::Authorized), "{first:?}");
    }
}

fn run_copy(r: &Run) -> Run {
    Run {
        intents: r.intents.clone(),
        decisions: r.decisions.clone(),
        lineage: r.lineage.clone(),
        engine_key: r.engine_key,
        policy: payments(),
        trust: r.trust.clone(),
    }
}

/// Intents of one signer (`svc-example`) and authorizations sealed by
/// hand under an allow-all policy: audits of cases the engine never
/// produces.
struct ByHand {
    signer: warrant_schemas::IntentSigner,
    trust: TrustStore,
    policy: Policy,
    key: EngineKey,
}

impl ByHand {
    fn new() -> ByHand {
        let signer = warrant_schemas::IntentSigner::from_seed([4; 32]);
        let mut trust = TrustStore::new();
        trust
            .add(
                "svc-example",
                signer.public_key(),
                warrant_engine::trust::KeyState::Active,
            )
            .unwrap();
        let policy = Policy::from_sources(&[(
            "allow.toml",
            "[policy]\nversion = 1\n[[rule]]\nid = \"all\"\neffect = \"allow\"\nmax_validity = \"1m\"\n",
        )])
        .unwrap();
        ByHand {
            signer,
            trust,
            policy,
            key: EngineKey::from_seed([3; 32]),
        }
    }

    /// Audits `intents`, each authorized (id `n + 1`, lineage sequence `n`)
    /// at the matching instant of `issued_at_us`, valid for 1 ms, and
    /// logged in order in partition 0's lineage.
    fn audit(&self, intents: &[Vec<u8>], issued_at_us: &[u64]) -> AuditReport {
        self.audit_logged(intents, issued_at_us, |_| {})
    }

    /// As [`ByHand::audit`], with the lineage entries (one per decision,
    /// in order) changed by `edit` before they are logged.
    fn audit_logged(
        &self,
        intents: &[Vec<u8>],
        issued_at_us: &[u64],
        edit: impl FnOnce(&mut Vec<warrant_engine::lineage::Entry>),
    ) -> AuditReport {
        use warrant_engine::lineage::{Entry, LineageWriter};
        use warrant_engine::seal::{DecisionCore, seal};
        use warrant_schemas::wire::{Reason, Verdict};
        let cores: Vec<DecisionCore<'_>> = intents
            .iter()
            .zip(issued_at_us)
            .enumerate()
            .map(|(n, (intent, &at))| DecisionCore {
                intent_id: [n as u8 + 1; 16],
                intent_digest: warrant_schemas::intent_digest(intent),
                verdict: Verdict::Authorize,
                reason: Reason::Authorized,
                rule_id: "all",
                policy_hash: self.policy.hash(),
                policy_version: 1,
                issued_at_us: at,
                valid_until_us: at + 1_000,
                audience: "executor",
                lineage_partition: 0,
                lineage_sequence: n as u64,
            })
            .collect();
        let decisions = seal(&self.key, &cores).unwrap();
        let mut entries: Vec<Entry> = cores
            .iter()
            .map(|c| Entry {
                decision_digest: c.leaf_hash(&self.key.id()),
                intent_id: c.intent_id,
                parent_id: None,
                verdict: c.verdict,
                reason: c.reason,
                issued_at_us: c.issued_at_us,
                replay: None,
                intent_digest: c.intent_digest,
                valid_until_us: c.valid_until_us,
            })
            .collect();
        edit(&mut entries);
        let mut writer = LineageWriter::new(0);
        let mut lineage: Vec<(u32, Vec<u8>)> =
            entries.iter().map(|e| (0, writer.append(e))).collect();
        lineage.push((0, writer.checkpoint(&self.key, now_us())));
        let on_topic: Vec<(u32, Vec<u8>)> = intents.iter().map(|i| (0, i.clone())).collect();
        audit(
            &on_topic,
            &decisions,
            &lineage,
            &ground(&self.trust, &self.policy, &[self.key.public_key()]),
        )
    }
}

/// The window ends *at* the intent's deadline, as the engine's does (its
/// nonce is forgotten at that instant): an authorization issued exactly
/// then is invalid, one a microsecond earlier is not.
#[test]
fn an_authorization_at_the_deadline_is_invalid() {
    let h = ByHand::new();
    let intent = h
        .signer
        .sign_intent(&warrant_schemas::IntentFields::example());
    let deadline = warrant_schemas::IntentFields::example().deadline_us;
    let at = |issued_at_us: u64| {
        h.audit(std::slice::from_ref(&intent), &[issued_at_us])
            .invalid_authorized
    };
    assert_eq!(at(deadline - 1), 0);
    assert_eq!(at(deadline), 1);
}

/// Two intents of one principal sharing a nonce, both authorized while the
/// first's nonce was remembered: the replay check, through `audit` from
/// the intents' bytes (not the unit test of its window arithmetic).
#[test]
fn two_authorizations_of_one_nonce_are_found() {
    let h = ByHand::new();
    let now = now_us();
    let intent = |id: u8| {
        h.signer.sign_intent(&warrant_schemas::IntentFields {
            id: [id; 16],
            nonce: [7; 16],
            issued_at_us: now,
            deadline_us: now + 60_000_000,
            ..warrant_schemas::IntentFields::example()
        })
    };
    // The second a moment after the first: a replay the engine should
    // have denied.
    let report = h.audit(&[intent(1), intent(2)], &[now + 1_000, now + 2_000]);
    assert_eq!(report.invalid_authorized, 1, "{report}");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("share a nonce")),
        "{report}"
    );
}

/// A decision and the lineage record that logs it (found by the decision's
/// leaf hash) must agree on where the record is and what it logs, and
/// there must be one: an auditor following a decision's lineage position
/// must find its record, and an engine resuming from the log must rebuild
/// what the decisions said.
#[test]
fn a_decision_and_its_lineage_record_must_agree() {
    use warrant_schemas::wire::{Reason, Verdict};
    let h = ByHand::new();
    let now = now_us();
    let intents: Vec<Vec<u8>> = (1..=2u8)
        .map(|n| {
            h.signer.sign_intent(&warrant_schemas::IntentFields {
                id: [n; 16],
                nonce: [n; 16],
                issued_at_us: now,
                deadline_us: now + 60_000_000,
                ..warrant_schemas::IntentFields::example()
            })
        })
        .collect();
    let at = [now + 1_000, now + 2_000];

    let clean = h.audit(&intents, &at);
    assert_eq!(clean.violation_count(), 0, "{clean}");
    assert_eq!(
        (clean.lineage_records, clean.lineage_disagrees),
        (2, 0),
        "{clean}"
    );

    // Logged in the other order: each record is where the other decision
    // says its own is. The log itself verifies.
    let swapped = h.audit_logged(&intents, &at, |e| e.swap(0, 1));
    assert_eq!(swapped.lineage_disagrees, 2, "{swapped}");
    assert_eq!(swapped.lineage_records, 2, "{swapped}");
    assert!(
        swapped
            .violations
            .iter()
            .any(|v| v.contains("names lineage position 0:0, its record is at 0:1")),
        "{swapped}"
    );

    // A record logging a deny for an authorization.
    let denied = h.audit_logged(&intents, &at, |e| {
        e[1].verdict = Verdict::Deny;
        e[1].reason = Reason::BadSignature;
    });
    assert_eq!(denied.lineage_disagrees, 1, "{denied}");
    assert!(
        denied
            .violations
            .iter()
            .any(|v| v.contains("its record logs Deny (BadSignature)")),
        "{denied}"
    );

    // A record naming another intent.
    let other = h.audit_logged(&intents, &at, |e| e[0].intent_id = [9; 16]);
    assert_eq!(other.lineage_disagrees, 1, "{other}");
    assert_eq!(other.violation_count(), 1, "{other}");

    // A record with another end of validity (what a restarted engine's
    // replay memory would keep), or another intent digest.
    let longer = h.audit_logged(&intents, &at, |e| e[0].valid_until_us += 1);
    assert_eq!(longer.lineage_disagrees, 1, "{longer}");
    let digest = h.audit_logged(&intents, &at, |e| e[1].intent_digest = [9; 32]);
    assert_eq!(digest.lineage_disagrees, 1, "{digest}");

    // One decision logged twice: the log verifies, the copy is found.
    let twice = h.audit_logged(&intents, &at, |e| e.push(e[0]));
    assert_eq!(twice.lineage_records, 3, "{twice}");
    assert_eq!(twice.lineage_disagrees, 1, "{twice}");
    assert!(
        twice
            .violations
            .iter()
            .any(|v| v.contains("logged 2 times")),
        "{twice}"
    );
}
