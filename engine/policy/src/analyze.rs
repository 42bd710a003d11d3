//! Compile-time analysis: rules that can never match, rules fully shadowed
//! by an earlier rule, and allow/deny overlaps.
//!
//! Dimensions are independent (a request picks each field freely), so a
//! rule can never match exactly when one of its dimensions accepts nothing,
//! and rule A covers rule B exactly when A accepts, on every dimension,
//! everything B accepts. Shadowing is reported pairwise: a rule covered
//! only by the union of several earlier rules is not reported.

use crate::spec::{AttrCond, Effect, RuleSpec};

/// One analysis finding. Findings are warnings: the policy still loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The rule accepts no request.
    NeverMatches {
        /// Rule index (file order).
        rule: usize,
        /// Which dimension accepts nothing.
        why: String,
    },
    /// Every request the rule matches is decided by an earlier rule.
    Shadowed {
        /// The shadowed rule.
        rule: usize,
        /// The rule that decides its requests instead.
        by: usize,
    },
    /// Some requests match both a deny and an allow: the deny wins there.
    Overlap {
        /// The deny rule.
        deny: usize,
        /// The allow rule it overrides for those requests.
        allow: usize,
    },
}

impl Finding {
    /// A one-line description naming rules by id and place.
    pub fn describe(&self, rules: &[RuleSpec]) -> String {
        let name = |i: &usize| {
            rules
                .get(*i)
                .map_or_else(|| format!("#{i}"), |r| format!("`{}` ({})", r.id, r.origin))
        };
        match self {
            Finding::NeverMatches { rule, why } => {
                format!("rule {} can never match: {why}", name(rule))
            }
            Finding::Shadowed { rule, by } => {
                format!(
                    "rule {} is shadowed by rule {}: it never decides anything",
                    name(rule),
                    name(by)
                )
            }
            Finding::Overlap { deny, allow } => {
                format!(
                    "deny rule {} overrides allow rule {} for some requests",
                    name(deny),
                    name(allow)
                )
            }
        }
    }
}

/// Why the rule accepts no request, if it accepts none.
fn never_matches(r: &RuleSpec) -> Option<String> {
    for (name, m) in [
        ("principal", &r.principal),
        ("action", &r.action),
        ("resource", &r.resource),
        ("environment", &r.environment),
        ("region", &r.region),
    ] {
        if m.is_empty() {
            return Some(format!(
                "`{name}` accepts no value (an empty group or set?)"
            ));
        }
    }
    if !r.key_status.iter().any(|k| *k) {
        return Some("`key_status` accepts no status".into());
    }
    if r.time.is_empty() {
        return Some("`time` is empty".into());
    }
    for (key, cond) in &r.attrs {
        // A deny also matches a missing attribute, so only an allow's empty
        // condition makes the rule unmatchable.
        if cond.is_empty() && r.effect == Effect::Allow {
            return Some(format!(
                "condition on `{key}` accepts no value (min > max?)"
            ));
        }
    }
    None
}

/// Whether `a` matches every request `b` matches.
pub fn covers(a: &RuleSpec, b: &RuleSpec) -> bool {
    if !(a.principal.covers(&b.principal)
        && a.action.covers(&b.action)
        && a.resource.covers(&b.resource)
        && a.environment.covers(&b.environment)
        && a.region.covers(&b.region)
        && a.key_status
            .iter()
            .zip(&b.key_status)
            .all(|(x, y)| *x || !*y)
        && a.time.covers(&b.time))
    {
        return false;
    }
    // Attributes, key by key: every state of the attribute (missing, or a
    // value of some type) that `b` accepts, `a` must accept. Keys `a` has no
    // condition on accept every state. Where exactness would need "every
    // value of a type" reasoning, this answers false: a missed report, never
    // a wrong one.
    a.attrs.iter().all(|(key, ca)| {
        let a_deny = a.matches_unevaluable();
        match b.attrs.iter().find(|(k, _)| k == key).map(|(_, c)| c) {
            None => false,
            Some(cb) if b.matches_unevaluable() => a_deny && same_type(ca, cb) && ca.covers(cb),
            Some(cb) if same_type(ca, cb) => ca.covers(cb),
            Some(cb) => a_deny || cb.is_empty(),
        }
    })
}

fn same_type(a: &AttrCond, b: &AttrCond) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Whether some request matches both rules.
pub fn intersects(a: &RuleSpec, b: &RuleSpec) -> bool {
    if !(a.principal.intersects(&b.principal)
        && a.action.intersects(&b.action)
        && a.resource.intersects(&b.resource)
        && a.environment.intersects(&b.environment)
        && a.region.intersects(&b.region)
        && a.key_status
            .iter()
            .zip(&b.key_status)
            .any(|(x, y)| *x && *y)
        && a.time.intersects(&b.time))
    {
        return false;
    }
    // Per attribute key: some state (missing, or a value) both accept.
    let keys = a.attrs.iter().chain(&b.attrs).map(|(k, _)| k);
    keys.into_iter().all(|key| {
        let ca = a.attrs.iter().find(|(k, _)| k == key).map(|(_, c)| c);
        let cb = b.attrs.iter().find(|(k, _)| k == key).map(|(_, c)| c);
        let (a_deny, b_deny) = (a.matches_unevaluable(), b.matches_unevaluable());
        let missing_both = (ca.is_none() || a_deny) && (cb.is_none() || b_deny);
        missing_both
            || match (ca, cb) {
                (Some(x), Some(y)) if same_type(x, y) => x.intersects(y),
                (Some(x), Some(y)) => (a_deny && !y.is_empty()) || (b_deny && !x.is_empty()),
                (Some(x), None) => !x.is_empty(),
                (None, Some(y)) => !y.is_empty(),
                (None, None) => true,
            }
    })
}

/// Most overlap findings reported (the count of the rest is summarized).
pub const MAX_OVERLAPS: usize = 100;

/// Analyses rules in file order. Returns the findings and the number of
/// overlaps not listed beyond [`MAX_OVERLAPS`].
pub fn analyze(rules: &[RuleSpec]) -> (Vec<Finding>, usize) {
    let mut findings = Vec::new();
    let mut dead = vec![false; rules.len()];
    for (i, r) in rules.iter().enumerate() {
        if let Some(why) = never_matches(r) {
            findings.push(Finding::NeverMatches { rule: i, why });
            if let Some(d) = dead.get_mut(i) {
                *d = true;
            }
        }
    }
    // Priority order: denies (file order), then allows (file order).
    let prio: Vec<usize> = (0..rules.len())
        .filter(|&i| rules.get(i).is_some_and(|r| r.effect == Effect::Deny))
        .chain(
            (0..rules.len()).filter(|&i| rules.get(i).is_some_and(|r| r.effect == Effect::Allow)),
        )
        .collect();
    for (p, &j) in prio.iter().enumerate() {
        let (Some(rj), false) = (rules.get(j), dead.get(j).copied().unwrap_or(true)) else {
            continue;
        };
        let earlier = prio.iter().take(p).copied();
        if let Some(i) = earlier
            .filter(|i| !dead.get(*i).copied().unwrap_or(true))
            .find(|&i| rules.get(i).is_some_and(|ri| covers(ri, rj)))
        {
            findings.push(Finding::Shadowed { rule: j, by: i });
        }
    }
    let mut overlaps = 0usize;
    let shadowed: Vec<usize> = findings
        .iter()
        .filter_map(|f| {
            if let Finding::Shadowed { rule, .. } = f {
                Some(*rule)
            } else {
                None
            }
        })
        .collect();
    for (d, rd) in rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.effect == Effect::Deny)
    {
        for (a, ra) in rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.effect == Effect::Allow)
        {
            if dead.get(a).copied().unwrap_or(true) || shadowed.contains(&a) || !intersects(rd, ra)
            {
                continue;
            }
            overlaps += 1;
            if overlaps <= MAX_OVERLAPS {
                findings.push(Finding::Overlap { deny: d, allow: a });
            }
        }
    }
    (findings, overlaps.saturating_sub(MAX_OVERLAPS))
}
