//! Policy evaluation: Warrant's decision tables against Cedar
//! (`cedar-policy`) and Rego (`regorus`), on the same policy and the same
//! requests, at 10, 100, 1,000 and 10,000 rules, one core.
//!
//! Run: `cargo bench -p warrant-bench --bench policy`, then
//! `python3 bench/summarize.py policy` for the table in bench/README.md.
//! Before timing, every request is evaluated by all three engines and the
//! run aborts if any verdict differs.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use warrant_bench::policy::{Engines, requests};

fn bench_policy(c: &mut Criterion) {
    // `cargo test --all-targets` runs benches once, in criterion's test mode
    // (no `--bench` argument): there, the agreement check at small sizes is
    // the point, not the timing.
    let test_mode = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("WARRANT_BENCH_RULES") {
        Ok(v) => v.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) if test_mode => vec![10, 100],
        Err(_) => vec![10, 100, 1_000, 10_000],
    };
    for n in sizes {
        let mut engines = Engines::new(n);
        let reqs = requests(n, 1_000, 0x5eed + n as u64);
        let allowed = engines
            .check_agreement(&reqs)
            .expect("the three engines must agree");
        eprintln!(
            "{n} rules: warrant, cedar and rego agree on {} requests ({allowed} allowed); warrant tables {} KiB",
            reqs.len(),
            engines.warrant.table_bytes() / 1024
        );
        let mut group = c.benchmark_group(format!("policy/{n}"));
        group.throughput(Throughput::Elements(1));
        if n >= 1_000 {
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(if n >= 10_000 { 20 } else { 6 }));
        }
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("warrant", n), |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(engines.warrant_allows(black_box(&reqs[i])))
            })
        });
        group.bench_function(BenchmarkId::new("cedar", n), |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(engines.cedar_allows(black_box(&reqs[i])))
            })
        });
        group.bench_function(BenchmarkId::new("rego", n), |b| {
            b.iter(|| {
                i = (i + 1) % reqs.len();
                black_box(engines.rego_allows(black_box(&reqs[i])))
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_policy
}
criterion_main!(benches);
