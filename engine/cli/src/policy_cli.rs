//! `warrant policy check | test | explain`.

use std::path::Path;

use warrant_cli::outln;
use warrant_policy::cases::{RequestDef, run_cases};
use warrant_policy::{Effect, Policy};

use crate::PolicyCommand;

pub(crate) fn run(cmd: PolicyCommand) -> Result<(), String> {
    match cmd {
        PolicyCommand::Check {
            path,
            deny_warnings,
        } => check(&path, deny_warnings),
        PolicyCommand::Test { cases } => test(&cases),
        PolicyCommand::Explain { path, request, set } => explain(&path, request.as_deref(), &set),
    }
}

fn summary(policy: &Policy) -> String {
    format!(
        "policy {} version {} ({} rules, hash {}, tables {} KiB)",
        policy.name().unwrap_or("(unnamed)"),
        policy.version(),
        policy.rules().len(),
        hex::encode(&policy.hash()[..8]),
        policy.table_bytes().div_ceil(1024)
    )
}

fn check(path: &Path, deny_warnings: bool) -> Result<(), String> {
    let policy = Policy::load(path).map_err(|e| e.to_string())?;
    outln!("{}", summary(&policy));
    for f in policy.findings() {
        outln!("warning: {}", f.describe(policy.rules()));
    }
    if policy.unlisted_overlaps() > 0 {
        outln!(
            "warning: {} more allow/deny overlaps not listed",
            policy.unlisted_overlaps()
        );
    }
    let n = policy.findings().len() + policy.unlisted_overlaps();
    if n == 0 {
        outln!("ok: no findings");
    } else if deny_warnings {
        return Err(format!("{n} analysis findings (--deny-warnings)"));
    }
    Ok(())
}

fn test(cases: &Path) -> Result<(), String> {
    let report = run_cases(cases).map_err(|e| e.to_string())?;
    outln!(
        "cases {} against {} (version {})",
        cases.display(),
        report.policy_path.display(),
        report.policy_version
    );
    for r in &report.results {
        match &r.failure {
            None => outln!("  ok    {}", r.name),
            Some(why) => outln!("  FAIL  {}: {why}", r.name),
        }
    }
    let failed = report.failed();
    outln!("{} passed, {failed} failed", report.results.len() - failed);
    if failed > 0 {
        return Err(format!("{failed} policy cases failed"));
    }
    Ok(())
}

fn explain(path: &Path, request: Option<&Path>, set: &[String]) -> Result<(), String> {
    let policy = Policy::load(path).map_err(|e| e.to_string())?;
    let mut def = match request {
        None => RequestDef::default(),
        Some(p) => {
            let cannot = |e: &dyn std::fmt::Display| format!("cannot read `{}`: {e}", p.display());
            // A device or a pipe (`/dev/zero`) could be read forever.
            if !std::fs::metadata(p).map_err(|e| cannot(&e))?.is_file() {
                return Err(cannot(&"not a regular file"));
            }
            let text = std::fs::read_to_string(p).map_err(|e| cannot(&e))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
    };
    for s in set {
        def.set(s)?;
    }
    let req = def.build()?;
    outln!("{}", summary(&policy));
    let rules = policy.rules();
    let id = |i: &usize| rules.get(*i).map_or("?", |r| r.id.as_str());
    req.with(|r| {
        outln!("rules each field of the request selects (a rule must be selected by all):");
        for (dim, selected) in policy.explain(r) {
            let names: Vec<&str> = selected.iter().map(id).collect();
            outln!(
                "  {dim:<40} {}",
                if names.is_empty() {
                    "(none)".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
        let matching: Vec<String> = rules
            .iter()
            .filter(|rule| warrant_policy::reference::rule_matches(rule, r))
            .map(|rule| format!("{} ({:?})", rule.id, rule.effect).to_lowercase())
            .collect();
        outln!(
            "matching rules: {}",
            if matching.is_empty() {
                "none".into()
            } else {
                matching.join(", ")
            }
        );
        let outcome = policy.evaluate(r);
        let verdict = if outcome.effect == Effect::Allow {
            "ALLOW"
        } else {
            "DENY"
        };
        match outcome.rule.and_then(|i| rules.get(i)) {
            Some(rule) => {
                let why = match (outcome.effect, &rule.reason) {
                    (Effect::Deny, Some(reason)) => format!(", reason `{reason}`"),
                    _ => String::new(),
                };
                outln!(
                    "verdict: {verdict} by rule `{}` ({}){why}",
                    rule.id,
                    rule.origin
                );
            }
            None => outln!("verdict: {verdict}: no rule matched (default deny)"),
        }
        if outcome.is_allow() {
            outln!(
                "validity: requested {} s, granted {} s",
                req.requested_validity_us / 1_000_000,
                policy.granted_validity_us(&outcome, req.requested_validity_us) / 1_000_000
            );
        }
        if policy.evaluate_reference(r) != outcome {
            outln!("error: the reference evaluator disagrees; please report this");
        }
    });
    Ok(())
}
