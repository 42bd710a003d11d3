//! Requests and test cases written as TOML, for `warrant policy test` and
//! `warrant policy explain`.
//!
//! ```toml
//! policy = "payments.toml"          # relative to this file
//!
//! [[case]]
//! name = "a small EUR transfer by treasury is allowed"
//! expect = "allow"                  # allow | deny
//! rule = "allow-eu-treasury"        # deciding rule; "none" for no match
//! granted_validity = "5m"           # optional: the validity the rule grants
//!                                   # (the engine cuts it to its own
//!                                   # max_validity, 1h by default)
//! [case.request]
//! principal = "svc-treasury"
//! action = "payments.transfer"
//! environment = "prod"
//! region = "DE"
//! time = "12:00"                    # UTC; default 12:00
//! key_status = "active"             # default active
//! requested_validity = "10m"        # default 1m
//! attributes = { amount = 250, currency = "EUR" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use warrant_schemas::{Attr, AttrValue};

use crate::spec::KeyStatus;
use crate::{Policy, PolicyError, Request};

/// A request as written in a cases or request file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    /// Requesting identity.
    #[serde(default)]
    pub principal: String,
    /// Workload type.
    #[serde(default)]
    pub action: String,
    /// Scope.
    #[serde(default)]
    pub resource: String,
    /// Environment.
    #[serde(default)]
    pub environment: String,
    /// Region.
    #[serde(default)]
    pub region: String,
    /// UTC time of day, `HH:MM` (default `12:00`).
    pub time: Option<String>,
    /// `active` (default) or `rotating`.
    pub key_status: Option<String>,
    /// Requested validity, e.g. `10m` (default `1m`).
    pub requested_validity: Option<String>,
    /// Typed attributes: integers, strings or booleans.
    #[serde(default)]
    pub attributes: BTreeMap<String, toml::Value>,
}

/// A [`RequestDef`] checked and converted, owning its strings.
#[derive(Debug, Clone)]
pub struct OwnedRequest {
    def: RequestDef,
    attrs: Vec<(String, OwnedValue)>,
    minute: u16,
    key_status: KeyStatus,
    /// Requested validity, µs.
    pub requested_validity_us: u64,
}

#[derive(Debug, Clone)]
enum OwnedValue {
    Int(i64),
    Str(String),
    Bool(bool),
}

impl RequestDef {
    /// Checks and converts.
    pub fn build(self) -> Result<OwnedRequest, String> {
        let minute = match &self.time {
            None => 12 * 60,
            Some(t) => match crate::syntax::parse_minute(t)? {
                // A request happens at an instant of the day: 24:00 is 00:00.
                crate::spec::MINUTES => {
                    return Err(format!("time `{t}` is out of range (00:00 to 23:59)"));
                }
                m => m,
            },
        };
        let key_status = match self.key_status.as_deref() {
            None | Some("active") => KeyStatus::Active,
            Some("rotating") => KeyStatus::Rotating,
            Some(other) => {
                return Err(format!(
                    "key_status `{other}` is neither `active` nor `rotating`"
                ));
            }
        };
        let requested_validity_us = match &self.requested_validity {
            None => 60_000_000,
            Some(d) => crate::syntax::duration_text_us(d)?,
        };
        let mut attrs = Vec::new();
        for (k, v) in &self.attributes {
            let v = match v {
                toml::Value::Integer(i) => OwnedValue::Int(*i),
                toml::Value::String(s) => OwnedValue::Str(s.clone()),
                toml::Value::Boolean(b) => OwnedValue::Bool(*b),
                other => {
                    return Err(format!(
                        "attribute `{k}` is a {}, not an integer, string or boolean",
                        other.type_str()
                    ));
                }
            };
            attrs.push((k.clone(), v));
        }
        Ok(OwnedRequest {
            def: self,
            attrs,
            minute,
            key_status,
            requested_validity_us,
        })
    }

    /// Sets a field from `key=value` (for `explain --set`).
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (k, v) = assignment
            .split_once('=')
            .ok_or_else(|| format!("`{assignment}` is not key=value"))?;
        let v = v.to_owned();
        match k.trim() {
            "principal" => self.principal = v,
            "action" => self.action = v,
            "resource" => self.resource = v,
            "environment" => self.environment = v,
            "region" => self.region = v,
            "time" => self.time = Some(v),
            "key_status" => self.key_status = Some(v),
            "requested_validity" => self.requested_validity = Some(v),
            other => {
                let key = other
                    .strip_prefix("attributes.")
                    .unwrap_or(other)
                    .to_owned();
                let value = if let Ok(i) = v.parse::<i64>() {
                    toml::Value::Integer(i)
                } else if v == "true" || v == "false" {
                    toml::Value::Boolean(v == "true")
                } else {
                    toml::Value::String(v)
                };
                self.attributes.insert(key, value);
            }
        }
        Ok(())
    }
}

impl OwnedRequest {
    /// Runs `f` with the borrowed [`Request`].
    pub fn with<T>(&self, f: impl FnOnce(&Request<'_>) -> T) -> T {
        let attrs: Vec<Attr<'_>> = self
            .attrs
            .iter()
            .map(|(k, v)| Attr {
                key: k,
                value: match v {
                    OwnedValue::Int(i) => AttrValue::Int(*i),
                    OwnedValue::Str(s) => AttrValue::Str(s),
                    OwnedValue::Bool(b) => AttrValue::Bool(*b),
                },
            })
            .collect();
        let d = &self.def;
        f(&Request {
            principal: &d.principal,
            action: &d.action,
            resource: &d.resource,
            environment: &d.environment,
            region: &d.region,
            attributes: &attrs,
            minute_of_day: self.minute,
            key_status: self.key_status,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    policy: String,
    #[serde(rename = "case", default)]
    cases: Vec<CaseDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseDef {
    name: String,
    expect: String,
    rule: Option<String>,
    granted_validity: Option<String>,
    request: RequestDef,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// `None` when it passed; what differed otherwise.
    pub failure: Option<String>,
}

/// The result of a cases file.
#[derive(Debug)]
pub struct Report {
    /// The policy file the cases ran against.
    pub policy_path: PathBuf,
    /// Its version and hash.
    pub policy_version: u64,
    /// One entry per case.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// Number of failed cases.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| r.failure.is_some()).count()
    }
}

/// Why a cases file could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    /// The cases file is unreadable or malformed.
    #[error("{path}: {message}")]
    Cases {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The policy it names does not load.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Runs every case of a cases file.
pub fn run_cases(path: &Path) -> Result<Report, CasesError> {
    let err = |message: String| CasesError::Cases {
        path: path.display().to_string(),
        message,
    };
    // A device or a pipe (`/dev/zero`) could be read forever.
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: CasesFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let policy_path = path.parent().unwrap_or(Path::new(".")).join(&file.policy);
    let policy = Policy::load(&policy_path)?;
    let mut results = Vec::with_capacity(file.cases.len());
    for case in file.cases {
        let failure = check_case(&policy, &case).err();
        results.push(CaseResult {
            name: case.name,
            failure,
        });
    }
    if results.is_empty() {
        return Err(err("no [[case]] entries".into()));
    }
    Ok(Report {
        policy_path,
        policy_version: policy.version(),
        results,
    })
}

fn check_case(policy: &Policy, case: &CaseDef) -> Result<(), String> {
    let want_allow = match case.expect.as_str() {
        "allow" => true,
        "deny" => false,
        other => return Err(format!("expect `{other}` is neither `allow` nor `deny`")),
    };
    let request = case.request.clone().build()?;
    let outcome = request.with(|r| policy.evaluate(r));
    let got_rule = policy.rule_id(&outcome).unwrap_or("none");
    let verdict = |allow: bool| if allow { "allow" } else { "deny" };
    if outcome.is_allow() != want_allow {
        return Err(format!(
            "expected {}, got {} (rule `{got_rule}`)",
            case.expect,
            verdict(outcome.is_allow())
        ));
    }
    if let Some(rule) = &case.rule
        && rule != got_rule
    {
        return Err(format!("expected rule `{rule}`, got rule `{got_rule}`"));
    }
    if let Some(v) = &case.granted_validity {
        let want = crate::syntax::duration_text_us(v)?;
        let got = policy.granted_validity_us(&outcome, request.requested_validity_us);
        if want != got {
            return Err(format!("expected granted validity {want} µs, got {got} µs"));
        }
    }
    Ok(())
}
