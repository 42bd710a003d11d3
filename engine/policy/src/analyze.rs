//! Compile-time analysis: rules that can never match, rules fully shadowed
//! by an earlier rule, and allow/deny overlaps.
//!
//! Dimensions are independent (a request picks each field freely), so a
//! rule can never match exactly when one of its dimensions accepts nothing,
//! and rule A covers rule B exactly when A accepts, on every dimension,
//! everything B accepts. Shadowing is reported pairwise: a rule covered
//! only by the union of several earlier rules is not reported.

use std::collections::BTreeMap;

use crate::spec::{AttrCond, Effect, RuleSpec, StrMatch};

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

/// The rules that can never match, as findings and by rule index.
fn never_matching(rules: &[RuleSpec]) -> (Vec<Finding>, Vec<bool>) {
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
    (findings, dead)
}

/// Rule indexes in priority order: denies (file order), then allows (file
/// order); and how many denies lead it.
fn priority_order(rules: &[RuleSpec]) -> (Vec<usize>, usize) {
    let of = |effect| {
        (0..rules.len()).filter(move |&i| rules.get(i).is_some_and(|r| r.effect == effect))
    };
    let prio: Vec<usize> = of(Effect::Deny).chain(of(Effect::Allow)).collect();
    let denies = of(Effect::Deny).count();
    (prio, denies)
}

/// Most overlap findings reported (the count of the rest is summarized).
pub const MAX_OVERLAPS: usize = 100;

/// Analyses rules in file order. Returns the findings and the number of
/// overlaps not listed beyond [`MAX_OVERLAPS`].
///
/// The findings are those of testing every pair with [`covers`] and
/// [`intersects`] ([`analyze_pairwise`]), but only pairs that could pass
/// are tested: both predicates need the two rules' string matchers to
/// intersect on each of the five string dimensions (for `covers`, because
/// the covered rule is alive and so accepts some string on each), and
/// per-dimension indexes ([`StrIndex`]) give those pairs directly. Rules
/// that differ by the strings they name are then analysed far faster (the
/// policy bench's 20,000 rules: 0.10 s, against 26 s pairwise;
/// `cargo run --release -p warrant-bench --example policy_load`); rules
/// that name no string still test every pair, as fast as pairwise.
pub fn analyze(rules: &[RuleSpec]) -> (Vec<Finding>, usize) {
    let (mut findings, dead) = never_matching(rules);
    let (prio, denies) = priority_order(rules);
    let in_prio: Vec<&RuleSpec> = prio.iter().filter_map(|&i| rules.get(i)).collect();
    let index = Candidates::new(&in_prio);
    let mut seen = Bits::new(prio.len());
    let mut shadowed = vec![false; rules.len()];
    for (p, &j) in prio.iter().enumerate() {
        let (Some(rj), false) = (rules.get(j), dead.get(j).copied().unwrap_or(true)) else {
            continue;
        };
        // The first earlier rule in priority order that covers it.
        let by = index
            .of(rj, &mut seen)
            .take_while(|&q| q < p)
            .filter_map(|q| prio.get(q).copied())
            .filter(|i| !dead.get(*i).copied().unwrap_or(true))
            .find(|&i| rules.get(i).is_some_and(|ri| covers(ri, rj)));
        if let Some(i) = by {
            findings.push(Finding::Shadowed { rule: j, by: i });
            if let Some(s) = shadowed.get_mut(j) {
                *s = true;
            }
        }
    }
    let mut overlaps = 0usize;
    for (d, rd) in rules
        .iter()
        .enumerate()
        .filter(|(_, r)| r.effect == Effect::Deny)
    {
        // Allows sit after the denies in priority order, in file order.
        for a in index
            .of(rd, &mut seen)
            .skip_while(|&q| q < denies)
            .filter_map(|q| prio.get(q).copied())
        {
            let Some(ra) = rules.get(a) else { continue };
            let gone =
                dead.get(a).copied().unwrap_or(true) || shadowed.get(a).copied().unwrap_or(true);
            if gone || !intersects(rd, ra) {
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

/// [`analyze`] by its definition: every pair of rules tested. Quadratic
/// in the rules; kept as the reference the property test
/// (`tests/tests/policy_props.rs`) and the `policy_load` bench compare
/// [`analyze`] against.
pub fn analyze_pairwise(rules: &[RuleSpec]) -> (Vec<Finding>, usize) {
    let (mut findings, dead) = never_matching(rules);
    let alive = |i: &usize| !dead.get(*i).copied().unwrap_or(true);
    let (prio, denies) = priority_order(rules);
    let (deny_rules, allow_rules) = prio.split_at(denies.min(prio.len()));
    let mut shadowed = vec![false; rules.len()];
    for (p, &j) in prio.iter().enumerate() {
        let Some(rj) = rules.get(j).filter(|_| alive(&j)) else {
            continue;
        };
        let earlier = prio.get(..p).unwrap_or_default();
        if let Some(&i) = earlier
            .iter()
            .filter(|i| alive(i))
            .find(|&&i| rules.get(i).is_some_and(|ri| covers(ri, rj)))
        {
            findings.push(Finding::Shadowed { rule: j, by: i });
            if let Some(s) = shadowed.get_mut(j) {
                *s = true;
            }
        }
    }
    let mut overlaps = 0usize;
    for &d in deny_rules {
        for &a in allow_rules {
            let (Some(rd), Some(ra)) = (rules.get(d), rules.get(a)) else {
                continue;
            };
            if !alive(&a) || shadowed.get(a).copied().unwrap_or(true) || !intersects(rd, ra) {
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

/// A set of rule positions.
struct Bits {
    words: Vec<u64>,
}

impl Bits {
    fn new(len: usize) -> Bits {
        Bits {
            words: vec![0; len.div_ceil(64)],
        }
    }

    fn clear(&mut self) {
        self.words.fill(0);
    }

    fn set(&mut self, pos: usize) {
        if let Some(w) = self.words.get_mut(pos / 64) {
            *w |= 1 << (pos % 64);
        }
    }

    /// Positions in the set, ascending.
    fn ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(i * 64 + bit)
            })
        })
    }
}

/// The rules (by position) whose matcher on one string dimension
/// intersects a given matcher, found through the strings they name.
struct StrIndex<'a> {
    any: Vec<usize>,
    exact: BTreeMap<&'a str, Vec<usize>>,
    prefixes: BTreeMap<&'a str, Vec<usize>>,
}

impl<'a> StrIndex<'a> {
    fn new(matchers: impl Iterator<Item = &'a StrMatch>) -> StrIndex<'a> {
        let mut index = StrIndex {
            any: Vec::new(),
            exact: BTreeMap::new(),
            prefixes: BTreeMap::new(),
        };
        for (pos, m) in matchers.enumerate() {
            if m.any {
                index.any.push(pos);
                continue;
            }
            for e in &m.exact {
                index.exact.entry(e.as_str()).or_default().push(pos);
            }
            for p in &m.prefixes {
                index.prefixes.entry(p.as_str()).or_default().push(pos);
            }
        }
        index
    }

    /// Calls `f` with lists of positions (they may overlap) whose union is
    /// every position whose matcher intersects `m`
    /// ([`StrMatch::intersects`]), for an `m` that does not accept every
    /// string.
    fn lists(&self, m: &StrMatch, mut f: impl FnMut(&[usize])) {
        if m.is_empty() {
            return;
        }
        f(&self.any);
        // Strings `m` names exactly: the same value, or a prefix of it
        // (the empty one to the whole value).
        for e in &m.exact {
            if let Some(ps) = self.exact.get(e.as_str()) {
                f(ps);
            }
            for (cut, _) in e.char_indices().chain(std::iter::once((e.len(), ' '))) {
                if let Some(ps) = e.get(..cut).and_then(|pre| self.prefixes.get(pre)) {
                    f(ps);
                }
            }
        }
        // Strings under a prefix of `m`: values and prefixes that start
        // with it, and shorter prefixes it starts with.
        for q in &m.prefixes {
            let q = q.as_str();
            for map in [&self.exact, &self.prefixes] {
                for (_, ps) in map.range(q..).take_while(|(k, _)| k.starts_with(q)) {
                    f(ps);
                }
            }
            for (cut, _) in q.char_indices() {
                if let Some(ps) = q.get(..cut).and_then(|pre| self.prefixes.get(pre)) {
                    f(ps);
                }
            }
        }
    }
}

/// Per string dimension, a [`StrIndex`] of the rules in priority order.
struct Candidates<'a> {
    rules: &'a [&'a RuleSpec],
    dims: [StrIndex<'a>; 5],
}

fn string_dims(r: &RuleSpec) -> [&StrMatch; 5] {
    [
        &r.principal,
        &r.action,
        &r.resource,
        &r.environment,
        &r.region,
    ]
}

impl<'a> Candidates<'a> {
    fn new(rules: &'a [&'a RuleSpec]) -> Candidates<'a> {
        Candidates {
            rules,
            dims: [0, 1, 2, 3, 4].map(|d| {
                StrIndex::new(
                    rules
                        .iter()
                        .filter_map(move |r| string_dims(r).get(d).copied()),
                )
            }),
        }
    }

    /// The positions, ascending, of the rules that intersect `r` on every
    /// string dimension: every rule [`covers`] or [`intersects`] can
    /// accept against `r`. Found through the index of the dimension where
    /// `r` names the fewest rules, then checked on the others `r` limits.
    fn of<'s>(
        &'s self,
        r: &'s RuleSpec,
        seen: &'s mut Bits,
    ) -> Box<dyn Iterator<Item = usize> + 's> {
        let mine = string_dims(r);
        let size = |d: usize| -> usize {
            match (self.dims.get(d), mine.get(d)) {
                (Some(index), Some(m)) if !m.any => {
                    let mut n = 0;
                    index.lists(m, |ps| n += ps.len());
                    n
                }
                _ => usize::MAX,
            }
        };
        let best = (0..5).min_by_key(|&d| size(d)).unwrap_or(0);
        let (Some(index), Some(m)) = (self.dims.get(best), mine.get(best).filter(|m| !m.any))
        else {
            // `r` accepts any string on every dimension: every rule is a
            // candidate, as in the pairwise analysis.
            return Box::new(0..self.rules.len());
        };
        seen.clear();
        index.lists(m, |ps| ps.iter().for_each(|&p| seen.set(p)));
        Box::new(seen.ones().filter(move |&pos| {
            self.rules.get(pos).is_some_and(|other| {
                string_dims(other)
                    .iter()
                    .zip(mine)
                    .all(|(a, b)| b.any || a.intersects(b))
            })
        }))
    }
}
