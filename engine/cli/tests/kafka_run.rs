//! `warrant run` as a user runs it: the real binary, a real broker (Tansu,
//! started by `scripts/broker.sh`), real signals.
//!
//! - `--check` passes on a good setup and names what is wrong otherwise;
//! - kill -9 of the engine mid-stream, then a restart: every intent gets a
//!   decision, re-emitted decisions keep their verdict, and the lineage log
//!   continues the killed instance's chain (it verifies end to end);
//! - two instances in one consumer group share the partitions; when one is
//!   killed the other takes them all over and nothing is left undecided;
//! - the broker stopped and restarted mid-stream: the engine recovers by
//!   itself, `/readyz` says not ready meanwhile, and intents whose deadline
//!   passed meanwhile are denied;
//! - loadgen drives the engine over Kafka: `/metrics` parses as Prometheus
//!   text and its counters match loadgen's counts; removing the policy
//!   makes `/readyz` not ready and every intent denied "no policy", and
//!   restoring it makes it ready again.
//!
//! The tests run one at a time (they share the machine's two cores and, but
//! for the broker-restart test, which has its own, one broker).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use warrant_connectors::kafka::fresh_topics;
use warrant_engine::lineage::file::by_partition;
use warrant_engine::lineage::verify_log;
use warrant_engine::pipeline::now_us;
use warrant_engine::seal::EngineKey;
use warrant_engine::trust::{KeyState, TrustStore};
use warrant_schemas::wire::Reason;
use warrant_schemas::{IntentFields, IntentSigner, open_decision, open_lineage_record};

/// One test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PARTITIONS: i32 = 4;
const PRINCIPALS: [&str; 6] = ["svc-a", "svc-b", "svc-c", "svc-d", "svc-e", "svc-f"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The broker at `WARRANT_BROKER_PORT=port`, started by the script (it
/// installs Tansu if absent).
fn broker(command: &str, port: Option<u16>) -> String {
    if command == "start"
        && port.is_none()
        && let Ok(b) = std::env::var("WARRANT_KAFKA_BROKERS")
    {
        return b;
    }
    let mut c = Command::new(repo().join("scripts/broker.sh"));
    c.arg(command);
    if let Some(port) = port {
        // The script's default directory for that port: a directory set
        // for the suite's broker must not be shared (or wiped).
        c.env("WARRANT_BROKER_PORT", port.to_string())
            .env_remove("WARRANT_BROKER_DIR");
    }
    let out = c.output().expect("runs broker.sh");
    assert!(
        out.status.success(),
        "scripts/broker.sh {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A broker of a test's own on `port`, started on wiped data (nothing of
/// an earlier run in it) and stopped when dropped, whether the test
/// passed or not.
struct OwnBroker {
    port: u16,
    brokers: String,
}

impl OwnBroker {
    fn start(port: u16) -> OwnBroker {
        broker("wipe", Some(port));
        let brokers = broker("start", Some(port));
        OwnBroker { port, brokers }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        // Not `broker()`: no panic while a failed test unwinds.
        let _ = Command::new(repo().join("scripts/broker.sh"))
            .arg("stop")
            .env("WARRANT_BROKER_PORT", self.port.to_string())
            .env_remove("WARRANT_BROKER_DIR")
            .stdout(Stdio::null())
            .status();
    }
}

/// Sets the flag when dropped: a producer told to run until it is set
/// stops even when the test fails first (a scoped thread that never ends
/// would hang the test instead of failing it).
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Topics, keys, trust store, policy and `warrant.toml` for one test.
struct Rig {
    dir: PathBuf,
    brokers: String,
    intents: String,
    decisions: String,
    lineage: String,
    signers: Vec<IntentSigner>,
    engine_public: [u8; 32],
}

impl Rig {
    fn new(name: &str, brokers: &str) -> Rig {
        let signers: Vec<IntentSigner> = (0..PRINCIPALS.len())
            .map(|i| IntentSigner::from_seed([i as u8 + 1; 32]))
            .collect();
        let mut trust = TrustStore::new();
        for (p, s) in PRINCIPALS.iter().zip(&signers) {
            trust.add(p, s.public_key(), KeyState::Active).unwrap();
        }
        Rig::with(
            name,
            brokers,
            signers,
            &trust.to_toml(),
            "[policy]\nname = \"test\"\nversion = 1\n\
             [[rule]]\nid = \"no-refunds\"\neffect = \"deny\"\naction = \"refund\"\n\
             [[rule]]\nid = \"allow\"\neffect = \"allow\"\n",
        )
    }

    /// A rig whose engine trusts `trust` (TOML) and runs `policy` (TOML).
    fn with(
        name: &str,
        brokers: &str,
        signers: Vec<IntentSigner>,
        trust: &str,
        policy: &str,
    ) -> Rig {
        let topics = fresh_topics(brokers, name, PARTITIONS).unwrap();
        let unique = topics.group_id.trim_start_matches("g-").to_owned();
        let dir = std::env::temp_dir().join(format!("warrant-run-{unique}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (intents, decisions, lineage) = (
            topics.intents_topic,
            topics.decisions_topic,
            topics.lineage_topic,
        );

        let key = EngineKey::generate(&dir.join("engine.key")).unwrap();
        std::fs::write(dir.join("trust.toml"), trust).unwrap();
        std::fs::write(dir.join("policy.toml"), policy).unwrap();
        // Brokers come from the environment (WARRANT_KAFKA_BROKERS), as a
        // deployment would set them. These tests check the verdict each
        // intent deserves; a debug build sharing 2 cores with the broker
        // can stall past the default 100 ms `shed_after` while catching up
        // a backlog, and the fail-closed "overloaded" deny that follows is
        // not what they test (engine/tests/overload.rs does): so 5 s.
        std::fs::write(
            dir.join("warrant.toml"),
            format!(
                "[kafka]\n\
                 group_id = \"g-{unique}\"\n\
                 intents_topic = \"{intents}\"\n\
                 decisions_topic = \"{decisions}\"\n\
                 lineage_topic = \"{lineage}\"\n\
                 sink_timeout_ms = 1000\n\
                 [kafka.properties]\n\
                 \"session.timeout.ms\" = \"6000\"\n\
                 \"heartbeat.interval.ms\" = \"500\"\n\
                 [engine]\n\
                 pin = false\n\
                 shed_after_ms = 5000\n\
                 [policy]\n\
                 path = \"policy.toml\"\n\
                 watch_ms = 100\n\
                 [admin]\n\
                 listen = \"127.0.0.1:0\"\n"
            ),
        )
        .unwrap();
        Rig {
            dir,
            brokers: brokers.to_owned(),
            intents,
            decisions,
            lineage,
            signers,
            engine_public: key.public_key(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_warrant"));
        c.args(args)
            .arg("--config")
            .arg(self.dir.join("warrant.toml"))
            .env("WARRANT_KAFKA_BROKERS", &self.brokers);
        c
    }

    /// Starts `warrant run`; its output goes to `<name>.log`.
    fn spawn(&self, name: &str) -> Instance {
        self.spawn_with(name, &[])
    }

    /// Starts `warrant run` with more environment (setting overrides).
    fn spawn_with(&self, name: &str, env: &[(&str, &str)]) -> Instance {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command(&["run", "--status-every", "1"])
            .envs(env.iter().copied())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        Instance { child, log }
    }

    /// Signs intent `i` (ids `i`, principal `i % 6`); refunds (every 7th)
    /// are denied by policy.
    fn intent(&self, i: u64, deadline_us: u64) -> (&'static str, Vec<u8>) {
        self.intent_with_nonce(i, i, deadline_us)
    }

    /// Intent `i` with the nonce of intent `nonce_of`.
    fn intent_with_nonce(
        &self,
        i: u64,
        nonce_of: u64,
        deadline_us: u64,
    ) -> (&'static str, Vec<u8>) {
        let p = (i as usize) % PRINCIPALS.len();
        let now = now_us();
        let bytes = self.signers[p].sign_intent(&IntentFields {
            id: u128::from(i).to_le_bytes(),
            nonce: u128::from(nonce_of).to_le_bytes(),
            principal: PRINCIPALS[p],
            action: if i.is_multiple_of(7) {
                "refund"
            } else {
                "transfer"
            },
            issued_at_us: now,
            deadline_us,
            ..IntentFields::example()
        });
        (PRINCIPALS[p], bytes)
    }

    fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "1")
            .create()
            .unwrap()
    }

    /// Produces intents `ids` at about `rate` per second, deadline in 5 min.
    fn produce(&self, ids: std::ops::Range<u64>, rate: u64) {
        self.paced(ids, rate, |_| true);
    }

    /// Produces intents 0, 1, 2, ... at about `rate` per second, deadline
    /// in 5 min, until `stop` is set; `sent` counts those produced so far.
    /// Returns how many it produced (all flushed).
    fn produce_until(&self, stop: &AtomicBool, sent: &AtomicU64, rate: u64) -> u64 {
        let n = self.paced(0.., rate, |n| {
            sent.store(n, Ordering::Release);
            !stop.load(Ordering::Acquire)
        });
        sent.store(n, Ordering::Release);
        n
    }

    /// Produces intents `ids` at about `rate` per second, deadline in 5 min,
    /// while `go_on(produced so far)` says so; returns how many it produced
    /// (all flushed).
    fn paced(
        &self,
        ids: impl Iterator<Item = u64>,
        rate: u64,
        mut go_on: impl FnMut(u64) -> bool,
    ) -> u64 {
        let producer = self.producer();
        let started = Instant::now();
        let mut n = 0;
        for i in ids {
            if !go_on(n) {
                break;
            }
            let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (key, bytes) = self.intent(i, now_us() + 300_000_000);
            send(&producer, &self.intents, key, &bytes);
            producer.poll(Duration::ZERO);
            n += 1;
        }
        producer.flush(Duration::from_secs(60)).unwrap();
        n
    }

    /// Decisions on the topic by intent id (in the order read), once every
    /// id in `ids` has at least one, or after `timeout`.
    fn decisions(
        &self,
        ids: std::ops::Range<u64>,
        timeout: Duration,
    ) -> BTreeMap<u64, Vec<Reason>> {
        let consumer = reader(&self.brokers, &self.decisions);
        let mut by_id: BTreeMap<u64, Vec<Reason>> = BTreeMap::new();
        let deadline = Instant::now() + timeout;
        let mut last = Instant::now();
        while Instant::now() < deadline {
            let complete = ids.clone().all(|i| by_id.contains_key(&i));
            if complete && last.elapsed() > Duration::from_secs(1) {
                break;
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let d = open_decision(m.payload().unwrap(), &Default::default()).unwrap();
                assert_eq!(m.key().unwrap(), &d.intent_id().0[..], "keyed by intent id");
                let id = u64::try_from(u128::from_le_bytes(d.intent_id().0)).unwrap();
                by_id.entry(id).or_default().push(d.reason());
                last = Instant::now();
            }
        }
        by_id
    }

    /// Verifies every partition's lineage log as read from the topic, and
    /// that every decision in `decided` is logged (an intent decided twice,
    /// twice); returns the records.
    fn verify_lineage(&self, decided: &BTreeMap<u64, Vec<Reason>>) -> u64 {
        self.verify_lineage_with(decided, &[self.engine_public])
    }

    /// As `verify_lineage`, accepting checkpoints signed by any of `keys`.
    /// Reads the topic until every decision in `decided` has its record
    /// and a second passed without more (or 120 s passed).
    fn verify_lineage_with(&self, decided: &BTreeMap<u64, Vec<Reason>>, keys: &[[u8; 32]]) -> u64 {
        assert!(!decided.is_empty(), "no decisions to look for");
        let consumer = reader(&self.brokers, &self.lineage);
        let mut frames = Vec::new();
        let mut logged: BTreeMap<u64, Vec<Reason>> = BTreeMap::new();
        let all_logged = |logged: &BTreeMap<u64, Vec<Reason>>| {
            decided
                .iter()
                .all(|(id, reasons)| logged.get(id).map_or(0, Vec::len) >= reasons.len())
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = Instant::now();
        while Instant::now() < deadline {
            if last.elapsed() > Duration::from_secs(1) && all_logged(&logged) {
                break;
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let frame = m.payload().unwrap().to_vec();
                if frame.get(4..8) != Some(warrant_schemas::CHECKPOINT_IDENTIFIER.as_bytes()) {
                    let r = open_lineage_record(&frame, &Default::default()).unwrap();
                    let id = u64::try_from(u128::from_le_bytes(r.intent_id().0)).unwrap();
                    logged.entry(id).or_default().push(r.reason());
                }
                frames.push((m.partition() as u32, frame));
                last = Instant::now();
            }
        }
        let mut records = 0;
        for (p, f) in by_partition(&frames) {
            records += verify_log(p, &f.records, &f.checkpoints, keys)
                .unwrap_or_else(|e| panic!("lineage partition {p}: {e}"))
                .records;
        }
        // Lineage is written before decisions: a kill between the two
        // leaves a logged intent without a decision (decided again after
        // the restart), never a decision without its lineage record.
        for (id, reasons) in decided {
            let l = logged.get(id).map_or(0, Vec::len);
            assert!(
                l >= reasons.len(),
                "intent {id}: {} decisions but {l} lineage records",
                reasons.len()
            );
        }
        records
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn send(producer: &BaseProducer, topic: &str, key: &str, bytes: &[u8]) {
    let mut record = BaseRecord::to(topic).key(key).payload(bytes);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                producer.poll(Duration::from_millis(5));
                record = r;
            }
        }
    }
}

fn reader(brokers: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{topic}-{}", now_us()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// A running `warrant run`.
struct Instance {
    child: Child,
    log: PathBuf,
}

impl Instance {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until a log line satisfies `f`; panics with the log after `timeout`.
    fn wait_for(&mut self, what: &str, timeout: Duration, f: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().lines().any(&f) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited ({status}) waiting for {what}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no {what} after {timeout:?}:\n{}", self.log());
    }

    /// The partitions this instance owns now, by its log: an assignment
    /// replaces the set, a revocation removes from it.
    fn assigned(&self) -> Vec<u32> {
        let parse = |l: &str| -> Vec<u32> {
            l.trim_matches(|c| c == '[' || c == ']')
                .split(", ")
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect()
        };
        let mut owned = Vec::new();
        for line in self.log().lines() {
            // Log lines start with a timestamp and a level.
            let after = |what: &str| line.find(what).map(|i| &line[i + what.len()..]);
            if let Some(l) = after("assigned partitions ") {
                owned = parse(l);
            } else if let Some(l) = after("revoked partitions ") {
                let gone = parse(l);
                owned.retain(|p| !gone.contains(p));
            }
        }
        owned
    }

    /// The admin port's address, from the log.
    fn admin(&mut self) -> String {
        const AT: &str = "admin: listening on ";
        self.wait_for("the admin port", Duration::from_secs(60), |l| {
            l.contains(AT)
        });
        let log = self.log();
        let line = log.lines().find(|l| l.contains(AT)).unwrap();
        let rest = &line[line.find(AT).unwrap() + AT.len()..];
        rest.split_whitespace().next().unwrap().to_owned()
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status must be success (a clean drain).
    fn terminate(mut self) -> String {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log();
                assert!(status.success(), "exit {status}:\n{log}");
                assert!(log.contains("stopped"), "{log}");
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Instance {
    /// A failed test must not leave an engine running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on the admin port: status code and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: warrant\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.get(9..12).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap();
    (code, body)
}

/// Polls `GET path` until its status is `code`; returns the body.
fn wait_status(addr: &str, path: &str, code: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (c, body) = get(addr, path);
        if c == code {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still {c} after {timeout:?}, not {code}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every id has a decision, all of an id's decisions have one verdict, and
/// the verdict is the one the intent deserves. Returns how many decisions
/// were re-emitted.
fn check_decisions(by_id: &BTreeMap<u64, Vec<Reason>>, ids: std::ops::Range<u64>) -> usize {
    let mut again = 0;
    for i in ids {
        let reasons = by_id
            .get(&i)
            .unwrap_or_else(|| panic!("intent {i} has no decision"));
        let want = if i.is_multiple_of(7) {
            Reason::DenyRule
        } else {
            Reason::Authorized
        };
        assert!(
            reasons.iter().all(|r| *r == want),
            "intent {i}: decisions {reasons:?}, every one should be {want:?}"
        );
        again += reasons.len() - 1;
    }
    again
}

#[test]
fn check_validates_the_setup_and_the_broker() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("check", &broker("start", None));
    let out = rig.command(&["run", "--check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("topic {}, 4 partitions", rig.lineage)),
        "{stdout}"
    );
    assert!(stdout.ends_with("check: ok\n"), "{stdout}");

    // A lineage topic that retention can cut (the broker's default) is
    // refused: it is the audit trail, and takeovers resume from it.
    let loose = rig.lineage.replacen("lineage-", "looselineage-", 1);
    warrant_connectors::kafka::create_topics(&rig.brokers, &[&loose], 4).unwrap();
    // Compacted intents or decisions topics keep one record per key: they
    // would drop undecided intents, or an authorization for a later deny.
    let compacted = rig.intents.replacen("intents-", "compacted-", 1);
    warrant_connectors::kafka::create_topics_with(
        &rig.brokers,
        &[&compacted],
        4,
        &[("cleanup.policy", "compact")],
    )
    .unwrap();

    // Each kind of mistake fails with a message naming it.
    let cases: [(&str, &str, &str); 7] = [
        (
            "WARRANT_KAFKA_LINEAGE_TOPIC",
            loose.as_str(),
            "retention.ms=604800000: retention would delete lineage records",
        ),
        (
            "WARRANT_KAFKA_INTENTS_TOPIC",
            compacted.as_str(),
            "cleanup.policy=compact: compaction keeps only the latest record per key",
        ),
        (
            "WARRANT_KAFKA_DECISIONS_TOPIC",
            compacted.as_str(),
            "cleanup.policy=compact: compaction keeps only the latest record per key",
        ),
        (
            "WARRANT_KAFKA_INTENTS_TOPIC",
            "no-such-topic",
            "`no-such-topic`: does not exist",
        ),
        (
            "WARRANT_ENGINE_MAX_BATCH",
            "lots",
            "WARRANT_ENGINE_MAX_BATCH",
        ),
        (
            "WARRANT_TRUST_FILE",
            "/nonexistent/trust.toml",
            "/nonexistent/trust.toml",
        ),
        ("WARRANT_KAFKA_BROKERS", "127.0.0.1:1", "127.0.0.1:1"),
    ];
    for (name, value, want) in cases {
        let out = rig
            .command(&["run", "--check"])
            .env(name, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}={value}: {stderr}");
        assert!(stderr.contains(want), "{name}={value}: {stderr}");
    }
}

#[test]
fn kill_9_mid_stream_then_restart_leaves_nothing_undecided() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("kill", &broker("start", None));
    let mut first = rig.spawn("first");
    first.wait_for("an assignment", Duration::from_secs(60), |l| {
        l.contains("assigned partitions [0")
    });
    let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        let _stop_producing = SetOnDrop(&stop);
        // Mid-stream by construction: the producer runs until told to stop,
        // after the kill and the restart.
        let producing = s.spawn(|| rig.produce_until(&stop, &sent, 1_000));
        // Some decided, more still coming.
        first.wait_for("decisions", Duration::from_secs(60), |l| {
            l.contains("status:") && !l.contains("decisions 0 ")
        });
        std::thread::sleep(Duration::from_millis(500));
        first.kill9();
        let at_kill = sent.load(Ordering::Acquire);
        let mut second = rig.spawn("second");
        second.wait_for("an assignment", Duration::from_secs(60), |l| {
            l.contains("assigned partitions [0")
        });
        // The second instance gets some of the stream live, too.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Release);
        let produced = producing.join().unwrap();
        assert!(
            produced > at_kill,
            "{produced} intents, {at_kill} at the kill"
        );
        // A different intent reusing the nonce of intent 4 (same
        // principal, svc-e: ids 4 mod 6), which the killed instance
        // decided: the new instance remembers it from the lineage log, so
        // it is a replay. Its id is the next one that is 4 mod 6.
        let n = produced + (10 - produced % 6) % 6;
        rig.produce(produced..n, 1_000);
        let (key, bytes) = rig.intent_with_nonce(n, 4, now_us() + 300_000_000);
        let producer = rig.producer();
        send(&producer, &rig.intents, key, &bytes);
        producer.flush(Duration::from_secs(30)).unwrap();
        let mut by_id = rig.decisions(0..n + 1, Duration::from_secs(120));
        assert_eq!(by_id.remove(&n), Some(vec![Reason::ReplayedNonce]));
        let again = check_decisions(&by_id, 0..n);
        let log = second.terminate();
        let records = rig.verify_lineage(&by_id);
        eprintln!(
            "kill -9: {n} intents ({at_kill} sent before the kill), {} decisions ({again} re-emitted after the restart), \
             {records} lineage records verified across both instances",
            by_id.values().map(Vec::len).sum::<usize>()
        );
        assert!(log.contains("running"), "{log}");
    });
}

#[test]
fn two_instances_share_the_partitions_and_one_takes_over_from_the_other() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("group", &broker("start", None));
    let mut a = rig.spawn("a");
    a.wait_for("an assignment", Duration::from_secs(60), |l| {
        l.contains("assigned partitions [0")
    });
    let (stop, sent) = (AtomicBool::new(false), AtomicU64::new(0));
    std::thread::scope(|s| {
        let _stop_producing = SetOnDrop(&stop);
        // Mid-stream by construction: the producer runs until told to stop,
        // once the take-over is done.
        let producing = s.spawn(|| rig.produce_until(&stop, &sent, 1_000));
        std::thread::sleep(Duration::from_millis(800));
        let b = rig.spawn("b");
        // B joins: the group splits the partitions between them.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (pa, pb) = (a.assigned(), b.assigned());
            if !pa.is_empty() && !pb.is_empty() && pa.len() + pb.len() == PARTITIONS as usize {
                let mut all = [pa, pb].concat();
                all.sort_unstable();
                assert_eq!(all, [0, 1, 2, 3], "each partition has one owner");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no shared assignment:\n--- a\n{}\n--- b\n{}",
                a.log(),
                b.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            a.log().contains("revoked partitions [0, 1, 2, 3]"),
            "{}",
            a.log()
        );
        // Both decide for a while, then A dies. A replacement C starts, as
        // a supervisor would start one; between them, B and C own every
        // partition again, each once. (Apache Kafka also rebalances the
        // survivor alone once A's session expires; Tansu 0.6.0 does not:
        // see connectors/README.md.)
        std::thread::sleep(Duration::from_millis(1_000));
        a.kill9();
        let at_kill = sent.load(Ordering::Acquire);
        let c = rig.spawn("c");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut all = [b.assigned(), c.assigned()].concat();
            all.sort_unstable();
            if all == [0, 1, 2, 3] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "partitions not taken over:\n--- b\n{}\n--- c\n{}",
                b.log(),
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Release);
        let n = producing.join().unwrap();
        assert!(n > at_kill, "{n} intents, {at_kill} at the kill");
        let by_id = rig.decisions(0..n, Duration::from_secs(120));
        let again = check_decisions(&by_id, 0..n);
        b.terminate();
        c.terminate();
        let records = rig.verify_lineage(&by_id);
        eprintln!(
            "consumer group: {n} intents ({at_kill} sent before the kill), {again} re-emitted \
             after the take-over, {records} lineage records verified"
        );
    });
}

#[test]
fn the_engine_recovers_by_itself_from_a_broker_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A broker of its own, to stop and start.
    const PORT: u16 = 19_193;
    let own = OwnBroker::start(PORT);
    let rig = Rig::new("restart", &own.brokers);
    let mut engine = rig.spawn("engine");
    engine.wait_for("an assignment", Duration::from_secs(60), |l| {
        l.contains("assigned partitions [0")
    });
    let admin = engine.admin();
    rig.produce(0..500, 2_000);
    let before = rig.decisions(0..500, Duration::from_secs(60));
    check_decisions(&before, 0..500);
    wait_status(&admin, "/readyz", 200, Duration::from_secs(30));

    // Broker down. A producer queues intents meanwhile: some whose
    // deadline passes before the broker is back, some that can wait.
    broker("stop", Some(PORT));
    let producer = rig.producer();
    let short = now_us() + 1_000_000;
    for i in 500..800 {
        let (key, bytes) = rig.intent(i, short);
        send(&producer, &rig.intents, key, &bytes);
    }
    for i in 800..1_000 {
        let (key, bytes) = rig.intent(i, now_us() + 300_000_000);
        send(&producer, &rig.intents, key, &bytes);
    }
    // Past the short deadline before the broker is back.
    std::thread::sleep(Duration::from_secs(4));
    // Not ready while the broker is away; healthy all along.
    let why = wait_status(&admin, "/readyz", 503, Duration::from_secs(30));
    assert!(why.contains("broker"), "{why}");
    assert_eq!(get(&admin, "/healthz").0, 200);
    assert!(
        engine.child.try_wait().unwrap().is_none(),
        "{}",
        engine.log()
    );
    broker("start", Some(PORT));
    wait_status(&admin, "/readyz", 200, Duration::from_secs(60));
    producer.flush(Duration::from_secs(120)).unwrap();
    rig.produce(1_000..1_500, 2_000);

    let by_id = rig.decisions(0..1_500, Duration::from_secs(180));
    check_decisions(&by_id, 0..500);
    check_decisions(&by_id, 800..1_500);
    // Read after their deadline: denied, never authorized late.
    for i in 500..800 {
        let reasons = &by_id[&i];
        assert!(
            reasons.iter().all(|r| *r == Reason::DeadlineExceeded),
            "intent {i}: {reasons:?}"
        );
    }
    let log = engine.terminate();
    let records = rig.verify_lineage(&by_id);
    assert!(records >= 1_500);
    eprintln!(
        "broker restart: 1500 intents decided, 300 past their deadline denied; engine log:\n{log}"
    );
}

/// A sample's value from a scrape: the named metric with these labels (a
/// histogram gives its +Inf bucket, the count).
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus_parse::Value;
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(b) => b.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

fn scrape(admin: &str) -> prometheus_parse::Scrape {
    let (code, body) = get(admin, "/metrics");
    assert_eq!(code, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

#[test]
fn metrics_match_loadgen_and_readiness_follows_the_policy() {
    use warrant_engine::workload::{Mix, Shape};
    use warrant_loadgen::drive::Load;
    use warrant_loadgen::kafka::KafkaOptions;
    use warrant_loadgen::target::TargetSpec;

    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let brokers = broker("start", None);
    // The engine trusts loadgen's principals and runs the example policy
    // loadgen's mix is built for.
    let principals = 8;
    let trust = warrant_engine::workload::trust_store(principals)
        .unwrap()
        .to_toml();
    let policy = std::fs::read_to_string(repo().join("examples/policy/payments.toml")).unwrap();
    let rig = Rig::with("metrics", &brokers, Vec::new(), &trust, &policy);
    let mut engine = rig.spawn("engine");
    engine.wait_for("an assignment", Duration::from_secs(60), |l| {
        l.contains("assigned partitions [0")
    });
    let admin = engine.admin();
    wait_status(&admin, "/readyz", 200, Duration::from_secs(60));
    assert_eq!(get(&admin, "/healthz"), (200, "ok\n".to_owned()));

    let mut options = KafkaOptions::new(&brokers);
    options.intents_topic.clone_from(&rig.intents);
    options.decisions_topic.clone_from(&rig.decisions);
    let target = TargetSpec::Kafka(options);
    let load = |rate: f64, secs: u64, mix: Mix| Load {
        rate,
        duration: Duration::from_secs(secs),
        shape: Shape {
            principals,
            mix,
            deadline: Duration::from_secs(60),
            ..Shape::default()
        },
        drain_timeout: Duration::from_secs(120),
        ..Load::default()
    };

    // Every kind of intent, through Kafka.
    let o = warrant_loadgen::run(&target, &load(300.0, 5, Mix::default()), &mut |_| {}).unwrap();
    println!("{}", warrant_loadgen::report::summary(&o));
    assert!(o.violations().is_empty(), "{:?}", o.violations());
    assert_eq!(o.decided, o.sent);
    assert_eq!(o.sent, 1_500);

    // The engine counts a decision once the broker acknowledged it, which
    // can be just after loadgen read it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let m = loop {
        let m = scrape(&admin);
        let decided: f64 = m
            .samples
            .iter()
            .filter(|s| s.metric == "warrant_decisions_total")
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => 0.0,
            })
            .sum();
        if decided as u64 >= o.decided || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let n = |metric: &str, labels: &[(&str, &str)]| {
        sample(&m, metric, labels).unwrap_or_else(|| panic!("no {metric} {labels:?}"))
    };
    assert_eq!(n("warrant_intents_total", &[]) as u64, o.sent);
    let mut total = 0;
    for r in warrant_schemas::wire::Reason::ENUM_VALUES {
        let name = r.variant_name().unwrap();
        let got = n("warrant_decisions_total", &[("reason", name)]) as u64;
        assert_eq!(got, o.by_reason.get(name).copied().unwrap_or(0), "{name}");
        total += got;
    }
    assert_eq!(total, o.decided);
    assert_eq!(
        n("warrant_decisions_total", &[("verdict", "authorize")]) as u64,
        o.by_reason["Authorized"]
    );
    assert_eq!(
        n("warrant_fail_closed_total", &[("reason", "Malformed")]) as u64,
        o.by_reason["Malformed"]
    );
    assert_eq!(n("warrant_lineage_records_total", &[]) as u64, o.decided);
    assert_eq!(n("warrant_decision_latency_seconds", &[]) as u64, o.decided);
    assert_eq!(
        n("warrant_decision_latency_seconds_count", &[]) as u64,
        o.decided
    );
    assert_eq!(n("warrant_batch_size_sum", &[]) as u64, o.sent);
    assert!(n("warrant_stage_duration_seconds", &[("stage", "verify")]) >= 1.0);
    assert_eq!(n("warrant_ready", &[]), 1.0);
    assert_eq!(n("warrant_policy_loaded", &[]), 1.0);
    for q in warrant_engine::pipeline::QUEUES {
        assert!(n("warrant_queue_capacity", &[("queue", q)]) >= 1.0);
        n("warrant_queue_depth", &[("queue", q)]);
    }
    // Consumer lag comes from librdkafka's statistics every 5 s: once
    // everything is read, every owned partition with a known position is
    // 0 behind (a partition no principal maps to has none).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(&admin);
        let lags: Vec<f64> = m
            .samples
            .iter()
            .filter(|s| s.metric == "warrant_consumer_lag")
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                _ => -1.0,
            })
            .collect();
        if !lags.is_empty() && lags.iter().all(|l| *l == 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "consumer lag {lags:?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // The policy removed: not ready, and every intent denied "no policy".
    let file = rig.dir.join("policy.toml");
    let aside = rig.dir.join("policy.toml.off");
    std::fs::rename(&file, &aside).unwrap();
    let why = wait_status(&admin, "/readyz", 503, Duration::from_secs(30));
    assert!(why.contains("no policy"), "{why}");
    assert_eq!(
        sample(&scrape(&admin), "warrant_policy_loaded", &[]),
        Some(0.0)
    );
    let denied =
        warrant_loadgen::run(&target, &load(100.0, 2, Mix::valid_only()), &mut |_| {}).unwrap();
    assert_eq!(denied.decided, denied.sent);
    assert_eq!(denied.by_reason.get("NoPolicy"), Some(&denied.sent));
    assert_eq!(denied.hostile_authorized, 0);

    // Back: ready, and valid intents authorized again.
    std::fs::rename(&aside, &file).unwrap();
    wait_status(&admin, "/readyz", 200, Duration::from_secs(30));
    let back =
        warrant_loadgen::run(&target, &load(100.0, 2, Mix::valid_only()), &mut |_| {}).unwrap();
    assert!(back.violations().is_empty(), "{:?}", back.violations());
    assert_eq!(back.by_reason.get("Authorized"), Some(&back.sent));
    let log = engine.terminate();
    assert!(log.contains("not ready: no policy loaded"), "{log}");
    assert!(log.contains("policy reloaded"), "{log}");
}

#[test]
fn keys_rotate_and_revoke_while_the_engine_runs_and_its_own_key_rotates() {
    use warrant_engine::seal::{DecisionError, EngineKeys, verify_decision};

    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let brokers = broker("start", None);
    let rig = Rig::new("keys", &brokers);
    // A keys topic that retention can empty (the broker's default,
    // cleanup.policy=delete) is refused: a revocation on it would expire.
    let loose = rig.intents.replacen("intents-", "loosekeys-", 1);
    warrant_connectors::kafka::create_topics(&brokers, &[&loose], 1).unwrap();
    let kafka = warrant_connectors::kafka::KafkaConfig::new(&brokers);
    let refused = warrant_connectors::kafka::KeyTopic::open(&kafka, &loose)
        .err()
        .expect("a keys topic without compaction is refused")
        .to_string();
    assert!(refused.contains("cleanup.policy=delete"), "{refused}");
    let keys_topic = rig.intents.replacen("intents-", "keys-", 1);
    warrant_connectors::kafka::create_topics_with(
        &brokers,
        &[&keys_topic],
        1,
        &[("cleanup.policy", "compact")],
    )
    .unwrap();
    assert!(warrant_connectors::kafka::KeyTopic::open(&kafka, &keys_topic).is_ok());
    let config = rig.dir.join("warrant.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[trust]\ntopic = \"{keys_topic}\"\nwatch_ms = 100\n"
    ));
    std::fs::write(&config, text).unwrap();
    let mut engine = rig.spawn("engine");
    engine.wait_for("an assignment", Duration::from_secs(60), |l| {
        l.contains("assigned partitions [0")
    });

    // svc-a signs with K1 (in the trust file); K2 is its next key.
    let k1 = &rig.signers[0];
    let k2 = IntentSigner::from_seed([0x77; 32]);
    let producer = rig.producer();
    let mut sent: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut produce = |i: u64, principal: &'static str, signer: &IntentSigner| {
        let bytes = signer.sign_intent(&IntentFields {
            id: u128::from(i).to_le_bytes(),
            nonce: u128::from(i).to_le_bytes(),
            principal,
            action: "transfer",
            issued_at_us: now_us(),
            deadline_us: now_us() + 300_000_000,
            ..IntentFields::example()
        });
        send(&producer, &rig.intents, principal, &bytes);
        producer.flush(Duration::from_secs(30)).unwrap();
        sent.insert(i, bytes);
    };
    // `warrant keys` for svc-a's key `key`, then wait until the engine
    // applied it.
    let set_key = |engine: &mut Instance, key: &str, status: &str| {
        let out = rig
            .command(&["keys"])
            .args([
                "--public-key",
                key,
                "--principal",
                "svc-a",
                "--status",
                status,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let applied = format!("key {key} {status} for svc-a");
        engine.wait_for(&applied, Duration::from_secs(30), |l| l.contains(&applied));
    };
    let reason_of = |i: u64| rig.decisions(i..i + 1, Duration::from_secs(60))[&i][0];

    produce(1, "svc-a", &k2);
    assert_eq!(reason_of(1), Reason::UnknownKey, "K2 is not trusted yet");

    // Rotation: K2 active, K1 rotating; both sign during the overlap.
    let k1_hex = hex::encode(k1.public_key());
    let k2_hex = hex::encode(k2.public_key());
    set_key(&mut engine, &k2_hex, "active");
    set_key(&mut engine, &k1_hex, "rotating");
    produce(2, "svc-a", k1);
    produce(3, "svc-a", &k2);
    assert_eq!(reason_of(2), Reason::Authorized);
    assert_eq!(reason_of(3), Reason::Authorized);

    // Revocation: K1 signs nothing from the moment it is read.
    set_key(&mut engine, &k1_hex, "revoked");
    produce(4, "svc-a", k1);
    produce(5, "svc-a", &k2);
    assert_eq!(reason_of(4), Reason::RevokedKey);
    assert_eq!(reason_of(5), Reason::Authorized);

    // The trust file changes too: svc-b's key revoked there.
    let file = rig.dir.join("trust.toml");
    let edited = std::fs::read_to_string(&file).unwrap().replacen(
        &format!(
            "public_key = \"{}\"\nstatus = \"active\"",
            hex::encode(rig.signers[1].public_key())
        ),
        &format!(
            "public_key = \"{}\"\nstatus = \"revoked\"",
            hex::encode(rig.signers[1].public_key())
        ),
        1,
    );
    std::fs::write(&file, edited).unwrap();
    engine.wait_for("the trust file reloaded", Duration::from_secs(30), |l| {
        l.contains("trust.toml reloaded")
    });
    produce(6, "svc-b", &rig.signers[1]);
    assert_eq!(reason_of(6), Reason::RevokedKey);

    // The engine's own key rotates: a new key, the old one a peer whose
    // lineage the new key continues. A restart reads the keys topic
    // again: K1 stays revoked.
    engine.terminate();
    let old_engine = rig.engine_public;
    let new_key_file = rig.dir.join("engine2.key");
    let new_engine = EngineKey::generate(&new_key_file).unwrap().public_key();
    let old_hex = hex::encode(old_engine);
    let mut engine = rig.spawn_with(
        "engine2",
        &[
            ("WARRANT_ENGINE_KEY_FILE", new_key_file.to_str().unwrap()),
            ("WARRANT_ENGINE_PEER_KEYS", &old_hex),
        ],
    );
    engine.wait_for("an assignment", Duration::from_secs(60), |l| {
        l.contains("assigned partitions [0")
    });
    produce(7, "svc-a", k1);
    produce(8, "svc-a", &k2);
    assert_eq!(
        reason_of(7),
        Reason::RevokedKey,
        "the revocation outlives a restart"
    );
    assert_eq!(reason_of(8), Reason::Authorized);

    // A record for K2 that does not parse is K2's latest state, unknown:
    // K2 signs nothing until a valid record replaces it (the record before
    // would be gone after compaction, so it cannot stand in). K2 is only
    // in the topic, so it is denied as unknown, as it would be after
    // compaction; a key the trust file lists would be denied as revoked.
    send(&producer, &keys_topic, &k2_hex, b"{not json");
    producer.flush(Duration::from_secs(30)).unwrap();
    engine.wait_for("the unusable record", Duration::from_secs(30), |l| {
        l.contains(&k2_hex) && l.contains("signs nothing")
    });
    produce(9, "svc-a", &k2);
    assert_eq!(reason_of(9), Reason::UnknownKey);
    set_key(&mut engine, &k2_hex, "active");
    produce(10, "svc-a", &k2);
    assert_eq!(reason_of(10), Reason::Authorized);
    engine.terminate();

    // Every decision verifies against the engine key set, the ones issued
    // before the revocation and before the engine key changed included.
    // Read until all 10 are in and a second passed without more.
    let consumer = reader(&rig.brokers, &rig.decisions);
    let mut decisions: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut reasons: BTreeMap<u64, Vec<Reason>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Instant::now();
    while Instant::now() < deadline {
        if decisions.len() >= 10 && last.elapsed() > Duration::from_secs(1) {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let d = open_decision(m.payload().unwrap(), &Default::default()).unwrap();
            let id = u64::try_from(u128::from_le_bytes(d.intent_id().0)).unwrap();
            reasons.entry(id).or_default().push(d.reason());
            decisions.insert(id, m.payload().unwrap().to_vec());
            last = Instant::now();
        }
    }
    assert_eq!(decisions.len(), 10);
    assert!(reasons.values().all(|r| r.len() == 1), "{reasons:?}");
    let mut both = EngineKeys::new();
    both.add(&old_engine).unwrap();
    both.add(&new_engine).unwrap();
    let mut only_new = EngineKeys::new();
    only_new.add(&new_engine).unwrap();
    let now = now_us();
    for (i, d) in &decisions {
        let digest = warrant_schemas::intent_digest(&sent[i]);
        let r = verify_decision(d, &both, &digest, "executor", now);
        match *i {
            2 | 3 | 5 | 8 | 10 => assert!(r.is_ok(), "intent {i}: {r:?}"),
            _ => assert!(
                matches!(r, Err(DecisionError::Denied(_))),
                "intent {i}: {r:?}"
            ),
        }
        if *i < 7 {
            assert!(
                matches!(verify_decision(d, &only_new, &digest, "executor", now), Err(e) if !matches!(e, DecisionError::Denied(_))),
                "intent {i}: signed by the old engine key, so not by the new one alone"
            );
        }
    }
    // The lineage log runs across the engine key change, and logs every
    // decision.
    assert_eq!(
        rig.verify_lineage_with(&reasons, &[old_engine, new_engine]),
        10
    );
}
