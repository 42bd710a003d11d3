//! Warrant's policy: a small language compiled to decision tables.
//!
//! A policy is one TOML file or a directory of them (read in name order).
//! [`Policy::load`] parses it ([`syntax`]), expands groups and sets into
//! normalized rules ([`spec::RuleSpec`]), compiles the rules into decision
//! tables ([`tables`]) and analyses them ([`analyze`]). Evaluation
//! ([`Policy::evaluate`]) is a handful of lookups, bitset ANDs and a
//! find-first-set, with no allocation and no lock.
//!
//! # Semantics
//!
//! - **Default deny**: a request no rule matches is denied ("no matching rule").
//! - **Deny beats allow**: if any deny rule matches, the first matching deny
//!   (in file order) decides; otherwise the first matching allow decides.
//! - **What cannot be evaluated never allows**: an attribute condition whose
//!   attribute is missing or of another type fails for an allow rule and
//!   holds for a deny rule.
//! - **Every decision names its rule**, or says that no rule matched.
//! - **Validity is cut, not refused**: an allow rule with `max_validity`
//!   grants at most that long; a longer requested validity is cut to it
//!   ([`Policy::granted_validity_us`]). Cutting keeps legitimate callers
//!   working and never grants more than the rule allows.
//!
//! The [`reference`] evaluator states these rules as a plain loop; a
//! property test checks the tables against it on random policies.
//!
//! ```
//! use warrant_policy::{KeyStatus, Policy, Request};
//! use warrant_schemas::{Attr, AttrValue};
//!
//! let policy = Policy::from_sources(&[("inline.toml", r#"
//!     [policy]
//!     version = 1
//!     [[rule]]
//!     id = "allow-small-eur"
//!     effect = "allow"
//!     action = "payments.*"
//!     when = { currency = "EUR", amount = { max = 1000 } }
//! "#)]).unwrap();
//! let attrs = [Attr { key: "currency", value: AttrValue::Str("EUR") },
//!              Attr { key: "amount", value: AttrValue::Int(250) }];
//! let request = Request { action: "payments.transfer", attributes: &attrs, ..Request::EMPTY };
//! let outcome = policy.evaluate(&request);
//! assert!(outcome.is_allow());
//! assert_eq!(policy.rule_id(&outcome), Some("allow-small-eur"));
//! ```
#![deny(missing_docs)]

pub mod analyze;
pub mod cases;
mod error;
pub mod reference;
pub mod spec;
mod store;
pub mod syntax;
pub(crate) mod tables;

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use warrant_schemas::Attr;

pub use analyze::Finding;
pub use error::PolicyError;
pub use spec::{Effect, KeyStatus, RuleSpec};
pub use store::{Decided, Fingerprint, PolicyStore, Watcher};

/// What a request looks like to policy.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Requesting identity.
    pub principal: &'a str,
    /// Workload type.
    pub action: &'a str,
    /// Scope.
    pub resource: &'a str,
    /// Environment.
    pub environment: &'a str,
    /// Region.
    pub region: &'a str,
    /// Typed attributes (first occurrence of a key counts).
    pub attributes: &'a [Attr<'a>],
    /// UTC minute of the day at evaluation, `0..1440` (larger values are
    /// taken modulo 1440).
    pub minute_of_day: u16,
    /// Status of the signing key.
    pub key_status: KeyStatus,
}

impl Request<'static> {
    /// All fields empty, minute 0, active key: a base for `..` syntax.
    pub const EMPTY: Request<'static> = Request {
        principal: "",
        action: "",
        resource: "",
        environment: "",
        region: "",
        attributes: &[],
        minute_of_day: 0,
        key_status: KeyStatus::Active,
    };
}

/// The result of evaluating a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// allow or deny.
    pub effect: Effect,
    /// Deciding rule (index in file order), `None` when no rule matched.
    pub rule: Option<usize>,
}

impl Outcome {
    /// Whether the request is allowed.
    pub fn is_allow(&self) -> bool {
        self.effect == Effect::Allow
    }
}

/// One source file: its name for messages, its name for the hash, its text.
struct Source<'a> {
    display: &'a str,
    hash_name: &'a str,
    text: &'a str,
}

/// A compiled policy: rules, decision tables, version, hash and findings.
pub struct Policy {
    name: Option<String>,
    version: u64,
    hash: [u8; 32],
    rules: Vec<RuleSpec>,
    tables: tables::Tables,
    findings: Vec<Finding>,
    unlisted_overlaps: usize,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("hash", &hex::encode(self.hash))
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// The text of a policy path as read at one moment: the file, or every
/// `*.toml` file of a directory in name order (hidden ones, named `.…`,
/// excepted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFiles {
    /// The path read, for messages.
    pub path: String,
    /// Whether it is a directory.
    pub dir: bool,
    /// (file path, text) of each file, in order; none for a directory
    /// without `*.toml` files.
    pub files: Vec<(String, String)>,
}

impl PolicyFiles {
    /// Reads `path`. Anything that cannot be listed or read is an error,
    /// a `*.toml` entry that is not a readable file included (a dangling
    /// symlink, a directory): a deny rule in a file that cannot be read
    /// must never drop out of the policy unnoticed. A path that is neither
    /// a regular file nor a directory (`/dev/zero`, a pipe) is refused
    /// before it is read: it could be read forever.
    pub fn read(path: &Path) -> Result<PolicyFiles, PolicyError> {
        let io = |p: &Path| {
            let p = p.display().to_string();
            move |e: std::io::Error| PolicyError::Io {
                path: p,
                message: e.to_string(),
            }
        };
        let not_a_file = |p: &Path, what: &str| PolicyError::Io {
            path: p.display().to_string(),
            message: format!("not a regular file{what}"),
        };
        let meta = std::fs::metadata(path).map_err(io(path))?;
        let dir = meta.is_dir();
        if !dir && !meta.is_file() {
            return Err(not_a_file(path, " or a directory"));
        }
        let mut files = Vec::new();
        if dir {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io(path))? {
                let p = entry.map_err(io(path))?.path();
                // Hidden files are not the policy's: editors' lock and
                // backup files (`.#deny.toml`, a dangling symlink while a
                // buffer is modified) must neither join nor break it.
                let hidden = p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                // `.TOML` too: a deny rule in `Deny.TOML` must not drop out
                // of the policy for the case of its name.
                let toml = p
                    .extension()
                    .is_some_and(|x| x.to_string_lossy().eq_ignore_ascii_case("toml"));
                if !hidden && toml {
                    names.push(p);
                }
            }
            names.sort();
            for p in names {
                if std::fs::metadata(&p).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
                    return Err(not_a_file(&p, ""));
                }
                let text = std::fs::read_to_string(&p).map_err(io(&p))?;
                files.push((p.display().to_string(), text));
            }
        } else {
            files.push((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(io(path))?,
            ));
        }
        Ok(PolicyFiles {
            path: path.display().to_string(),
            dir,
            files,
        })
    }
}

impl Policy {
    /// Loads a policy file, or every `*.toml` file of a directory in name order.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        Policy::from_files(&PolicyFiles::read(path)?)
    }

    /// Compiles the files [`PolicyFiles::read`] read: exactly that content,
    /// whatever is on disk by now.
    pub fn from_files(files: &PolicyFiles) -> Result<Policy, PolicyError> {
        if files.files.is_empty() {
            return Err(PolicyError::Io {
                path: files.path.clone(),
                message: "no *.toml files".into(),
            });
        }
        // The hash covers content, not where it was read from: a single
        // file hashes without its name, a directory with each file's name
        // within it (their order and split are part of the policy).
        let sources: Vec<Source<'_>> = files
            .files
            .iter()
            .map(|(n, t)| Source {
                display: n,
                hash_name: if files.dir {
                    Path::new(n)
                        .file_name()
                        .and_then(|f| f.to_str())
                        .unwrap_or(n)
                } else {
                    ""
                },
                text: t,
            })
            .collect();
        Policy::compile(&sources)
    }

    /// Compiles a policy from (file name, text) pairs, in order. The names
    /// appear in error messages and are part of the hash.
    pub fn from_sources(sources: &[(&str, &str)]) -> Result<Policy, PolicyError> {
        let sources: Vec<Source<'_>> = sources
            .iter()
            .map(|(n, t)| Source {
                display: n,
                hash_name: n,
                text: t,
            })
            .collect();
        Policy::compile(&sources)
    }

    fn compile(sources: &[Source<'_>]) -> Result<Policy, PolicyError> {
        let mut name = None;
        let mut version: Option<(u64, String, usize)> = None;
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut sets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut parsed = Vec::with_capacity(sources.len());
        let mut hasher = Sha256::new().chain_update(b"warrant.policy.v1\0");
        for Source {
            display: file,
            hash_name,
            text,
        } in sources
        {
            hasher.update((hash_name.len() as u64).to_le_bytes());
            hasher.update(hash_name.as_bytes());
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
            let p = syntax::parse_file(file, text)?;
            syntax::check_names(file, "group", &p.groups)?;
            syntax::check_names(file, "set", &p.sets)?;
            if let Some((v, line)) = p.version {
                if let Some((_, other_file, other_line)) = &version {
                    return Err(PolicyError::at(
                        file,
                        line,
                        None,
                        format!(
                            "`[policy] version` is declared again (first at {other_file}:{other_line})"
                        ),
                    ));
                }
                version = Some((v, (*file).to_owned(), line));
            }
            name = name.or(p.name.clone());
            for (kind, defs, into) in [
                ("group", &p.groups, &mut groups),
                ("set", &p.sets, &mut sets),
            ] {
                for (k, (members, line)) in defs {
                    if into.insert(k.clone(), members.clone()).is_some() {
                        return Err(PolicyError::at(
                            file,
                            *line,
                            None,
                            format!("{kind} `{k}` is defined twice"),
                        ));
                    }
                }
            }
            parsed.push(p);
        }
        let Some((version, _, _)) = version else {
            let file = sources.first().map_or("<empty>", |s| s.display);
            return Err(PolicyError::at(
                file,
                1,
                None,
                "missing `[policy] version = N`".into(),
            ));
        };
        let ctx = syntax::Context {
            groups: &groups,
            sets: &sets,
        };
        let mut rules: Vec<RuleSpec> = Vec::new();
        let mut seen: BTreeMap<String, spec::Origin> = BTreeMap::new();
        for p in parsed {
            for (def, origin) in p.rules {
                let rule = ctx.rule(def, origin)?;
                if let Some(first) = seen.get(&rule.id) {
                    return Err(PolicyError::at(
                        &rule.origin.file,
                        rule.origin.line,
                        Some(&rule.id),
                        format!("rule id is already used at {first}"),
                    ));
                }
                seen.insert(rule.id.clone(), rule.origin.clone());
                rules.push(rule);
            }
        }
        let tables = tables::Tables::build(&rules).map_err(|message| {
            let file = sources.first().map_or("<empty>", |s| s.display);
            PolicyError::at(file, 1, None, format!("policy-wide: {message}"))
        })?;
        let (findings, unlisted_overlaps) = analyze::analyze(&rules);
        Ok(Policy {
            name,
            version,
            hash: hasher.finalize().into(),
            rules,
            tables,
            findings,
            unlisted_overlaps,
        })
    }

    /// Evaluates a request on the decision tables.
    pub fn evaluate(&self, request: &Request<'_>) -> Outcome {
        self.tables.evaluate(request)
    }

    /// Evaluates a request with the reference evaluator (slow; for tests
    /// and `explain`).
    pub fn evaluate_reference(&self, request: &Request<'_>) -> Outcome {
        reference::evaluate(&self.rules, request)
    }

    /// Per dimension, the rules (file order) accepting the request's value.
    pub fn explain(&self, request: &Request<'_>) -> Vec<(String, Vec<usize>)> {
        self.tables.explain(request)
    }

    /// The deciding rule's id.
    pub fn rule_id(&self, outcome: &Outcome) -> Option<&str> {
        outcome
            .rule
            .and_then(|i| self.rules.get(i))
            .map(|r| r.id.as_str())
    }

    /// The wire reason code of an outcome: `Authorized`, `DenyRule` or
    /// `NoMatchingRule`.
    pub fn reason(&self, outcome: &Outcome) -> warrant_schemas::wire::Reason {
        use warrant_schemas::wire::Reason;
        match (outcome.effect, outcome.rule) {
            (Effect::Allow, Some(_)) => Reason::Authorized,
            (Effect::Deny, Some(_)) => Reason::DenyRule,
            (_, None) => Reason::NoMatchingRule,
        }
    }

    /// The validity an allow grants for `requested_us`: cut to the deciding
    /// rule's `max_validity`, if it has one; 0 for a deny.
    pub fn granted_validity_us(&self, outcome: &Outcome, requested_us: u64) -> u64 {
        if !outcome.is_allow() {
            return 0;
        }
        match outcome
            .rule
            .and_then(|i| self.rules.get(i))
            .and_then(|r| r.max_validity_us)
        {
            Some(max) => requested_us.min(max),
            None => requested_us,
        }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[RuleSpec] {
        &self.rules
    }

    /// Declared `[policy] name`, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Declared `[policy] version`.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// SHA-256 over the policy's content: each source's text in load order,
    /// with its file name within the directory for a directory policy (a
    /// single file's path is not hashed, so moving it keeps the hash).
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Analysis findings (warnings).
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Overlap findings beyond those listed.
    pub fn unlisted_overlaps(&self) -> usize {
        self.unlisted_overlaps
    }

    /// Memory held by the decision tables' bitsets, bytes.
    pub fn table_bytes(&self) -> usize {
        self.tables.arena_bytes()
    }
}
