//! The policy file format (TOML) and its translation into [`RuleSpec`]s.
//!
//! ```toml
//! [policy]
//! name = "payments"
//! version = 3                     # bump on every change; decisions carry it
//!
//! [groups]                        # principal groups: `group:NAME`
//! treasury = ["svc-treasury", "svc-payouts"]
//!
//! [sets]                          # value sets for any string field: `set:NAME`
//! eu = ["AT", "BE", "DE", "FR"]
//!
//! [[rule]]
//! id = "deny-sanctioned"          # stable, unique
//! effect = "deny"
//! reason = "sanctioned-region"
//! region = ["KP", "IR"]
//!
//! [[rule]]
//! id = "allow-eu-treasury"
//! effect = "allow"
//! principal = ["group:treasury", "svc-pay*"]   # exact, prefix*, group:NAME, "*"
//! action = "payments.*"
//! environment = "prod"
//! region = "set:eu"
//! key_status = "active"           # active | rotating
//! time = "06:00-22:00"            # UTC, end exclusive; may wrap midnight
//! max_validity = "5m"             # longer requested validity is cut to this
//! when = { currency = "EUR", amount = { max = 1000000 } }
//! ```
//!
//! Every match field takes a string or a list of strings; an omitted field
//! matches anything. `when` maps attribute keys to a string matcher, an
//! integer range `{ min, max }` (inclusive, either optional) or a boolean.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::error::PolicyError;
use crate::spec::{AttrCond, Effect, KeyStatus, MINUTES, Origin, RuleSpec, StrMatch, TimeWindow};

/// Reserved prefix naming a principal group.
const GROUP: &str = "group:";
/// Reserved prefix naming a value set.
const SET: &str = "set:";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    policy: Option<HeaderDef>,
    #[serde(default)]
    groups: BTreeMap<String, toml::Spanned<Vec<String>>>,
    #[serde(default)]
    sets: BTreeMap<String, toml::Spanned<Vec<String>>>,
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderDef {
    name: Option<String>,
    version: toml::Spanned<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a string or a list of strings")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a condition: `true`/`false`, a string or list of strings, or a range `{ min = N, max = N }`"
)]
enum CondDef {
    Bool(bool),
    Range(RangeDef),
    Str(OneOrMany),
    /// Refused when compiled, with a message: a list of integers has no
    /// meaning here (and must never be read as a range).
    Ints(Vec<i64>),
}

#[derive(Debug)]
struct RangeDef {
    min: Option<i64>,
    max: Option<i64>,
}

impl<'de> Deserialize<'de> for RangeDef {
    /// A table only. A derived struct would also take a sequence, so
    /// `tier = [1, 5]` (meant as "1 or 5", like a list of strings) would
    /// silently become the range 1..=5 and allow tier 3.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fields = BTreeMap::<String, i64>::deserialize(d)?;
        let mut range = RangeDef {
            min: None,
            max: None,
        };
        for (key, value) in fields {
            match key.as_str() {
                "min" => range.min = Some(value),
                "max" => range.max = Some(value),
                other => return Err(serde::de::Error::unknown_field(other, &["min", "max"])),
            }
        }
        Ok(range)
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a duration: whole seconds (`300`) or text (`\"5m\"`, `\"1h\"`)"
)]
enum DurationDef {
    Seconds(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    id: String,
    effect: String,
    reason: Option<String>,
    principal: Option<OneOrMany>,
    action: Option<OneOrMany>,
    resource: Option<OneOrMany>,
    environment: Option<OneOrMany>,
    region: Option<OneOrMany>,
    key_status: Option<OneOrMany>,
    time: Option<OneOrMany>,
    max_validity: Option<DurationDef>,
    #[serde(default)]
    when: BTreeMap<String, CondDef>,
}

/// One parsed source file.
pub(crate) struct ParsedFile {
    pub name: Option<String>,
    pub version: Option<(u64, usize)>,
    pub groups: BTreeMap<String, (Vec<String>, usize)>,
    pub sets: BTreeMap<String, (Vec<String>, usize)>,
    pub rules: Vec<(RuleDefOpaque, Origin)>,
}

/// A rule as written, kept opaque outside this module.
pub(crate) struct RuleDefOpaque(RuleDef);

/// Line numbers of byte offsets in one text: the newlines are found once,
/// so naming the line of every rule in a file of `n` rules costs
/// `O(len + n log len)`, not `O(n × len)` (a 10,000-rule file would
/// otherwise scan its megabytes ten thousand times).
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Lines(
            text.bytes()
                .enumerate()
                .filter_map(|(i, b)| (b == b'\n').then_some(i))
                .collect(),
        )
    }

    /// The 1-based line holding byte `offset` (the newlines before it, plus
    /// one).
    fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&newline| newline < offset) + 1
    }
}

/// The key whose value starts at `offset`, if the text before it on its
/// line reads `key =` (`principal = 5`, or `amount = ` inside an inline
/// table): named in a type error, which the TOML reader reports without it.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let line = before.rsplit('\n').next()?;
    let (lhs, value) = line.rsplit_once('=')?;
    if !value.trim().is_empty() {
        return None;
    }
    let key = lhs.rsplit(['{', ',']).next()?.trim().trim_matches('"');
    (!key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
    .then_some(key)
}

/// Parses one file's text.
pub(crate) fn parse_file(file: &str, text: &str) -> Result<ParsedFile, PolicyError> {
    let lines = Lines::new(text);
    let line_of = |offset: usize| lines.of(offset);
    let def: FileDef = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(s.start));
        let message = e.message().trim_end_matches('\n');
        let message = match e.span().and_then(|s| key_before(text, s.start)) {
            Some(key) if !message.contains(&format!("`{key}`")) => format!("`{key}`: {message}"),
            _ => message.to_owned(),
        };
        PolicyError::at(file, line, None, message)
    })?;
    let version = def
        .policy
        .as_ref()
        .map(|h| (*h.version.get_ref(), line_of(h.version.span().start)));
    let spanned = |defs: BTreeMap<String, toml::Spanned<Vec<String>>>| -> BTreeMap<String, (Vec<String>, usize)> {
        defs.into_iter()
            .map(|(k, v)| {
                let line = line_of(v.span().start);
                (k, (v.into_inner(), line))
            })
            .collect()
    };
    let groups = spanned(def.groups);
    let sets = spanned(def.sets);
    let rules = def
        .rule
        .into_iter()
        .map(|spanned| {
            // The span starts at the rule's `[[rule]]` header.
            let line = line_of(spanned.span().start);
            (
                RuleDefOpaque(spanned.into_inner()),
                Origin {
                    file: file.to_owned(),
                    line,
                },
            )
        })
        .collect();
    Ok(ParsedFile {
        name: def.policy.and_then(|h| h.name),
        version,
        groups,
        sets,
        rules,
    })
}

/// Names and values shared by every rule of the policy.
pub(crate) struct Context<'a> {
    pub groups: &'a BTreeMap<String, Vec<String>>,
    pub sets: &'a BTreeMap<String, Vec<String>>,
}

/// A duration written `90s`, `5m`, `2h`, `1d` (or bare seconds), in µs.
/// Shared by policy files (`max_validity`) and request files.
pub(crate) fn duration_text_us(t: &str) -> Result<u64, String> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration `{t}` (e.g. `90s`, `5m`, `2h`, `1d`)"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("bad duration unit in `{t}` (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .and_then(|secs| secs.checked_mul(1_000_000))
        .ok_or_else(|| format!("duration `{t}` is too long"))
}

fn parse_duration(d: &DurationDef) -> Result<u64, String> {
    let us = match d {
        DurationDef::Seconds(s) => s.checked_mul(1_000_000).ok_or("max_validity is too long")?,
        DurationDef::Text(t) => duration_text_us(t)?,
    };
    if us == 0 {
        return Err("max_validity must be longer than zero".into());
    }
    Ok(us)
}

/// `HH:MM` (UTC) as minutes since midnight, `00:00` to `24:00` inclusive
/// (24:00 ends a window).
pub(crate) fn parse_minute(t: &str) -> Result<u16, String> {
    let (h, m) = t
        .split_once(':')
        .ok_or_else(|| format!("bad time `{t}` (use HH:MM)"))?;
    let h: u16 = h.trim().parse().map_err(|_| format!("bad hour in `{t}`"))?;
    let m: u16 = m
        .trim()
        .parse()
        .map_err(|_| format!("bad minute in `{t}`"))?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("time `{t}` is out of range (00:00 to 24:00)"));
    }
    Ok(h * 60 + m)
}

fn parse_window(items: &[String]) -> Result<TimeWindow, String> {
    let mut ranges = Vec::new();
    for item in items {
        let (a, b) = item
            .split_once('-')
            .ok_or_else(|| format!("bad time window `{item}` (use HH:MM-HH:MM, UTC)"))?;
        let (start, end) = (parse_minute(a)?, parse_minute(b)?);
        match start.cmp(&end) {
            std::cmp::Ordering::Less => ranges.push((start, end)),
            // A window that wraps past midnight: two ranges.
            std::cmp::Ordering::Greater => {
                ranges.push((start, MINUTES));
                ranges.push((0, end));
            }
            std::cmp::Ordering::Equal => {
                return Err(format!("time window `{item}` is empty (start equals end)"));
            }
        }
    }
    Ok(TimeWindow::from_ranges(ranges))
}

impl Context<'_> {
    fn str_match(
        &self,
        field: &str,
        items: Vec<String>,
        allow_groups: bool,
    ) -> Result<StrMatch, String> {
        if items.is_empty() {
            return Err(format!(
                "`{field}` is an empty list (omit the field to match anything)"
            ));
        }
        let mut m = StrMatch::default();
        for item in items {
            self.add_pattern(field, &item, allow_groups, &mut m)?;
        }
        Ok(m)
    }

    fn add_pattern(
        &self,
        field: &str,
        item: &str,
        allow_groups: bool,
        m: &mut StrMatch,
    ) -> Result<(), String> {
        if let Some(name) = item.strip_prefix(GROUP) {
            if !allow_groups {
                return Err(format!(
                    "`{item}` in `{field}`: groups apply to `principal` only"
                ));
            }
            let members = self
                .groups
                .get(name)
                .ok_or_else(|| format!("unknown group `{name}` in `{field}`"))?;
            for member in members {
                add_plain(field, member, m)?;
            }
            return Ok(());
        }
        if let Some(name) = item.strip_prefix(SET) {
            let members = self
                .sets
                .get(name)
                .ok_or_else(|| format!("unknown set `{name}` in `{field}`"))?;
            for member in members {
                add_plain(field, member, m)?;
            }
            return Ok(());
        }
        add_plain(field, item, m)
    }

    /// Translates a parsed rule.
    pub(crate) fn rule(&self, def: RuleDefOpaque, origin: Origin) -> Result<RuleSpec, PolicyError> {
        let def = def.0;
        let id = def.id.clone();
        let fail = |message: String| PolicyError::at(&origin.file, origin.line, Some(&id), message);
        if def.id.is_empty()
            || !def
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(fail(format!(
                "rule id `{}` must be non-empty ASCII letters, digits, `-`, `_`, `.` or `:`",
                def.id
            )));
        }
        if def.id == "none" {
            // `warrant policy test` and `explain` name no rule so.
            return Err(fail(
                "rule id `none` is reserved: it means no rule matched".into(),
            ));
        }
        // Decisions carry the rule id; executors' readers refuse longer strings.
        let max = warrant_schemas::Limits::default().max_string_bytes;
        if def.id.len() > max {
            return Err(fail(format!(
                "rule id is {} bytes long, over the limit of {max}",
                def.id.len()
            )));
        }
        let effect = match def.effect.as_str() {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => {
                return Err(fail(format!(
                    "effect `{other}` is neither `allow` nor `deny`"
                )));
            }
        };
        if effect == Effect::Allow && def.reason.is_some() {
            return Err(fail(
                "`reason` is for deny rules (an allow carries reason `authorized`)".into(),
            ));
        }
        let field =
            |name: &str, v: Option<OneOrMany>, groups: bool| -> Result<StrMatch, PolicyError> {
                match v {
                    None => Ok(StrMatch::any()),
                    Some(v) => self.str_match(name, v.into_vec(), groups).map_err(&fail),
                }
            };
        let principal = field("principal", def.principal, true)?;
        let action = field("action", def.action, false)?;
        let resource = field("resource", def.resource, false)?;
        let environment = field("environment", def.environment, false)?;
        let region = field("region", def.region, false)?;
        let key_status = match def.key_status {
            None => [true, true],
            Some(v) => {
                let mut ks = [false, false];
                let v = v.into_vec();
                if v.is_empty() {
                    return Err(fail("`key_status` is an empty list".into()));
                }
                for s in v {
                    let status = KeyStatus::ALL
                        .into_iter()
                        .find(|k| k.name() == s)
                        .ok_or_else(|| {
                            fail(format!(
                                "key_status `{s}` is neither `active` nor `rotating`"
                            ))
                        })?;
                    if let Some(slot) = ks.get_mut(status as usize) {
                        *slot = true;
                    }
                }
                ks
            }
        };
        let time = match def.time {
            None => TimeWindow::all_day(),
            Some(v) => {
                let v = v.into_vec();
                if v.is_empty() {
                    return Err(fail("`time` is an empty list".into()));
                }
                parse_window(&v).map_err(&fail)?
            }
        };
        if effect == Effect::Deny && def.max_validity.is_some() {
            return Err(fail("`max_validity` is for allow rules".into()));
        }
        let max_validity_us = def
            .max_validity
            .as_ref()
            .map(parse_duration)
            .transpose()
            .map_err(&fail)?;
        let mut attrs = Vec::with_capacity(def.when.len());
        for (key, cond) in def.when {
            let cond = match cond {
                CondDef::Bool(b) => AttrCond::Bool(b),
                CondDef::Range(r) => {
                    if r.min.is_none() && r.max.is_none() {
                        return Err(fail(format!("range on `{key}` needs `min`, `max` or both")));
                    }
                    AttrCond::Int {
                        min: r.min.unwrap_or(i64::MIN),
                        max: r.max.unwrap_or(i64::MAX),
                    }
                }
                CondDef::Str(v) => {
                    AttrCond::Str(self.str_match(&key, v.into_vec(), false).map_err(&fail)?)
                }
                CondDef::Ints(v) => {
                    return Err(fail(format!(
                        "`{key}` = {v:?}: a list of integers is not a condition; \
                         write a range `{{ min = .., max = .. }}` or one rule per value"
                    )));
                }
            };
            attrs.push((key, cond));
        }
        Ok(RuleSpec {
            id: def.id,
            effect,
            reason: def.reason,
            principal,
            action,
            resource,
            environment,
            region,
            key_status,
            time,
            attrs,
            max_validity_us,
            origin,
        })
    }
}

fn add_plain(field: &str, item: &str, m: &mut StrMatch) -> Result<(), String> {
    // Requests carry strings of at most this many bytes (the reader refuses
    // longer ones): a longer pattern could never match, and compiling one
    // costs time quadratic in its length.
    let max = warrant_schemas::Limits::default().max_string_bytes;
    if item.strip_suffix('*').unwrap_or(item).len() > max {
        let start: String = item.chars().take(24).collect();
        return Err(format!(
            "`{start}…` in `{field}` is {} bytes long, over the {max} bytes a request's \
             strings may have: it could never match",
            item.len()
        ));
    }
    if item == "*" {
        m.any = true;
    } else if let Some(prefix) = item.strip_suffix('*') {
        if prefix.contains('*') {
            return Err(format!("`{item}` in `{field}`: `*` may only end a pattern"));
        }
        m.prefixes.insert(prefix.to_owned());
    } else if item.contains('*') {
        return Err(format!("`{item}` in `{field}`: `*` may only end a pattern"));
    } else {
        m.exact.insert(item.to_owned());
    }
    Ok(())
}

/// Checks group and set definitions: names and members.
pub(crate) fn check_names(
    file: &str,
    kind: &str,
    defs: &BTreeMap<String, (Vec<String>, usize)>,
) -> Result<(), PolicyError> {
    for (name, (members, line)) in defs {
        if members
            .iter()
            .any(|m| m.starts_with(GROUP) || m.starts_with(SET))
        {
            return Err(PolicyError::at(
                file,
                *line,
                None,
                format!("{kind} `{name}` may not contain groups or sets"),
            ));
        }
        let unique: BTreeSet<&String> = members.iter().collect();
        if unique.len() != members.len() {
            return Err(PolicyError::at(
                file,
                *line,
                None,
                format!("{kind} `{name}` lists a member twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_number_every_offset_as_counting_newlines_does() {
        let text = "\n[[rule]]\nid = \"a\"\n\n\n[[rule]]\r\nid = \"b\"\nno newline at the end";
        let lines = Lines::new(text);
        for offset in 0..=text.len() {
            let counted = text[..offset].bytes().filter(|b| *b == b'\n').count() + 1;
            assert_eq!(lines.of(offset), counted, "offset {offset}");
        }
        assert_eq!(Lines::new("").of(0), 1);
    }
}
