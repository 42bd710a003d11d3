//! The reference evaluator: a plain loop over the rules, written for
//! clarity, not speed. It is the oracle the compiled tables are tested
//! against (`tests/policy_props.rs`), so it states the semantics directly:
//!
//! 1. a rule matches a request when every field matches (an omitted field
//!    matches anything) and every attribute condition matches; a condition
//!    that cannot be evaluated (attribute missing or of another type)
//!    counts as matched for a deny rule and as not matched for an allow rule;
//! 2. if any deny rule matches, the first such deny (in file order) decides;
//! 3. otherwise, if any allow rule matches, the first such allow decides;
//! 4. otherwise the request is denied: no rule matched.

use crate::spec::{Effect, RuleSpec};
use crate::{Outcome, Request};

/// Whether `rule` matches `request`.
pub fn rule_matches(rule: &RuleSpec, request: &Request<'_>) -> bool {
    rule.principal.accepts(request.principal)
        && rule.action.accepts(request.action)
        && rule.resource.accepts(request.resource)
        && rule.environment.accepts(request.environment)
        && rule.region.accepts(request.region)
        && rule
            .key_status
            .get(request.key_status as usize)
            .copied()
            .unwrap_or(false)
        && rule
            .time
            .contains(request.minute_of_day % crate::spec::MINUTES)
        && rule.attrs_match(request.attributes)
}

/// Evaluates `rules` (in file order) for `request`.
pub fn evaluate(rules: &[RuleSpec], request: &Request<'_>) -> Outcome {
    let deciding = rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.effect == Effect::Deny && rule_matches(r, request))
        .or_else(|| {
            rules
                .iter()
                .enumerate()
                .find(|(_, r)| r.effect == Effect::Allow && rule_matches(r, request))
        });
    match deciding {
        Some((index, rule)) => Outcome {
            effect: rule.effect,
            rule: Some(index),
        },
        None => Outcome {
            effect: Effect::Deny,
            rule: None,
        },
    }
}
