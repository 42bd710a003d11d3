//! Side-by-side ratios on a noisy machine: the naive peer and each batch
//! path are timed in interleaved rounds (naive, dalek batch, Warrant ...,
//! then again), and the table reports the median time per signature and the
//! median of the per-round ratios, so drift in machine speed during the run
//! cancels out of the ratios.
//!
//! Run: `cargo bench -p warrant-bench --bench verify_ratio` (default 15
//! rounds of 1,024 signatures; `WARRANT_RATIO_ROUNDS=N` to change).

use std::hint::black_box;
use std::time::Instant;

use warrant_bench::SignedSet;
use warrant_engine::verify::{SigError, verify_batch, verify_batch_parallel};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let rounds: usize = std::env::var("WARRANT_RATIO_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    const N: usize = 1024;
    println!("{}", warrant_engine::backend::describe());
    let distinct = SignedSet::new(N, N);
    let items = distinct.items();
    let grouped = SignedSet::new(N, 64);
    let grouped_items = grouped.items();
    let msgs: Vec<&[u8]> = distinct.entries.iter().map(|e| e.1.as_slice()).collect();
    let sigs: Vec<ed25519_dalek::Signature> = distinct
        .entries
        .iter()
        .map(|e| ed25519_dalek::Signature::from_bytes(&e.2))
        .collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> = distinct
        .entries
        .iter()
        .map(|e| distinct.dalek_keys[e.0])
        .collect();
    let mut out = vec![Err(SigError::Equation); N];

    type Run<'a> = Box<dyn FnMut() + 'a>;
    let mut variants: Vec<(&str, Run<'_>)> = vec![
        (
            "naive: dalek verify in a loop",
            Box::new(|| {
                use ed25519_dalek::Verifier;
                let mut ok = 0usize;
                for (k, m, s) in &distinct.entries {
                    ok += usize::from(
                        distinct.dalek_keys[*k]
                            .verify(m, &ed25519_dalek::Signature::from_bytes(s))
                            .is_ok(),
                    );
                }
                assert_eq!(black_box(ok), N);
            }),
        ),
        (
            "dalek verify_batch, 1 core",
            Box::new(|| assert!(ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok())),
        ),
        (
            "warrant batch, 1 core",
            Box::new(|| verify_batch(black_box(&items), &mut out)),
        ),
        (
            "warrant batch, 1 core, 64 principals",
            Box::new(|| {
                let mut o = vec![Err(SigError::Equation); N];
                verify_batch(black_box(&grouped_items), &mut o);
                assert!(o.iter().all(Result::is_ok));
            }),
        ),
        (
            "warrant batch, all cores",
            Box::new(|| {
                let mut o = vec![Err(SigError::Equation); N];
                verify_batch_parallel(black_box(&items), &mut o);
                assert!(o.iter().all(Result::is_ok));
            }),
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..=rounds {
        for (i, (_, run)) in variants.iter_mut().enumerate() {
            let t = Instant::now();
            run();
            let us = t.elapsed().as_secs_f64() * 1e6 / N as f64;
            if round > 0 {
                // round 0 warms caches and the rayon pool
                times[i].push(us);
            }
        }
    }
    println!(
        "| path (batches of {N}, {rounds} interleaved rounds) | median µs / signature | signatures / s | median ratio naive ÷ this |"
    );
    println!("|---|---:|---:|---:|");
    for (i, (name, _)) in variants.iter().enumerate() {
        let med = median(times[i].clone());
        let ratio = median(times[0].iter().zip(&times[i]).map(|(n, t)| n / t).collect());
        println!("| {name} | {med:.2} | {:.0} | {ratio:.2}x |", 1e6 / med);
    }
}
