//! One policy written three ways — Warrant's TOML, Cedar and Rego — and
//! requests to evaluate against all three.
//!
//! Rule `i` allows principal `user-i` to perform `action-(i % 97)` in
//! environment `prod` (or `staging` for every third rule), in a set of
//! regions, for amounts up to a per-rule bound. Requests target a random
//! rule and then perturb one field half of the time, so about half are
//! allowed; every request is checked to get the same verdict from all three
//! engines before anything is timed.

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, RestrictedExpression,
};
use warrant_policy::{KeyStatus, Policy, Request};
use warrant_schemas::{Attr, AttrValue};

const REGION_SETS: [&[&str]; 4] = [
    &["DE", "FR", "IT"],
    &["US", "CA"],
    &["DE", "AT", "CH", "NL"],
    &["JP", "SG"],
];
const ALL_REGIONS: [&str; 12] = [
    "DE", "FR", "IT", "US", "CA", "AT", "CH", "NL", "JP", "SG", "BR", "KP",
];

/// The parameters of rule `i`.
pub struct RuleParams {
    /// Principal it allows.
    pub principal: String,
    /// Action it allows.
    pub action: String,
    /// Environment.
    pub environment: &'static str,
    /// Regions.
    pub regions: &'static [&'static str],
    /// Largest amount.
    pub max_amount: i64,
}

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);
impl Rng {
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Rule `i`'s parameters.
pub fn rule(i: usize) -> RuleParams {
    RuleParams {
        principal: format!("user-{i}"),
        action: format!("action-{}", i % 97),
        environment: if i % 3 == 2 { "staging" } else { "prod" },
        regions: REGION_SETS[i % REGION_SETS.len()],
        max_amount: 1_000 + ((i as i64 * 7919) % 100_000),
    }
}

/// The Warrant policy text for `n` rules.
pub fn warrant_text(n: usize) -> String {
    let mut s = String::from("[policy]\nname = \"bench\"\nversion = 1\n");
    for i in 0..n {
        let r = rule(i);
        let regions: Vec<String> = r.regions.iter().map(|x| format!("{x:?}")).collect();
        s.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\neffect = \"allow\"\nprincipal = \"{}\"\naction = \"{}\"\nenvironment = \"{}\"\nregion = [{}]\nwhen = {{ amount = {{ max = {} }} }}\n",
            r.principal, r.action, r.environment, regions.join(", "), r.max_amount
        ));
    }
    s
}

/// The Cedar policy text for `n` rules.
pub fn cedar_text(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let r = rule(i);
        let regions: Vec<String> = r.regions.iter().map(|x| format!("{x:?}")).collect();
        s.push_str(&format!(
            "@id(\"r{i}\")\npermit(principal == User::\"{}\", action == Action::\"{}\", resource)\nwhen {{ context.environment == \"{}\" && context.amount <= {} && [{}].contains(context.region) }};\n",
            r.principal, r.action, r.environment, r.max_amount, regions.join(", ")
        ));
    }
    s
}

/// The Rego policy for `n` rules, as modules of at most 1,000 rules each
/// (regorus refuses a single policy file over 1 MiB).
pub fn rego_modules(n: usize) -> Vec<String> {
    (0..n.div_ceil(1000).max(1))
        .map(|m| {
            let mut s = String::from("package warrant\nimport rego.v1\n");
            if m == 0 {
                s.push_str("default allow := false\n");
            }
            s.push_str(&rego_rules((m * 1000)..((m + 1) * 1000).min(n)));
            s
        })
        .collect()
}

fn rego_rules(range: std::ops::Range<usize>) -> String {
    let mut s = String::new();
    for i in range {
        let r = rule(i);
        let regions: Vec<String> = r.regions.iter().map(|x| format!("{x:?}")).collect();
        s.push_str(&format!(
            "allow if {{\n  input.principal == \"{}\"\n  input.action == \"{}\"\n  input.environment == \"{}\"\n  input.amount <= {}\n  input.region in {{{}}}\n}}\n",
            r.principal, r.action, r.environment, r.max_amount, regions.join(", ")
        ));
    }
    s
}

/// One request, in the three engines' forms.
pub struct BenchRequest {
    /// Principal.
    pub principal: String,
    /// Action.
    pub action: String,
    /// Environment.
    pub environment: &'static str,
    /// Region.
    pub region: &'static str,
    /// Amount.
    pub amount: i64,
    /// The Cedar request, built once.
    pub cedar: cedar_policy::Request,
    /// The Rego input, built once.
    pub rego: regorus::Value,
}

/// `count` requests against an `n`-rule policy.
pub fn requests(n: usize, count: usize, seed: u64) -> Vec<BenchRequest> {
    let mut rng = Rng(seed | 1);
    (0..count)
        .map(|_| {
            let r = rule(rng.below(n as u64) as usize);
            let mut principal = r.principal.clone();
            let mut action = r.action.clone();
            let mut environment = r.environment;
            let mut region = r.regions[rng.below(r.regions.len() as u64) as usize];
            let mut amount = (rng.below(r.max_amount as u64) as i64) + 1;
            if rng.below(2) == 0 {
                match rng.below(5) {
                    0 => principal = format!("user-{}", n + rng.below(1000) as usize),
                    1 => action = format!("action-{}", rng.below(200)),
                    2 => environment = if environment == "prod" { "staging" } else { "prod" },
                    3 => region = ALL_REGIONS[rng.below(ALL_REGIONS.len() as u64) as usize],
                    _ => amount = r.max_amount + 1 + rng.below(1000) as i64,
                }
            }
            let cedar = cedar_request(&principal, &action, environment, region, amount);
            let rego = regorus::Value::from_json_str(&format!(
                r#"{{"principal":"{principal}","action":"{action}","environment":"{environment}","region":"{region}","amount":{amount}}}"#
            ))
            .expect("valid json");
            BenchRequest { principal, action, environment, region, amount, cedar, rego }
        })
        .collect()
}

/// A Cedar request for these fields (entity uids parsed, context built).
pub fn cedar_request(
    principal: &str,
    action: &str,
    environment: &str,
    region: &str,
    amount: i64,
) -> cedar_policy::Request {
    let uid =
        |t: &str, id: &str| -> EntityUid { format!("{t}::\"{id}\"").parse().expect("entity uid") };
    let context = Context::from_pairs([
        (
            "environment".to_string(),
            RestrictedExpression::new_string(environment.to_string()),
        ),
        (
            "region".to_string(),
            RestrictedExpression::new_string(region.to_string()),
        ),
        ("amount".to_string(), RestrictedExpression::new_long(amount)),
    ])
    .expect("context");
    cedar_policy::Request::new(
        uid("User", principal),
        uid("Action", action),
        uid("Resource", "r"),
        context,
        None,
    )
    .expect("request")
}

/// The three engines, loaded with the same `n`-rule policy.
pub struct Engines {
    /// Warrant's compiled policy.
    pub warrant: Policy,
    /// Cedar's policy set.
    pub cedar: PolicySet,
    /// The Cedar authorizer.
    pub authorizer: Authorizer,
    /// Empty entity store (the policies use only equality on uids).
    pub entities: Entities,
    /// The Rego engine.
    pub rego: regorus::Engine,
}

impl Engines {
    /// Compiles the three policies.
    pub fn new(n: usize) -> Engines {
        let warrant =
            Policy::from_sources(&[("bench.toml", &warrant_text(n))]).expect("warrant policy");
        let cedar: PolicySet = cedar_text(n).parse().expect("cedar policy");
        let mut rego = regorus::Engine::new();
        for (m, module) in rego_modules(n).into_iter().enumerate() {
            rego.add_policy(format!("bench-{m}.rego"), module)
                .expect("rego policy");
        }
        Engines {
            warrant,
            cedar,
            authorizer: Authorizer::new(),
            entities: Entities::empty(),
            rego,
        }
    }

    /// Warrant's verdict.
    pub fn warrant_allows(&self, r: &BenchRequest) -> bool {
        let attrs = [Attr {
            key: "amount",
            value: AttrValue::Int(r.amount),
        }];
        self.warrant
            .evaluate(&Request {
                principal: &r.principal,
                action: &r.action,
                resource: "r",
                environment: r.environment,
                region: r.region,
                attributes: &attrs,
                minute_of_day: 720,
                key_status: KeyStatus::Active,
            })
            .is_allow()
    }

    /// Cedar's verdict.
    pub fn cedar_allows(&self, r: &BenchRequest) -> bool {
        self.authorizer
            .is_authorized(&r.cedar, &self.cedar, &self.entities)
            .decision()
            == Decision::Allow
    }

    /// Rego's verdict.
    pub fn rego_allows(&mut self, r: &BenchRequest) -> bool {
        self.rego.set_input(r.rego.clone());
        self.rego
            .eval_rule("data.warrant.allow".into())
            .expect("rego eval")
            == regorus::Value::from(true)
    }

    /// Checks that the three engines agree on every request; returns the
    /// number allowed.
    pub fn check_agreement(&mut self, requests: &[BenchRequest]) -> Result<usize, String> {
        let mut allowed = 0;
        for (i, r) in requests.iter().enumerate() {
            let (w, c, g) = (
                self.warrant_allows(r),
                self.cedar_allows(r),
                self.rego_allows(r),
            );
            if w != c || w != g {
                return Err(format!(
                    "request {i} ({} {} {} {} {}): warrant {w}, cedar {c}, rego {g}",
                    r.principal, r.action, r.environment, r.region, r.amount
                ));
            }
            allowed += usize::from(w);
        }
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_engines_agree() {
        for n in [10, 100] {
            let mut e = Engines::new(n);
            let reqs = requests(n, 400, 7);
            let allowed = e.check_agreement(&reqs).unwrap();
            // Both verdicts are well represented.
            assert!(allowed > 100 && allowed < 300, "{allowed} of 400 allowed");
        }
    }
}
