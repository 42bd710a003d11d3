//! End to end on the embedded transport, side by side in one run:
//!
//! - **ceiling**: `verify_batch_parallel` over the same signatures on every
//!   core (the foundation bench's raw verification ceiling);
//! - **pipeline**: the whole engine (ingest → decode → verify → policy →
//!   seal → emit, lineage and checkpoints included) draining a topic that
//!   holds the same intents; target ≥ 0.8 of the ceiling;
//! - **naive peer**: one thread doing, per intent, what a straightforward
//!   service would: decode, `ed25519_dalek` verify, a Cedar evaluation of
//!   the same 100-rule policy, and an ed25519 signature on each decision;
//!   target: Warrant ≥ 5x its throughput.
//!
//! The three run in interleaved rounds and the table reports medians and
//! the median of per-round ratios (this machine is shared and noisy).
//! Then an open-loop run at half the median pipeline throughput measures
//! latency from each intent's scheduled send time to the sink's ack;
//! target p99 ≤ 1 ms.
//!
//! Each drain and the open loop also print the engine's CPU per intent by
//! thread (`StatsSnapshot::thread_cpu`): verification (pool and lanes)
//! beside the ceiling's CPU per signature, and every other stage.
//!
//! Run: `cargo bench -p warrant-bench --bench pipeline`
//! (`WARRANT_PIPELINE_ROUNDS`, default 5; `WARRANT_PIPELINE_INTENTS`,
//! default 20,000 per round; `WARRANT_PIPELINE_MAX_BATCH` and
//! `WARRANT_PIPELINE_QUEUE_BATCHES` override `Config::max_batch` and
//! `Config::queue_batches`).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cedar_policy::{Authorizer, Decision, Entities, PolicySet};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use rayon::prelude::*;
use warrant_bench::policy::{Engines, cedar_request, cedar_text, requests, warrant_text};
use warrant_engine::pipeline::{Config, Engine, new_histogram, now_us};
use warrant_engine::seal::EngineKey;
use warrant_engine::transport::embedded::Topic;
use warrant_engine::transport::{OutBatch, Sink, TransportError};
use warrant_engine::trust::{KeyState, TrustStore};
use warrant_engine::verify::{PublicKey, SigError, SigItem, verify_batch_parallel};
use warrant_policy::{Policy, PolicyStore};
use warrant_schemas::wire::{Reason, Verdict};
use warrant_schemas::{
    Attr, AttrValue, DecisionFields, INTENT_SIGNING_DOMAIN, IntentFields, IntentSigner, Limits,
    encode_decision, open_signed_intent,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RULES: usize = 100;

struct Fixture {
    /// (principal, SignedIntent bytes).
    intents: Vec<(String, Vec<u8>)>,
    trust: TrustStore,
    policy_text: String,
    dalek: HashMap<[u8; 16], ed25519_dalek::VerifyingKey>,
    prepared: HashMap<[u8; 16], PublicKey>,
    /// Whether the policy allows each intent, by evaluating it directly.
    allowed: Vec<bool>,
}

impl Fixture {
    /// How many of the first `n` intents the policy allows: what the
    /// pipeline must authorize, and the naive peer allow, for the same
    /// intents (a bench that denies everything is fast and wrong).
    fn expected_allowed(&self, n: usize) -> u64 {
        self.allowed.iter().take(n).filter(|a| **a).count() as u64
    }
}

fn fixture(n: usize) -> Fixture {
    let reqs = requests(RULES, n, 7);
    let engines = Engines::new(RULES);
    let allowed: Vec<bool> = reqs.iter().map(|r| engines.warrant_allows(r)).collect();
    let now = now_us();
    let mut signers: HashMap<String, IntentSigner> = HashMap::new();
    for r in &reqs {
        let i = signers.len() as u64;
        signers.entry(r.principal.clone()).or_insert_with(|| {
            let mut seed = [0x42; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            IntentSigner::from_seed(seed)
        });
    }
    let intents: Vec<(String, Vec<u8>)> = reqs
        .par_iter()
        .enumerate()
        .map(|(i, r)| {
            let attrs = [Attr {
                key: "amount",
                value: AttrValue::Int(r.amount),
            }];
            let id = (i as u128).to_le_bytes();
            let bytes = signers[&r.principal].sign_intent(&IntentFields {
                id,
                nonce: id,
                principal: &r.principal,
                action: &r.action,
                resource: "r",
                environment: r.environment,
                region: r.region,
                attributes: &attrs,
                issued_at_us: now,
                deadline_us: now + 3_600_000_000,
                requested_validity_us: 60_000_000,
                ..IntentFields::example()
            });
            (r.principal.clone(), bytes)
        })
        .collect();
    let mut trust = TrustStore::new();
    let mut dalek = HashMap::new();
    let mut prepared = HashMap::new();
    for (p, s) in &signers {
        trust
            .add(p, s.public_key(), KeyState::Active)
            .expect("trust");
        dalek.insert(
            s.key_id(),
            ed25519_dalek::VerifyingKey::from_bytes(&s.public_key()).expect("key"),
        );
        prepared.insert(s.key_id(), PublicKey::from_bytes(s.public_key()));
    }
    Fixture {
        intents,
        trust,
        policy_text: warrant_text(RULES),
        dalek,
        prepared,
        allowed,
    }
}

/// Raw verification of every signature on every core.
fn ceiling(f: &Fixture) -> f64 {
    let limits = Limits::default();
    let opened: Vec<_> = f
        .intents
        .iter()
        .map(|(_, b)| open_signed_intent(b, &limits).expect("opens"))
        .collect();
    let items: Vec<SigItem<'_>> = opened
        .iter()
        .map(|o| SigItem {
            key: &f.prepared[&o.intent.key_id().0],
            prefix: INTENT_SIGNING_DOMAIN,
            message: o.intent_bytes,
            signature: o.signature,
        })
        .collect();
    let mut out = vec![Err(SigError::NoItem); items.len()];
    let t = Instant::now();
    let cpu = cpu_secs();
    verify_batch_parallel(&items, &mut out);
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    println!(
        "  ceiling: {:.1} CPU µs per signature ({:.0}% of {} cores)",
        cpu * 1e6 / items.len() as f64,
        100.0 * cpu / secs / rayon::current_num_threads() as f64,
        rayon::current_num_threads()
    );
    assert!(out.iter().all(|r| r.is_ok()));
    items.len() as f64 / secs
}

/// Counts decisions, keeps none.
#[derive(Clone, Default)]
struct Count {
    total: Arc<AtomicU64>,
}

impl Sink for Count {
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
        self.total
            .fetch_add(batch.decisions.len() as u64, Ordering::Relaxed);
        black_box(&batch.lineage);
        Ok(())
    }
}

fn engine<K: Sink + 'static>(f: &Fixture, topic: &Topic, sink: K) -> Engine {
    let store = Arc::new(PolicyStore::new());
    store.install(Policy::from_sources(&[("bench.toml", &f.policy_text)]).expect("policy"));
    Engine::start(
        Config {
            partitions: topic.partitions(),
            layout: match std::env::var("WARRANT_PIPELINE_VERIFY_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
            {
                Some(threads) => warrant_engine::pipeline::Layout::unpinned(threads),
                None if std::env::var("WARRANT_PIPELINE_UNPINNED").is_ok() => {
                    warrant_engine::pipeline::Layout::unpinned(rayon::current_num_threads())
                }
                None => warrant_engine::pipeline::Layout::auto(),
            },
            linger: Duration::from_micros(env("WARRANT_PIPELINE_LINGER_US", 200) as u64),
            max_batch: env("WARRANT_PIPELINE_MAX_BATCH", Config::default().max_batch),
            queue_batches: env(
                "WARRANT_PIPELINE_QUEUE_BATCHES",
                Config::default().queue_batches,
            ),
            ..Config::default()
        },
        topic.consumer(),
        sink,
        EngineKey::from_seed([3; 32]),
        Arc::new(ArcSwap::from_pointee(f.trust.clone())),
        store,
    )
    .expect("engine starts")
}

/// CPU seconds this process has used (user + system).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the
    // 12th, stime the 13th, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (field(11) + field(12)) / 100.0
}

/// CPU seconds the hypervisor gave other guests while this one had work
/// (`steal` in `/proc/stat`, all CPUs). Printed beside each timed phase:
/// on a shared VM it explains a slow round, and a round with much of it
/// says more about the host than about the engine.
fn steal_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // "cpu  user nice system idle iowait irq softirq steal ...", in clock
    // ticks (100 per second on Linux).
    stat.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(8))
        .and_then(|x| x.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 100.0
}

/// The engine's CPU time per intent by thread, as it ran: verification
/// (the pool and its lanes) first, then the other stages and their sum.
/// Beside the ceiling's CPU µs per signature this splits the gap into
/// verification costing more in place and the work the pipeline adds.
fn thread_cpu(threads: &[(String, Duration)], intents: usize) -> String {
    let per = |d: Duration| d.as_secs_f64() * 1e6 / intents.max(1) as f64;
    let mut verify = Duration::ZERO;
    let mut others: Vec<(&str, Duration)> = Vec::new();
    for (n, d) in threads {
        if n.starts_with("verify") || n.starts_with("vlane") {
            verify += *d;
            continue;
        }
        match others.iter_mut().find(|(o, _)| o == n) {
            Some((_, t)) => *t += *d,
            None => others.push((n, *d)),
        }
    }
    let rest: Duration = others.iter().map(|(_, d)| *d).sum();
    let list: Vec<String> = others
        .iter()
        .map(|(n, d)| format!("{n} {:.2}", per(*d)))
        .collect();
    format!(
        "CPU µs per intent by thread: verification {:.2}; other stages {:.2} ({})",
        per(verify),
        per(rest),
        list.join(", ")
    )
}

/// The engine draining a topic that holds every intent.
fn pipeline(f: &Fixture) -> (f64, u64) {
    let topic = Topic::new(8, f.intents.len());
    for (k, b) in &f.intents {
        topic.publish(k.as_bytes(), b.clone()).expect("publish");
    }
    topic.close();
    let sink = Count::default();
    let t = Instant::now();
    let (cpu, steal) = (cpu_secs(), steal_secs());
    let stats = engine(f, &topic, sink.clone()).join().expect("engine runs");
    let secs = t.elapsed().as_secs_f64();
    let (cpu, steal) = (cpu_secs() - cpu, steal_secs() - steal);
    assert_eq!(sink.total.load(Ordering::Relaxed), f.intents.len() as u64);
    let busy: Vec<String> = stats
        .stage_busy
        .iter()
        .map(|(name, d)| format!("{name} {:.0}%", 100.0 * d.as_secs_f64() / secs))
        .collect();
    println!(
        "  pipeline: {} shed, {} batches; {:.1} CPU µs per intent ({:.0}% of {} cores); steal {:.0} ms; busy: {}",
        stats.shed_intents,
        stats.batches,
        cpu * 1e6 / f.intents.len() as f64,
        100.0 * cpu / secs / rayon::current_num_threads() as f64,
        rayon::current_num_threads(),
        steal * 1e3,
        busy.join(", ")
    );
    println!("  {}", thread_cpu(&stats.thread_cpu, f.intents.len()));
    (
        f.intents.len() as f64 / secs,
        stats.count(Reason::Authorized),
    )
}

/// One thread: decode, dalek verify, Cedar, sign each decision.
fn naive(f: &Fixture, n: usize, cedar: &PolicySet) -> (f64, u64) {
    let limits = Limits::default();
    let authorizer = Authorizer::new();
    let entities = Entities::empty();
    let key = SigningKey::from_bytes(&[3; 32]);
    let mut allowed = 0;
    let t = Instant::now();
    for (_, bytes) in f.intents.iter().take(n) {
        let Ok(s) = open_signed_intent(bytes, &limits) else {
            continue;
        };
        let intent = s.intent;
        let mut message = INTENT_SIGNING_DOMAIN.to_vec();
        message.extend_from_slice(s.intent_bytes);
        let verified = f.dalek.get(&intent.key_id().0).is_some_and(|k| {
            k.verify(&message, &ed25519_dalek::Signature::from_bytes(s.signature))
                .is_ok()
        });
        let amount = intent
            .attributes()
            .and_then(|a| a.iter().find(|a| a.key() == "amount"))
            .map_or(0, |a| a.int_value());
        let request = cedar_request(
            intent.principal(),
            intent.action(),
            intent.environment(),
            intent.region(),
            amount,
        );
        let allow = verified
            && authorizer
                .is_authorized(&request, cedar, &entities)
                .decision()
                == Decision::Allow;
        allowed += u64::from(allow);
        let now = now_us();
        let decision = encode_decision(&DecisionFields {
            intent_id: intent.id().0,
            intent_digest: s.digest(),
            verdict: if allow {
                Verdict::Authorize
            } else {
                Verdict::Deny
            },
            reason: if allow {
                Reason::Authorized
            } else {
                Reason::NoMatchingRule
            },
            rule_id: "",
            policy_hash: [0; 32],
            policy_version: 1,
            issued_at_us: now,
            valid_until_us: now + 60_000_000,
            audience: "executor",
            engine_key_id: [0; 16],
            lineage_partition: 0,
            lineage_sequence: 0,
            batch_root: [0; 32],
            leaf_index: 0,
            batch_size: 1,
            proof: &[],
            batch_signature: [0; 64],
        });
        black_box(key.sign(&decision));
    }
    (n as f64 / t.elapsed().as_secs_f64(), allowed)
}

/// Records latency from each intent's scheduled send time.
#[derive(Clone)]
struct Timed {
    start: Instant,
    scheduled: Arc<Vec<AtomicU64>>,
    latency: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    total: Arc<AtomicU64>,
}

impl Sink for Timed {
    fn send(&mut self, batch: &OutBatch) -> Result<(), TransportError> {
        let now = self.start.elapsed().as_nanos() as u64;
        let mut h = self.latency.lock().expect("lock");
        for (id, _) in &batch.decisions {
            let i = u128::from_le_bytes(*id) as usize;
            if let Some(s) = self.scheduled.get(i) {
                h.saturating_record(
                    ((now.saturating_sub(s.load(Ordering::Acquire))) / 1000).max(1),
                );
            }
        }
        self.total
            .fetch_add(batch.decisions.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Open loop at `rate` for up to `secs`: latency histogram (µs), intents
/// sent, and the engine's CPU per intent by thread.
fn open_loop(f: &Fixture, rate: f64, secs: f64) -> (hdrhistogram::Histogram<u64>, usize, String) {
    let n = ((rate * secs) as usize).min(f.intents.len());
    let topic = Topic::new(8, 1 << 20);
    let start = Instant::now();
    let sink = Timed {
        start,
        scheduled: Arc::new((0..n).map(|_| AtomicU64::new(u64::MAX)).collect()),
        latency: Arc::new(Mutex::new(new_histogram())),
        total: Arc::new(AtomicU64::new(0)),
    };
    let e = engine(f, &topic, sink.clone());
    // The schedule starts once the engine runs: its start-up (threads,
    // policy compilation) is not latency of any intent.
    let began = start.elapsed();
    let interval = 1e9 / rate;
    for (i, (k, b)) in f.intents.iter().take(n).enumerate() {
        let due = began + Duration::from_nanos((i as f64 * interval) as u64);
        loop {
            let now = start.elapsed();
            if now >= due {
                break;
            }
            // Sleep, never spin: a spinning publisher would take a core
            // from the engine. Late sends count as latency.
            std::thread::sleep(due - now);
        }
        sink.scheduled[i].store(due.as_nanos() as u64, Ordering::Release);
        topic.publish(k.as_bytes(), b.clone()).expect("publish");
    }
    topic.close();
    let stats = e.join().expect("engine runs");
    assert_eq!(sink.total.load(Ordering::Relaxed), n as u64);
    let h = sink.latency.lock().expect("lock").clone();
    (h, n, thread_cpu(&stats.thread_cpu, n))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this
    // binary without it: then a small smoke run (correctness only).
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full {
        env("WARRANT_PIPELINE_ROUNDS", 5).max(1)
    } else {
        1
    };
    let n = if full {
        env("WARRANT_PIPELINE_INTENTS", 20_000).max(1_000)
    } else {
        1_000
    };
    let naive_n = if full { (n / 10).max(500) } else { 100 };
    println!("{}", warrant_engine::backend::describe());
    println!(
        "fixture: {n} signed intents, {RULES}-rule policy; naive peer on {naive_n} per round; {rounds} rounds"
    );
    let f = fixture(n);
    let cedar: PolicySet = cedar_text(RULES).parse().expect("cedar policy");
    let (mut c, mut p, mut q) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pc, mut pq) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let ceil = ceiling(&f);
        let (pipe, authorized) = pipeline(&f);
        let (nv, allowed) = naive(&f, naive_n, &cedar);
        // The fixture allows about half: a run that denies all (or allows
        // all) measured something else.
        let want = f.expected_allowed(n);
        assert!(0 < want && want < n as u64, "{want} of {n} allowed");
        assert_eq!(authorized, want, "pipeline authorized {authorized} of {n}");
        let want = f.expected_allowed(naive_n);
        assert_eq!(allowed, want, "naive peer allowed {allowed} of {naive_n}");
        println!(
            "round {round}: ceiling {ceil:>9.0}/s  pipeline {pipe:>9.0}/s ({authorized} authorized)  naive {nv:>8.0}/s ({allowed} allowed)"
        );
        c.push(ceil);
        p.push(pipe);
        q.push(nv);
        pc.push(pipe / ceil);
        pq.push(pipe / nv);
    }
    let pipe = median(p);
    println!("medians:");
    println!(
        "  verification ceiling (all cores)  {:>10.0} intents/s",
        median(c)
    );
    println!("  Warrant pipeline, end to end      {pipe:>10.0} intents/s");
    println!(
        "  naive peer (one thread)           {:>10.0} intents/s",
        median(q)
    );
    let judge = |met: bool| match (full, met) {
        (false, _) => "smoke run, not judged",
        (true, true) => "met",
        (true, false) => "NOT met",
    };
    let ratio_c = median(pc);
    let ratio_n = median(pq);
    println!(
        "  pipeline / ceiling                {ratio_c:>10.2}   (target >= 0.80: {})",
        judge(ratio_c >= 0.8)
    );
    println!(
        "  pipeline / naive peer             {ratio_n:>10.1}x  (target >= 5x: {})",
        judge(ratio_n >= 5.0)
    );
    // `WARRANT_PIPELINE_OPEN_RATE` fixes the rate (to compare layouts).
    let rate = std::env::var("WARRANT_PIPELINE_OPEN_RATE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(pipe / 2.0);
    // Fresh intents for two seconds at that rate (a second engine run
    // over the same ones would only see replays).
    drop(f);
    let secs = if full { 2.0 } else { 0.2 };
    let lat = fixture((rate * secs) as usize);
    let (t, cpu, steal) = (Instant::now(), cpu_secs(), steal_secs());
    let (h, sent, by_thread) = open_loop(&lat, rate, secs);
    let (secs_taken, cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - cpu);
    let steal = steal_secs() - steal;
    let cores = rayon::current_num_threads();
    println!(
        "  open loop: {:.1} CPU µs per intent ({:.0}% of {cores} cores, the publisher included); steal {:.0} ms",
        cpu * 1e6 / sent as f64,
        100.0 * cpu / secs_taken / cores as f64,
        steal * 1e3,
    );
    println!("  open loop, engine: {by_thread}");
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "open loop at {rate:.0}/s ({sent} intents; half the median max unless set): p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  (target p99 <= 1 ms: {})",
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0,
        judge(ms(0.99) <= 1.0)
    );
}
