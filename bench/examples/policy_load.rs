//! What loading a large policy costs, and the analysis' share, side by
//! side with the pairwise analysis it replaced, on two shapes of policy:
//!
//! - `bench`: the policy bench's rules (one principal each, 97 actions,
//!   region sets, an amount limit): rules differ by the strings they name,
//!   which is what the analysis' indexes use.
//! - `attrs only`: rules that name no string at all and differ only by an
//!   amount range, half denies: every pair must be tested either way.
//!
//! Run: `cargo run --release -p warrant-bench --example policy_load`
//! (each timing is the median of 3; both analyses must agree).
use std::time::Instant;

use warrant_bench::policy::warrant_text;
use warrant_policy::Policy;
use warrant_policy::analyze::{analyze, analyze_pairwise};

fn attrs_only(n: usize) -> String {
    let mut s = String::from("[policy]\nname = \"attrs\"\nversion = 1\n");
    for i in 0..n {
        let effect = if i % 2 == 0 { "deny" } else { "allow" };
        let min = (i as i64 * 7919) % 100_000;
        s.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\neffect = \"{effect}\"\nwhen = {{ amount = {{ min = {min}, max = {} }} }}\n",
            min + 50
        ));
    }
    s
}

/// A policy shape: its name, its text for `n` rules, the sizes to load.
type Shape = (&'static str, fn(usize) -> String, &'static [usize]);

fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut t: Vec<f64> = (0..3).map(|_| f()).collect();
    t.sort_by(f64::total_cmp);
    t[1]
}

fn main() {
    println!(
        "{:<12} {:>7} {:>10} {:>14} {:>14} {:>9}",
        "policy", "rules", "load s", "analysis s", "pairwise s", "ratio"
    );
    let shapes: [Shape; 2] = [
        ("bench", warrant_text, &[1_000, 10_000, 20_000]),
        ("attrs only", attrs_only, &[1_000, 2_000, 4_000]),
    ];
    for (name, text, sizes) in shapes {
        for &n in sizes {
            let text = text(n);
            let load = median(|| {
                let t = Instant::now();
                Policy::from_sources(&[("bench.toml", &text)]).expect("policy loads");
                t.elapsed().as_secs_f64()
            });
            let policy = Policy::from_sources(&[("bench.toml", &text)]).expect("policy loads");
            let rules = policy.rules();
            let indexed = median(|| {
                let t = Instant::now();
                std::hint::black_box(analyze(rules));
                t.elapsed().as_secs_f64()
            });
            let pairwise = median(|| {
                let t = Instant::now();
                std::hint::black_box(analyze_pairwise(rules));
                t.elapsed().as_secs_f64()
            });
            assert_eq!(analyze(rules), analyze_pairwise(rules));
            println!(
                "{name:<12} {n:>7} {load:>10.3} {indexed:>14.4} {pairwise:>14.4} {:>8.1}x",
                pairwise / indexed
            );
        }
    }
}
