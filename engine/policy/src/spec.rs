//! Normalized rules: what a rule matches, with groups and sets expanded.
//!
//! The parser ([`crate::syntax`]) turns policy text into [`RuleSpec`]s; the
//! compiler, the analysis and the reference evaluator all read these. The
//! matching primitives here (`StrMatch::accepts`, `AttrCond::holds`, ...)
//! are the *definition* of the semantics; the compiled tables must agree
//! with them, which the differential property test checks.

use std::collections::BTreeSet;

use warrant_schemas::AttrValue;

/// allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Effect {
    /// Explicit deny: beats every allow.
    Deny,
    /// Allow, unless a deny rule also matches.
    Allow,
}

/// Status of the key that signed an intent, as the trust store reports it.
/// (A revoked key never reaches policy: the engine denies it before.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyStatus {
    /// The principal's current key.
    Active = 0,
    /// An older key still accepted during a rotation overlap.
    Rotating = 1,
}

impl KeyStatus {
    /// Every status, in table order.
    pub const ALL: [KeyStatus; 2] = [KeyStatus::Active, KeyStatus::Rotating];

    /// The policy-file spelling.
    pub fn name(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Rotating => "rotating",
        }
    }
}

/// A string matcher: any string, or a set of exact values and prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StrMatch {
    /// Matches every string.
    pub any: bool,
    /// Exact values.
    pub exact: BTreeSet<String>,
    /// Prefixes (written `prefix*`); a value matches if it starts with one.
    pub prefixes: BTreeSet<String>,
}

impl StrMatch {
    /// The matcher that accepts everything (an omitted field).
    pub fn any() -> Self {
        StrMatch {
            any: true,
            ..StrMatch::default()
        }
    }

    /// Whether `s` matches.
    pub fn accepts(&self, s: &str) -> bool {
        self.any
            || self.exact.contains(s)
            || self.prefixes.iter().any(|p| s.starts_with(p.as_str()))
    }

    /// Whether no string matches.
    pub fn is_empty(&self) -> bool {
        !self.any && self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// Whether every string `other` accepts, `self` accepts too.
    pub fn covers(&self, other: &StrMatch) -> bool {
        if self.any {
            return true;
        }
        if other.any {
            return false;
        }
        other.exact.iter().all(|e| self.accepts(e))
            && other
                .prefixes
                .iter()
                .all(|p| self.prefixes.iter().any(|q| p.starts_with(q.as_str())))
    }

    /// Whether some string matches both.
    pub fn intersects(&self, other: &StrMatch) -> bool {
        if self.is_empty() || other.is_empty() {
            return false;
        }
        if self.any || other.any {
            return true;
        }
        self.exact.iter().any(|e| other.accepts(e))
            || other.exact.iter().any(|e| self.accepts(e))
            || self.prefixes.iter().any(|p| {
                other
                    .prefixes
                    .iter()
                    .any(|q| p.starts_with(q.as_str()) || q.starts_with(p.as_str()))
            })
    }
}

/// A condition on one typed attribute of the intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrCond {
    /// A string attribute matching this matcher.
    Str(StrMatch),
    /// An integer attribute in `min..=max`.
    Int {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// A boolean attribute equal to this.
    Bool(bool),
}

impl AttrCond {
    /// Whether a present attribute value satisfies the condition. A value
    /// of another type does not: the condition "cannot be evaluated".
    pub fn holds(&self, value: &AttrValue<'_>) -> bool {
        match (self, value) {
            (AttrCond::Str(m), AttrValue::Str(s)) => m.accepts(s),
            (AttrCond::Int { min, max }, AttrValue::Int(v)) => min <= v && v <= max,
            (AttrCond::Bool(b), AttrValue::Bool(v)) => b == v,
            _ => false,
        }
    }

    /// Whether no value satisfies it.
    pub fn is_empty(&self) -> bool {
        match self {
            AttrCond::Str(m) => m.is_empty(),
            AttrCond::Int { min, max } => min > max,
            AttrCond::Bool(_) => false,
        }
    }

    /// Whether every value satisfying `other` satisfies `self`.
    pub fn covers(&self, other: &AttrCond) -> bool {
        match (self, other) {
            (AttrCond::Str(a), AttrCond::Str(b)) => a.covers(b),
            (AttrCond::Int { min: a0, max: a1 }, AttrCond::Int { min: b0, max: b1 }) => {
                other.is_empty() || (a0 <= b0 && b1 <= a1)
            }
            (AttrCond::Bool(a), AttrCond::Bool(b)) => a == b,
            _ => other.is_empty(),
        }
    }

    /// Whether some value satisfies both.
    pub fn intersects(&self, other: &AttrCond) -> bool {
        match (self, other) {
            (AttrCond::Str(a), AttrCond::Str(b)) => a.intersects(b),
            (AttrCond::Int { min: a0, max: a1 }, AttrCond::Int { min: b0, max: b1 }) => {
                a0.max(b0) <= a1.min(b1)
            }
            (AttrCond::Bool(a), AttrCond::Bool(b)) => a == b,
            _ => false,
        }
    }
}

/// Minutes in a day: time windows are sets of UTC minutes `0..1440`.
pub const MINUTES: u16 = 1440;

/// A set of UTC minutes of the day, as half-open ranges `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    /// Sorted, non-overlapping, non-adjacent ranges within `0..1440`.
    pub ranges: Vec<(u16, u16)>,
}

impl TimeWindow {
    /// The whole day.
    pub fn all_day() -> Self {
        TimeWindow {
            ranges: vec![(0, MINUTES)],
        }
    }

    /// Builds a window from ranges, normalizing (sort, merge). Each range
    /// `(start, end)` with `start < end`; a wrap past midnight must already
    /// be split in two.
    pub fn from_ranges(mut ranges: Vec<(u16, u16)>) -> Self {
        ranges.retain(|(s, e)| s < e);
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        TimeWindow { ranges: merged }
    }

    /// Whether `minute` is inside.
    pub fn contains(&self, minute: u16) -> bool {
        self.ranges.iter().any(|(s, e)| *s <= minute && minute < *e)
    }

    /// Whether no minute is inside.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether every minute of `other` is inside `self`.
    pub fn covers(&self, other: &TimeWindow) -> bool {
        other
            .ranges
            .iter()
            .all(|(s, e)| self.ranges.iter().any(|(a, b)| a <= s && e <= b))
    }

    /// Whether some minute is in both.
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.ranges
            .iter()
            .any(|(a, b)| other.ranges.iter().any(|(s, e)| a.max(s) < b.min(e)))
    }
}

/// One rule, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// Stable rule id, unique in the policy.
    pub id: String,
    /// allow or deny.
    pub effect: Effect,
    /// Reason code a deny carries (free text, e.g. `sanctioned-region`).
    pub reason: Option<String>,
    /// Principal (groups expanded to their members).
    pub principal: StrMatch,
    /// Action / workload type.
    pub action: StrMatch,
    /// Resource / scope.
    pub resource: StrMatch,
    /// Environment.
    pub environment: StrMatch,
    /// Region (sets expanded).
    pub region: StrMatch,
    /// Accepted key statuses, indexed by `KeyStatus as usize`.
    pub key_status: [bool; 2],
    /// UTC time-of-day window.
    pub time: TimeWindow,
    /// Attribute conditions, sorted by attribute key.
    pub attrs: Vec<(String, AttrCond)>,
    /// Longest validity an allow grants, µs; a longer request is cut to it.
    pub max_validity_us: Option<u64>,
    /// Where the rule is written.
    pub origin: Origin,
}

/// Where a rule is written: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// File path as given to the loader.
    pub file: String,
    /// 1-based line of the rule's `[[rule]]` header.
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

impl RuleSpec {
    /// Whether the rule matches when an attribute it conditions on is
    /// missing or of another type: a deny rule does (a rule that cannot be
    /// evaluated must never let a request through), an allow rule does not
    /// (it never allows what it cannot evaluate).
    pub fn matches_unevaluable(&self) -> bool {
        self.effect == Effect::Deny
    }

    /// Whether the rule matches `attrs` (the request's typed attributes).
    pub fn attrs_match(&self, attrs: &[warrant_schemas::Attr<'_>]) -> bool {
        self.attrs.iter().all(
            |(key, cond)| match attrs.iter().find(|a| a.key == key.as_str()) {
                Some(attr) => match (cond, &attr.value) {
                    (AttrCond::Str(_), AttrValue::Str(_))
                    | (AttrCond::Int { .. }, AttrValue::Int(_))
                    | (AttrCond::Bool(_), AttrValue::Bool(_)) => cond.holds(&attr.value),
                    _ => self.matches_unevaluable(),
                },
                None => self.matches_unevaluable(),
            },
        )
    }
}
