//! The admin HTTP port of `warrant run`: `/metrics` (Prometheus text
//! format 0.0.4), `/healthz` and `/readyz`.
//!
//! - `/healthz`: 200 while the engine runs; 503 once a stage failed.
//! - `/readyz`: 200 when the engine should be sent traffic; otherwise 503
//!   with one reason per line: no policy loaded, the broker unreachable,
//!   the broker not acknowledging decisions, the engine stopped or
//!   stopping.
//! - `/metrics`: the counters, gauges and histograms listed in
//!   ARCHITECTURE.md ("Observability"); every series has the `warrant_`
//!   prefix.
//!
//! It is a minimal HTTP/1.1 server (GET and HEAD, one request per
//! connection, 8 KiB request head, 5 s to send it, at most 32 connections
//! at once) on a tokio runtime of
//! its own thread. It reads the pipeline's lock-free counters, and for
//! `/metrics` clones the latency histogram under the mutex the emit stage
//! records into (a copy of a fixed-size histogram, held briefly).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warrant_engine::pipeline::{BucketCounts, Probe, QUEUES, STAGES, StatsSnapshot};
use warrant_policy::PolicyStore;
use warrant_schemas::wire::Reason;

/// Consumer lag per partition, when the source reports it.
pub type LagFn = Box<dyn Fn() -> Vec<(u32, i64)> + Send + Sync>;

/// What the trust follower could not read, if anything: while the keys
/// topic or the trust file cannot be read, revocations made there are not
/// in force here, and `/readyz` says so.
#[derive(Debug, Default)]
pub struct TrustHealth {
    topic: std::sync::Mutex<Option<String>>,
    file: std::sync::Mutex<Option<String>>,
}

impl TrustHealth {
    /// The keys topic's last read: `None` when it succeeded.
    pub fn topic(&self, problem: Option<String>) {
        if let Ok(mut g) = self.topic.lock() {
            *g = problem;
        }
    }

    /// The trust file's last reload: `None` when it succeeded.
    pub fn file(&self, problem: Option<String>) {
        if let Ok(mut g) = self.file.lock() {
            *g = problem;
        }
    }

    /// What is wrong now.
    pub fn problems(&self) -> Vec<String> {
        [&self.topic, &self.file]
            .iter()
            .filter_map(|m| m.lock().ok().and_then(|g| g.clone()))
            .collect()
    }
}

/// What the endpoints read.
pub struct Admin {
    /// The engine's counters.
    pub probe: Probe,
    /// The policy in force.
    pub policy: Arc<PolicyStore>,
    /// Whether the last broker probe succeeded.
    pub broker_reachable: Arc<AtomicBool>,
    /// Set once shutdown began.
    pub stopping: Arc<AtomicBool>,
    /// Consumer lag of the owned partitions.
    pub lag: Option<LagFn>,
    /// Capacity of each queue between stages, in batches ([`QUEUES`]).
    pub queue_capacity: [usize; 6],
    /// When the process started.
    pub started: SystemTime,
    /// Whether the trust store follows its sources.
    pub trust: Arc<TrustHealth>,
}

/// Reasons whose denies are the engine failing closed (bad input, time
/// out, overload, missing policy, internal error) rather than a verdict
/// on a well-formed intent.
pub const FAIL_CLOSED: [Reason; 5] = [
    Reason::Malformed,
    Reason::DeadlineExceeded,
    Reason::Overloaded,
    Reason::NoPolicy,
    Reason::InternalError,
];

/// Upper bounds of `warrant_decision_latency_seconds`, µs.
const LATENCY_BOUNDS_US: [u64; 16] = [
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

fn reason_label(r: Reason) -> &'static str {
    r.variant_name().unwrap_or("Unknown")
}

impl Admin {
    /// Why the engine should not get traffic now; empty: ready.
    pub fn not_ready(&self) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(f) = self.probe.failure() {
            why.push(format!("the engine stopped: {f}"));
        }
        if self.stopping.load(Ordering::Relaxed) {
            why.push("shutting down".into());
        }
        if self.policy.current().is_none() {
            why.push(match self.policy.last_error() {
                Some(e) => format!("no policy loaded: {e}"),
                None => "no policy loaded: every intent is denied \"no policy\"".into(),
            });
        }
        if !self.broker_reachable.load(Ordering::Relaxed) {
            why.push("the broker is unreachable".into());
        }
        if self.probe.sink_stalled() {
            why.push(
                "the broker does not acknowledge decisions (retrying, committing nothing)".into(),
            );
        }
        for p in self.trust.problems() {
            why.push(format!(
                "the trust store may be stale (revocations not seen): {p}"
            ));
        }
        why
    }

    /// The Prometheus exposition.
    pub fn metrics(&self) -> String {
        let s = self.probe.stats();
        let ready = self.not_ready().is_empty();
        let mut m = String::with_capacity(16 * 1024);
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        gauge(
            &mut m,
            "warrant_start_time_seconds",
            "When the process started, Unix time.",
            started,
        );
        gauge(
            &mut m,
            "warrant_ready",
            "1 when /readyz answers 200.",
            f64::from(u8::from(ready)),
        );
        gauge(
            &mut m,
            "warrant_policy_loaded",
            "1 while a policy is in force (0: every intent is denied \"no policy\").",
            f64::from(u8::from(self.policy.current().is_some())),
        );
        gauge(
            &mut m,
            "warrant_broker_reachable",
            "1 when the last broker probe succeeded.",
            f64::from(u8::from(self.broker_reachable.load(Ordering::Relaxed))),
        );
        gauge(
            &mut m,
            "warrant_trust_current",
            "1 while the keys topic and the trust file were last read without error.",
            f64::from(u8::from(self.trust.problems().is_empty())),
        );
        gauge(
            &mut m,
            "warrant_sink_stalled",
            "1 while the broker does not acknowledge decisions within the sink timeout.",
            f64::from(u8::from(s.sink_stalled)),
        );
        if let Some(p) = self.policy.current() {
            header(
                &mut m,
                "warrant_policy_info",
                "The policy in force.",
                "gauge",
            );
            let _ = writeln!(
                m,
                "warrant_policy_info{{name=\"{}\",version=\"{}\",hash=\"{}\"}} 1",
                escape(p.name().unwrap_or("")),
                p.version(),
                hex::encode(p.hash())
            );
        }
        counter(
            &mut m,
            "warrant_intents_total",
            "Records read from the intents topic.",
            s.intents_in,
        );
        header(
            &mut m,
            "warrant_decisions_total",
            "Decisions emitted and acknowledged, by verdict and reason.",
            "counter",
        );
        for r in Reason::ENUM_VALUES {
            let verdict = if *r == Reason::Authorized {
                "authorize"
            } else {
                "deny"
            };
            let _ = writeln!(
                m,
                "warrant_decisions_total{{verdict=\"{verdict}\",reason=\"{}\"}} {}",
                reason_label(*r),
                s.count(*r)
            );
        }
        header(
            &mut m,
            "warrant_fail_closed_total",
            "Denies that are the engine failing closed (bad input, timeout, overload, no policy, internal error).",
            "counter",
        );
        for r in FAIL_CLOSED {
            let _ = writeln!(
                m,
                "warrant_fail_closed_total{{reason=\"{}\"}} {}",
                reason_label(r),
                s.count(r)
            );
        }
        counter(
            &mut m,
            "warrant_shed_intents_total",
            "Intents shed at ingest (denied \"overloaded\").",
            s.shed_intents,
        );
        counter(
            &mut m,
            "warrant_lineage_records_total",
            "Lineage records emitted (one per decision).",
            s.lineage_records,
        );
        counter(
            &mut m,
            "warrant_batches_total",
            "Ingest batches decided and acknowledged.",
            s.batches,
        );
        counter(
            &mut m,
            "warrant_sink_sends_total",
            "Acknowledged sends to the broker.",
            s.sink_sends,
        );
        header(
            &mut m,
            "warrant_stage_busy_seconds_total",
            "Time each stage spent working (not waiting).",
            "counter",
        );
        for (stage, busy) in &s.stage_busy {
            let _ = writeln!(
                m,
                "warrant_stage_busy_seconds_total{{stage=\"{stage}\"}} {}",
                busy.as_secs_f64()
            );
        }
        header(
            &mut m,
            "warrant_stage_duration_seconds",
            "Time per batch in each stage (per group in verify and seal, per send in emit).",
            "histogram",
        );
        for (stage, b) in STAGES.iter().zip(&s.stage_us) {
            buckets(
                &mut m,
                "warrant_stage_duration_seconds",
                &format!("stage=\"{stage}\""),
                b,
                true,
            );
        }
        header(
            &mut m,
            "warrant_batch_size",
            "Intents per batch read.",
            "histogram",
        );
        buckets(&mut m, "warrant_batch_size", "", &s.batch_sizes, false);
        latency(&mut m, &s);
        header(
            &mut m,
            "warrant_queue_depth",
            "Batches waiting in each queue between stages (policy's includes verified batches held for decode order).",
            "gauge",
        );
        for (q, n) in QUEUES.iter().zip(&s.queues) {
            let _ = writeln!(m, "warrant_queue_depth{{queue=\"{q}\"}} {n}");
        }
        header(
            &mut m,
            "warrant_queue_capacity",
            "Capacity of each queue between stages, in batches (policy's channel alone: the batches it holds for decode order can take its depth past this).",
            "gauge",
        );
        for (q, n) in QUEUES.iter().zip(&self.queue_capacity) {
            let _ = writeln!(m, "warrant_queue_capacity{{queue=\"{q}\"}} {n}");
        }
        if let Some(lag) = &self.lag {
            let lag = lag();
            header(
                &mut m,
                "warrant_consumer_lag",
                "Records behind the end of each owned intents partition (librdkafka statistics, every 5 s).",
                "gauge",
            );
            for (p, n) in &lag {
                let _ = writeln!(m, "warrant_consumer_lag{{partition=\"{p}\"}} {n}");
            }
            gauge(
                &mut m,
                "warrant_consumer_lag_sum",
                "Records behind, over all owned intents partitions.",
                lag.iter().map(|(_, n)| *n as f64).sum(),
            );
        }
        m
    }
}

fn header(m: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(m, "# HELP {name} {help}");
    let _ = writeln!(m, "# TYPE {name} {kind}");
}

fn gauge(m: &mut String, name: &str, help: &str, v: f64) {
    header(m, name, help, "gauge");
    let _ = writeln!(m, "{name} {v}");
}

fn counter(m: &mut String, name: &str, help: &str, v: u64) {
    header(m, name, help, "counter");
    let _ = writeln!(m, "{name} {v}");
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Microseconds as decimal seconds, exactly: `le="0.025"`, never the
/// `0.024999999999999998` of `25000.0 * 1e-6`, which a rule selecting
/// `le="0.025"` would not match.
fn micros_as_seconds(us: u64) -> String {
    let (whole, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A histogram's series from fixed buckets, counted in µs and written in
/// seconds when `seconds`, else written as counted.
fn buckets(m: &mut String, name: &str, labels: &str, b: &BucketCounts, seconds: bool) {
    let scale = if seconds { 1e-6 } else { 1.0 };
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in b.bounds.iter().zip(&b.cumulative) {
        let le = if seconds {
            micros_as_seconds(*bound)
        } else {
            bound.to_string()
        };
        let _ = writeln!(m, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
    }
    let _ = writeln!(m, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", b.count());
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(m, "{name}_sum{braces} {}", b.sum as f64 * scale);
    let _ = writeln!(m, "{name}_count{braces} {}", b.count());
}

/// The engine's per-intent latency (first poll of its batch → broker
/// acknowledgement), from its HDR histogram, in fixed buckets.
fn latency(m: &mut String, s: &StatsSnapshot) {
    let name = "warrant_decision_latency_seconds";
    header(
        m,
        name,
        "Per intent: first poll of its batch to the broker's acknowledgement of its decision and lineage.",
        "histogram",
    );
    let h = &s.latency_us;
    for bound in LATENCY_BOUNDS_US {
        let n = h.count_between(0, bound);
        let _ = writeln!(
            m,
            "{name}_bucket{{le=\"{}\"}} {n}",
            micros_as_seconds(bound)
        );
    }
    let _ = writeln!(m, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    let _ = writeln!(m, "{name}_sum {}", h.mean() * h.len() as f64 * 1e-6);
    let _ = writeln!(m, "{name}_count {}", h.len());
}

/// Connections served at once. When all are taken, the oldest one still
/// waiting for its request head is closed to make room: a probe sends its
/// request at once, so idle connections (a slow or hostile client) can
/// never shut probes and scrapes out.
const MAX_CONNECTIONS: usize = 32;

/// How long a connection may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections still waiting for their request head, oldest first: (id,
/// the sender whose drop closes it).
type Waiting =
    Arc<std::sync::Mutex<std::collections::VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>>>;

/// A running admin server; stops when dropped.
pub struct Server {
    /// The address it listens on (the port chosen, for port 0).
    pub addr: SocketAddr,
    /// One permit per connection slot ([`MAX_CONNECTIONS`]).
    slots: Arc<tokio::sync::Semaphore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Connections being served or waiting for their request head now:
    /// the connection slots in use, out of [`MAX_CONNECTIONS`].
    pub fn connections(&self) -> usize {
        MAX_CONNECTIONS.saturating_sub(self.slots.available_permits())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds the admin port (before anything else starts: a port in use is
/// an error at start-up, with nothing running yet).
pub fn bind(listen: &str) -> Result<std::net::TcpListener, String> {
    std::net::TcpListener::bind(listen).map_err(|e| format!("admin port {listen}: {e}"))
}

/// Serves the endpoints on a listener from [`bind`].
pub fn serve_on(std_listener: std::net::TcpListener, admin: Arc<Admin>) -> Result<Server, String> {
    let listen = std_listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let addr = std_listener
        .local_addr()
        .map_err(|e| format!("admin port {listen}: {e}"))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("admin port {listen}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("admin runtime: {e}"))?;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    // At most this many connections at once: a flood of connections is
    // refused, never allowed to take the process's file descriptors.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let server_slots = Arc::clone(&slots);
    let thread = std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("admin port: {e}");
                        return;
                    }
                };
                let waiting: Waiting = Arc::default();
                let mut next_id = 0u64;
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => {
                                let slot = match Arc::clone(&slots).try_acquire_owned() {
                                    Ok(slot) => slot,
                                    Err(_) => {
                                        // Close the oldest idle one and wait
                                        // (briefly) for its slot.
                                        let evicted = lock_waiting(&waiting).pop_front();
                                        drop(evicted);
                                        match tokio::time::timeout(
                                            Duration::from_millis(100),
                                            Arc::clone(&slots).acquire_owned(),
                                        )
                                        .await
                                        {
                                            Ok(Ok(slot)) => slot,
                                            _ => {
                                                drop(stream);
                                                continue;
                                            }
                                        }
                                    }
                                };
                                next_id += 1;
                                let id = next_id;
                                let (close_tx, close_rx) = tokio::sync::oneshot::channel();
                                lock_waiting(&waiting).push_back((id, close_tx));
                                let (admin, waiting) = (Arc::clone(&admin), Arc::clone(&waiting));
                                tokio::spawn(async move {
                                    let mut stream = stream;
                                    let head = tokio::select! {
                                        _ = close_rx => None,
                                        head = tokio::time::timeout(
                                            HEAD_TIMEOUT,
                                            read_head(&mut stream),
                                        ) => head.ok(),
                                    };
                                    lock_waiting(&waiting).retain(|(i, _)| *i != id);
                                    if let Some(Ok(head)) = head {
                                        let _ = tokio::time::timeout(
                                            Duration::from_secs(5),
                                            handle(stream, head, &admin),
                                        )
                                        .await;
                                    }
                                    drop(slot);
                                });
                            }
                            Err(e) => {
                                tracing::warn!("admin port: accept failed: {e}");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        },
                    }
                }
            });
        })
        .map_err(|e| format!("admin thread: {e}"))?;
    Ok(Server {
        addr,
        slots: server_slots,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

fn lock_waiting(
    w: &Waiting,
) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>>
{
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads one request head: `None` when it is larger than 8 KiB.
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if head.len() > 8 * 1024 {
            return Ok(None);
        }
    }
    Ok(Some(head))
}

/// Answers a request whose head [`read_head`] read.
async fn handle(
    mut stream: tokio::net::TcpStream,
    head: Option<Vec<u8>>,
    admin: &Admin,
) -> std::io::Result<()> {
    let Some(head) = head else {
        return respond(
            &mut stream,
            431,
            "text/plain",
            "request head too large\n",
            false,
        )
        .await;
    };
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut stream, 405, "text/plain", "only GET and HEAD\n", false).await;
    }
    let path = target.split('?').next().unwrap_or("");
    let t = Instant::now();
    let result = match path {
        "/metrics" => {
            let body = admin.metrics();
            respond(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
                head_only,
            )
            .await
        }
        "/healthz" => match admin.probe.failure() {
            None => respond(&mut stream, 200, "text/plain", "ok\n", head_only).await,
            Some(f) => {
                respond(
                    &mut stream,
                    503,
                    "text/plain",
                    &format!("engine stopped: {f}\n"),
                    head_only,
                )
                .await
            }
        },
        "/readyz" => {
            let why = admin.not_ready();
            if why.is_empty() {
                respond(&mut stream, 200, "text/plain", "ready\n", head_only).await
            } else {
                let body: String = why.iter().map(|w| format!("not ready: {w}\n")).collect();
                respond(&mut stream, 503, "text/plain", &body, head_only).await
            }
        }
        "/" => {
            respond(
                &mut stream,
                200,
                "text/plain",
                "warrant admin: /metrics /healthz /readyz\n",
                head_only,
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                404,
                "text/plain",
                "not found: try /metrics /healthz /readyz\n",
                head_only,
            )
            .await
        }
    };
    tracing::debug!(
        path,
        elapsed_us = t.elapsed().as_micros() as u64,
        "admin request"
    );
    result
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    code: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::micros_as_seconds;

    #[test]
    fn idle_connections_never_shut_out_a_probe() {
        use std::io::{Read, Write};
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        use warrant_engine::pipeline::{Config, Engine};
        use warrant_engine::seal::EngineKey;
        use warrant_engine::transport::embedded::{Collector, Topic};
        use warrant_engine::trust::TrustStore;
        let topic = Topic::new(1, 16);
        let store = Arc::new(warrant_policy::PolicyStore::new());
        let engine = Engine::start(
            Config {
                partitions: 1,
                ..Config::default()
            },
            topic.consumer(),
            Collector::new(),
            EngineKey::from_seed([5; 32]),
            Arc::new(arc_swap::ArcSwap::from_pointee(TrustStore::new())),
            Arc::clone(&store),
        )
        .unwrap();
        let admin = Arc::new(super::Admin {
            probe: engine.probe(),
            policy: store,
            broker_reachable: Arc::new(AtomicBool::new(true)),
            stopping: Arc::new(AtomicBool::new(false)),
            lag: None,
            queue_capacity: [4; 6],
            started: std::time::SystemTime::now(),
            trust: Arc::default(),
        });
        let server = super::serve_on(super::bind("127.0.0.1:0").unwrap(), admin.clone()).unwrap();
        // More idle connections than there are slots, each holding one
        // open without a request (they once shut every probe out for 5 s
        // at a time, renewed as they timed out).
        let idle: Vec<_> = (0..2 * super::MAX_CONNECTIONS)
            .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
            .collect();
        // The probe comes once the idle ones hold every slot.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while server.connections() < super::MAX_CONNECTIONS {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {} slots taken by idle connections",
                server.connections(),
                super::MAX_CONNECTIONS
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Answered well within the head timeout (2 s), after which an
        // idle connection would free its slot by itself.
        let mut probe = std::net::TcpStream::connect(server.addr).unwrap();
        probe
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        probe
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = probe.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "got {answer:?}");
        assert!(answer.ends_with("ok\n"), "got {answer:?}");
        // A trust source that cannot be read shows in readiness and in
        // the metrics, until it can.
        assert!(admin.metrics().contains("\nwarrant_trust_current 1\n"));
        admin.trust.topic(Some("keys topic: unreachable".into()));
        assert!(
            admin
                .not_ready()
                .iter()
                .any(|w| w.contains("trust store may be stale") && w.contains("unreachable")),
            "{:?}",
            admin.not_ready()
        );
        assert!(admin.metrics().contains("\nwarrant_trust_current 0\n"));
        admin.trust.topic(None);
        assert!(admin.metrics().contains("\nwarrant_trust_current 1\n"));
        drop(idle);
        drop(server);
        topic.close();
        engine.join().unwrap();
    }

    #[test]
    fn trust_health_reports_what_cannot_be_read_until_it_can() {
        let h = super::TrustHealth::default();
        assert!(h.problems().is_empty());
        h.topic(Some("keys topic: broker transport failure".into()));
        h.file(Some("trust.toml: line 3: bad key".into()));
        assert_eq!(h.problems().len(), 2);
        h.topic(None);
        assert_eq!(h.problems(), ["trust.toml: line 3: bad key"]);
        h.file(None);
        assert!(h.problems().is_empty());
    }

    #[test]
    fn bucket_bounds_are_written_as_exact_decimals() {
        for (us, want) in [
            (0, "0"),
            (10, "0.00001"),
            (25_000, "0.025"),
            (100_000, "0.1"),
            (1_000_000, "1"),
            (2_500_000, "2.5"),
            (10_000_001, "10.000001"),
        ] {
            assert_eq!(micros_as_seconds(us), want);
        }
    }
}
