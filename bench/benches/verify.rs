//! Signature verification: Warrant's strict batch path against the naive
//! peer (`ed25519_dalek::VerifyingKey::verify` in a loop) in the same run.
//!
//! Run: `cargo bench -p warrant-bench --bench verify`. The backend in use
//! is printed first. Throughput is in signatures, so criterion reports
//! signatures/s; divide the time by the batch size for µs per signature.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use warrant_bench::SignedSet;
use warrant_engine::verify::{SigError, verify_batch, verify_batch_parallel, verify_one};

fn bench_verify(c: &mut Criterion) {
    eprintln!("{}", warrant_engine::backend::describe());
    let distinct = SignedSet::new(1024, 1024);
    let items = distinct.items();

    let mut single = c.benchmark_group("verify/single");
    single.throughput(Throughput::Elements(1));
    let (k, message, signature) = &distinct.entries[0];
    let dalek_sig = ed25519_dalek::Signature::from_bytes(signature);
    let dalek_key = &distinct.dalek_keys[*k];
    single.bench_function("dalek_verify", |b| {
        b.iter(|| {
            black_box(
                dalek_key
                    .verify_strict(black_box(message), &dalek_sig)
                    .is_ok(),
            )
        })
    });
    single.bench_function("dalek_verify_cofactorless", |b| {
        use ed25519_dalek::Verifier;
        b.iter(|| black_box(dalek_key.verify(black_box(message), &dalek_sig).is_ok()))
    });
    single.bench_function("warrant_verify_one", |b| {
        b.iter(|| black_box(verify_one(black_box(&items[0]))))
    });
    single.finish();

    for n in [64usize, 256, 1024] {
        let mut group = c.benchmark_group("verify/batch");
        group.throughput(Throughput::Elements(n as u64));
        let batch = &items[..n];
        let mut out = vec![Err(SigError::Equation); n];
        group.bench_with_input(BenchmarkId::new("naive_dalek_loop", n), &n, |b, _| {
            use ed25519_dalek::Verifier;
            b.iter(|| {
                let mut ok = 0usize;
                for (k, m, s) in &distinct.entries[..n] {
                    let sig = ed25519_dalek::Signature::from_bytes(s);
                    ok += usize::from(distinct.dalek_keys[*k].verify(m, &sig).is_ok());
                }
                black_box(ok)
            })
        });
        group.bench_with_input(
            BenchmarkId::new("dalek_verify_batch_1core", n),
            &n,
            |b, _| {
                let msgs: Vec<&[u8]> = distinct.entries[..n]
                    .iter()
                    .map(|e| e.1.as_slice())
                    .collect();
                let sigs: Vec<ed25519_dalek::Signature> = distinct.entries[..n]
                    .iter()
                    .map(|e| ed25519_dalek::Signature::from_bytes(&e.2))
                    .collect();
                let keys: Vec<ed25519_dalek::VerifyingKey> = distinct.entries[..n]
                    .iter()
                    .map(|e| distinct.dalek_keys[e.0])
                    .collect();
                b.iter(|| black_box(ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()))
            },
        );
        group.bench_with_input(BenchmarkId::new("warrant_batch_1core", n), &n, |b, _| {
            b.iter(|| {
                verify_batch(black_box(batch), &mut out);
                black_box(&out);
            })
        });
        group.bench_with_input(BenchmarkId::new("warrant_batch_allcores", n), &n, |b, _| {
            b.iter(|| {
                verify_batch_parallel(black_box(batch), &mut out);
                black_box(&out);
            })
        });
        let grouped = SignedSet::new(n, 64);
        let grouped_items = grouped.items();
        group.bench_with_input(
            BenchmarkId::new("warrant_batch_1core_64keys", n),
            &n,
            |b, _| {
                b.iter(|| {
                    verify_batch(black_box(&grouped_items), &mut out);
                    black_box(&out);
                })
            },
        );
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench_verify
}
criterion_main!(benches);
