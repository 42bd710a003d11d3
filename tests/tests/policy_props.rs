//! Differential and soundness property tests of the policy compiler.
//!
//! Random policies (written as text, so the parser is exercised too) and
//! random requests: the decision tables and the reference evaluator must
//! give the same verdict and the same deciding rule, every time. Values come
//! from small universes so that exact, prefix, group and set patterns,
//! ranges, time windows and mistyped attributes all collide often.

use proptest::prelude::*;
use warrant_policy::analyze::{analyze_pairwise, covers, intersects};
use warrant_policy::reference::rule_matches;
use warrant_policy::{KeyStatus, Policy, Request};
use warrant_schemas::{Attr, AttrValue};

const PRINCIPALS: &[&str] = &[
    "a", "ab", "abc", "svc-1", "svc-2", "agent-x", "", "é", "éa", "日本",
];
const ACTIONS: &[&str] = &["pay.send", "pay.refund", "pay", "read", "read.all"];
const REGIONS: &[&str] = &["DE", "FR", "US", "KP", "D"];
const ENVS: &[&str] = &["prod", "staging", "dev"];
const CURRENCIES: &[&str] = &["EUR", "USD", "E"];
const RESOURCES: &[&str] = &["acct/1", "acct/12", "acct", "ops/x"];

fn pattern(universe: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(universe).prop_map(|s| s.to_string()),
        2 => prop::sample::select(universe).prop_map(|s| format!("{}*", s.chars().take(2).collect::<String>())),
        1 => prop::sample::select(universe).prop_map(|s| format!("{}*", s.chars().take(1).collect::<String>())),
        1 => Just("*".to_string()),
    ]
}

fn list(
    universe: &'static [&'static str],
    extra: &'static [&'static str],
) -> impl Strategy<Value = Option<String>> {
    let item = prop_oneof![5 => pattern(universe), 1 => prop::sample::select(extra).prop_map(|s| s.to_string())];
    prop::option::weighted(0.5, prop::collection::vec(item, 1..4)).prop_map(|o| {
        o.map(|v| {
            format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    })
}

fn cond() -> impl Strategy<Value = (String, String)> {
    let key = prop::sample::select(&["amount", "currency", "flag"][..]);
    let value = prop_oneof![
        (prop::option::of(-50i64..150), prop::option::of(-50i64..150)).prop_filter_map(
            "range",
            |(a, b)| {
                let mut parts = vec![];
                if let Some(a) = a {
                    parts.push(format!("min = {a}"));
                }
                if let Some(b) = b {
                    parts.push(format!("max = {b}"));
                }
                if parts.is_empty() {
                    None
                } else {
                    Some(format!("{{ {} }}", parts.join(", ")))
                }
            }
        ),
        prop::collection::vec(pattern(CURRENCIES), 1..3).prop_map(|v| format!("{v:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
    ];
    (key.prop_map(str::to_string), value)
}

fn window() -> impl Strategy<Value = String> {
    (0u16..24, 0u16..24).prop_filter_map("non-empty", |(a, b)| {
        (a != b).then(|| format!("\"{a:02}:00-{b:02}:00\""))
    })
}

#[derive(Debug, Clone)]
struct RuleText(String);

fn rule(i: usize) -> impl Strategy<Value = RuleText> {
    (
        prop::bool::weighted(0.3),
        list(PRINCIPALS, &["group:ops", "group:nobody"]),
        (list(ACTIONS, ACTIONS), list(RESOURCES, RESOURCES)),
        list(ENVS, ENVS),
        list(REGIONS, &["set:eu", "set:empty"]),
        prop::option::weighted(
            0.2,
            prop::sample::select(&["\"active\"", "\"rotating\"", "[\"active\", \"rotating\"]"][..]),
        ),
        prop::option::weighted(0.2, window()),
        prop::collection::btree_map(
            prop::sample::select(&["amount", "currency", "flag"][..]),
            cond().prop_map(|c| c.1),
            0..3,
        ),
    )
        .prop_map(move |(deny, p, (a, res), e, r, ks, t, when)| {
            let mut s = format!(
                "[[rule]]\nid = \"r{i}\"\neffect = \"{}\"\n",
                if deny { "deny" } else { "allow" }
            );
            for (k, v) in [
                ("principal", p),
                ("action", a),
                ("resource", res),
                ("environment", e),
                ("region", r),
            ] {
                if let Some(v) = v {
                    s.push_str(&format!("{k} = {v}\n"));
                }
            }
            if let Some(ks) = ks {
                s.push_str(&format!("key_status = {ks}\n"));
            }
            if let Some(t) = t {
                s.push_str(&format!("time = {t}\n"));
            }
            if !when.is_empty() {
                let parts: Vec<String> = when.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                s.push_str(&format!("when = {{ {} }}\n", parts.join(", ")));
            }
            RuleText(s)
        })
}

fn policy_text() -> impl Strategy<Value = String> {
    (1usize..14).prop_flat_map(|n| {
        (0..n).map(rule).collect::<Vec<_>>().prop_map(|rules| {
            let mut s = String::from(
                "[policy]\nversion = 1\n[groups]\nops = [\"a\", \"svc-*\"]\nnobody = []\n[sets]\neu = [\"DE\", \"FR\"]\nempty = []\n",
            );
            for r in rules {
                s.push_str(&r.0);
            }
            s
        })
    })
}

#[derive(Debug, Clone)]
struct Req {
    principal: &'static str,
    action: &'static str,
    resource: &'static str,
    environment: &'static str,
    region: &'static str,
    minute: u16,
    rotating: bool,
    attrs: Vec<(&'static str, Val)>,
}

#[derive(Debug, Clone)]
enum Val {
    Int(i64),
    Str(&'static str),
    Bool(bool),
}

fn request() -> impl Strategy<Value = Req> {
    let val = prop_oneof![
        (-60i64..160).prop_map(Val::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX)].prop_map(Val::Int),
        prop::sample::select(CURRENCIES).prop_map(Val::Str),
        any::<bool>().prop_map(Val::Bool),
    ];
    (
        prop::sample::select(PRINCIPALS),
        (
            prop::sample::select(ACTIONS),
            prop::sample::select(RESOURCES),
        ),
        prop::sample::select(ENVS),
        prop::sample::select(REGIONS),
        0u16..3000,
        any::<bool>(),
        prop::collection::btree_map(
            prop::sample::select(&["amount", "currency", "flag"][..]),
            val,
            0..4,
        ),
    )
        .prop_map(
            |(principal, (action, resource), environment, region, minute, rotating, attrs)| Req {
                principal,
                action,
                resource,
                environment,
                region,
                minute,
                rotating,
                attrs: attrs.into_iter().collect(),
            },
        )
}

fn with_request<T>(r: &Req, f: impl FnOnce(&Request<'_>) -> T) -> T {
    let attrs: Vec<Attr<'_>> = r
        .attrs
        .iter()
        .map(|(k, v)| Attr {
            key: k,
            value: match v {
                Val::Int(i) => AttrValue::Int(*i),
                Val::Str(s) => AttrValue::Str(s),
                Val::Bool(b) => AttrValue::Bool(*b),
            },
        })
        .collect();
    let req = Request {
        principal: r.principal,
        action: r.action,
        resource: r.resource,
        environment: r.environment,
        region: r.region,
        attributes: &attrs,
        minute_of_day: r.minute,
        key_status: if r.rotating {
            KeyStatus::Rotating
        } else {
            KeyStatus::Active
        },
    };
    f(&req)
}

proptest! {
    // 10,000 random policies, each with 4 random requests, per run.
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn tables_agree_with_reference(text in policy_text(), reqs in prop::collection::vec(request(), 4)) {
        let policy = Policy::from_sources(&[("random.toml", &text)]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for r in &reqs {
            with_request(r, |req| {
                let fast = policy.evaluate(req);
                let slow = policy.evaluate_reference(req);
                prop_assert_eq!(fast, slow, "policy:\n{}\nrequest: {:?}", text, r);
                // explain_agrees_with_evaluate: the rules every explained
                // dimension selects, decided by priority, give the same rule.
                let rules = policy.rules();
                let selected: Vec<usize> = (0..rules.len())
                    .filter(|i| policy.explain(req).iter().all(|(_, set)| set.contains(i)))
                    .collect();
                let by_effect = |e| selected.iter().copied().find(|&i| rules[i].effect == e);
                let explained = by_effect(warrant_policy::Effect::Deny).or_else(|| by_effect(warrant_policy::Effect::Allow));
                prop_assert_eq!(explained, fast.rule, "explain disagrees\npolicy:\n{}\nrequest: {:?}", text, r);
                Ok(())
            })?;
        }
    }

    #[test]
    fn analysis_is_sound(text in policy_text(), reqs in prop::collection::vec(request(), 16)) {
        let policy = Policy::from_sources(&[("random.toml", &text)]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let rules = policy.rules();
        for r in &reqs {
            with_request(r, |req| {
                for a in rules {
                    for b in rules {
                        let (ma, mb) = (rule_matches(a, req), rule_matches(b, req));
                        if covers(a, b) {
                            prop_assert!(!mb || ma, "{} claims to cover {} but {:?} matches only the latter\n{}", a.id, b.id, r, text);
                        }
                        if ma && mb {
                            prop_assert!(intersects(a, b), "{} and {} both match {:?} but do not intersect\n{}", a.id, b.id, r, text);
                        }
                    }
                }
                for f in policy.findings() {
                    if let warrant_policy::Finding::NeverMatches { rule, .. } = f {
                        prop_assert!(!rule_matches(&rules[*rule], req));
                    }
                    if let warrant_policy::Finding::Shadowed { rule, .. } = f {
                        // A shadowed rule never decides.
                        prop_assert_ne!(policy.evaluate(req).rule, Some(*rule));
                    }
                }
                Ok(())
            })?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// The indexed analysis finds exactly what testing every pair finds.
    #[test]
    fn analysis_finds_what_testing_every_pair_finds(text in policy_text()) {
        let policy = Policy::from_sources(&[("random.toml", &text)]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (findings, unlisted) = analyze_pairwise(policy.rules());
        prop_assert_eq!(policy.findings(), &findings[..], "{}", text);
        prop_assert_eq!(policy.unlisted_overlaps(), unlisted);
    }
}

/// Guards the tests above against vacuity: the generators must produce
/// allows, rule denies, no-match denies, shadowing and overlap findings.
#[test]
fn generators_exercise_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut allow, mut deny_rule, mut no_match, mut shadowed, mut overlap, mut never) =
        (0, 0, 0, 0, 0, 0);
    for _ in 0..300 {
        let text = policy_text().new_tree(&mut runner).unwrap().current();
        let policy = Policy::from_sources(&[("random.toml", &text)]).unwrap();
        for f in policy.findings() {
            match f {
                warrant_policy::Finding::Shadowed { .. } => shadowed += 1,
                warrant_policy::Finding::Overlap { .. } => overlap += 1,
                warrant_policy::Finding::NeverMatches { .. } => never += 1,
            }
        }
        for _ in 0..10 {
            let r = request().new_tree(&mut runner).unwrap().current();
            with_request(&r, |req| {
                match (policy.evaluate(req).is_allow(), policy.evaluate(req).rule) {
                    (true, _) => allow += 1,
                    (false, Some(_)) => deny_rule += 1,
                    (false, None) => no_match += 1,
                }
            });
        }
    }
    let total = allow + deny_rule + no_match;
    eprintln!(
        "allow {allow}, deny by rule {deny_rule}, no match {no_match}; shadowed {shadowed}, overlaps {overlap}, never {never}"
    );
    assert!(allow * 20 > total && deny_rule * 20 > total && no_match * 20 > total);
    assert!(shadowed > 0 && overlap > 0 && never > 0);
}

/// Past `MAX_OVERLAPS`, overlaps are counted, not listed: the indexed
/// analysis stops listing at the same pair as the pairwise one. (The random
/// policies above have too few rules to get there.)
#[test]
fn overlaps_past_the_listing_limit_are_counted_alike() {
    let mut text = String::from("[policy]\nversion = 1\n");
    for i in 0..12 {
        text.push_str(&format!(
            "[[rule]]\nid = \"deny-{i}\"\neffect = \"deny\"\naction = [\"pay.send\", \"pay.r*\"]\nregion = \"R{i}\"\n"
        ));
        text.push_str(&format!(
            "[[rule]]\nid = \"allow-{i}\"\neffect = \"allow\"\naction = \"pay*\"\nprincipal = \"p{i}\"\n"
        ));
    }
    let policy = Policy::from_sources(&[("many.toml", &text)]).unwrap();
    let (findings, unlisted) = analyze_pairwise(policy.rules());
    assert_eq!(policy.findings(), &findings[..]);
    // Every deny overlaps every allow: 144, of which 100 listed.
    assert_eq!(unlisted, 144 - warrant_policy::analyze::MAX_OVERLAPS);
    assert_eq!(policy.unlisted_overlaps(), unlisted);
}
