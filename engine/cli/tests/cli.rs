//! The `warrant` binary, run as a user would: the examples check and their
//! cases pass; broken input gives a clear error and a non-zero exit.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `warrant args` in the repository root, with no `WARRANT_*` variable of
/// this process's environment (as scripts/chaos.sh runs it): the suite
/// exports WARRANT_KAFKA_BROKERS for its broker, and a setting override
/// from there would replace what a test's config file says (a test
/// pointing `kafka.brokers` at a closed port would reach the real broker).
fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warrant"));
    c.args(args).current_dir(root());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WARRANT_") {
            c.env_remove(name);
        }
    }
    c
}

fn warrant(args: &[&str]) -> Output {
    command(args).output().expect("runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn example_policies_check() {
    for p in ["examples/policy/payments.toml", "examples/policy/split"] {
        let o = warrant(&["policy", "check", p]);
        assert!(o.status.success(), "{p}: {}", text(&o));
        // The examples are analysed: no rule in them is dead or shadowed.
        assert!(
            !text(&o).contains("never match") && !text(&o).contains("shadowed"),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn example_cases_pass() {
    let o = warrant(&["policy", "test", "examples/policy/payments.cases.toml"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("11 passed, 0 failed"), "{}", text(&o));
}

#[test]
fn a_failing_case_fails_the_command() {
    let dir = std::env::temp_dir().join(format!("warrant-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "[policy]\nversion = 1\n[[rule]]\nid = \"a\"\neffect = \"allow\"\nregion = \"DE\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("cases.toml"),
        "policy = \"p.toml\"\n[[case]]\nname = \"US is allowed\"\nexpect = \"allow\"\nrequest = { region = \"US\" }\n",
    )
    .unwrap();
    let o = warrant(&["policy", "test", dir.join("cases.toml").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("FAIL  US is allowed: expected allow, got deny (rule `none`)"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("0 passed, 1 failed"), "{}", text(&o));

    std::fs::write(
        dir.join("broken.toml"),
        "[policy]\nversion = 1\n[[rule]]\nid = \"a\"\neffect = \"allow\"\nregion = \"set:eu\"\n",
    )
    .unwrap();
    let o = warrant(&["policy", "check", dir.join("broken.toml").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("broken.toml:3: rule `a`: unknown set `eu` in `region`"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn deny_warnings_turns_findings_into_failure() {
    let o = warrant(&[
        "policy",
        "check",
        "--deny-warnings",
        "examples/policy/payments.toml",
    ]);
    assert!(
        !o.status.success(),
        "payments.toml has overlap findings: {}",
        text(&o)
    );
    assert!(text(&o).contains("overrides allow rule"), "{}", text(&o));
}

#[test]
fn explain_names_the_deciding_rule() {
    let o = warrant(&[
        "policy",
        "explain",
        "examples/policy/payments.toml",
        "--set",
        "principal=svc-treasury",
        "--set",
        "action=payments.transfer",
        "--set",
        "resource=accounts/eu/1",
        "--set",
        "environment=prod",
        "--set",
        "region=DE",
        "--set",
        "amount=900",
        "--set",
        "currency=EUR",
        "--set",
        "requested_validity=10m",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("verdict: ALLOW by rule `allow-treasury-eu-eur`"),
        "{t}"
    );
    assert!(
        t.contains("validity: requested 600 s, granted 300 s"),
        "{t}"
    );
    assert!(!t.contains("disagrees"), "{t}");
}

#[test]
fn selftest_passes_and_reports_the_backend() {
    let o = warrant(&["selftest", "--count", "600", "--forged-percent", "5"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("ed25519 backend:")
            && t.contains("batch/single disagreements: 0")
            && t.contains("forged accepted: 0"),
        "{t}"
    );
}

#[test]
fn keygen_writes_a_private_key_file_once() {
    let dir = std::env::temp_dir().join(format!("warrant-keygen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("engine.key");
    let o = warrant(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let seed = std::fs::read_to_string(&key).unwrap();
    assert!(
        !text(&o).contains(seed.trim()),
        "the secret must not be printed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let again = warrant(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(!again.status.success(), "must refuse to overwrite");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_accepts_a_sealed_decision_and_refuses_everything_else() {
    use warrant_engine::seal::{DecisionCore, EngineKey, seal};
    use warrant_schemas::wire::{Reason, Verdict};
    let dir = std::env::temp_dir().join(format!("warrant-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let intent = warrant_schemas::IntentSigner::from_seed([4; 32])
        .sign_intent(&warrant_schemas::IntentFields::example());
    let key = EngineKey::from_seed([8; 32]);
    let core = DecisionCore {
        intent_id: [1; 16],
        intent_digest: warrant_schemas::intent_digest(&intent),
        verdict: Verdict::Authorize,
        reason: Reason::Authorized,
        rule_id: "allow-eu",
        policy_hash: [0; 32],
        policy_version: 2,
        issued_at_us: 1_000,
        valid_until_us: 2_000,
        audience: "executor-eu",
        lineage_partition: 0,
        lineage_sequence: 0,
    };
    let sealed = seal(
        &key,
        &[
            core,
            DecisionCore {
                intent_id: [2; 16],
                ..core
            },
        ],
    )
    .unwrap();
    std::fs::write(dir.join("intent"), &intent).unwrap();
    std::fs::write(dir.join("decision"), &sealed[0]).unwrap();
    let pk: String = key
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // `intent`: the flag and its value (`--intent FILE` or
    // `--intent-digest HEX`).
    let verify = |decision: &str, intent: [&str; 2], audience: &str, now: &str| {
        warrant(&[
            "verify",
            "--decision",
            dir.join(decision).to_str().unwrap(),
            intent[0],
            intent[1],
            "--engine-key",
            &pk,
            "--audience",
            audience,
            "--now-us",
            now,
        ])
    };
    let intent_file = dir.join("intent");
    let intent_arg = ["--intent", intent_file.to_str().unwrap()];
    let run =
        |audience: &str, now: &str, decision: &str| verify(decision, intent_arg, audience, now);
    let ok = run("executor-eu", "1500", "decision");
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok)
            .contains("AUTHORIZED: intent 01010101010101010101010101010101 by rule `allow-eu`"),
        "{}",
        text(&ok)
    );
    // The intent's own claims, which the decision does not bind to this
    // executor (SECURITY.md): shown for it to check.
    assert!(
        text(&ok).contains(
            "the intent: principal `svc-example`, action `payments.transfer`, resource \
             `accounts/eu/1234`, environment `prod`, region `DE`"
        ),
        "{}",
        text(&ok)
    );
    let late = run("executor-eu", "2000", "decision");
    assert!(
        !late.status.success() && text(&late).contains("DO NOT EXECUTE: decision expired"),
        "{}",
        text(&late)
    );
    // Before the issue time (the executor's clock behind the engine's):
    // refused, unless the skew allowed covers it; the end never moves.
    let with_skew = |now: &str, skew_ms: &str| {
        warrant(&[
            "verify",
            "--decision",
            dir.join("decision").to_str().unwrap(),
            intent_arg[0],
            intent_arg[1],
            "--engine-key",
            &pk,
            "--audience",
            "executor-eu",
            "--now-us",
            now,
            "--max-skew-ms",
            skew_ms,
        ])
    };
    let early = run("executor-eu", "999", "decision");
    assert!(
        text(&early).contains("DO NOT EXECUTE: decision is not valid yet"),
        "{}",
        text(&early)
    );
    assert!(with_skew("999", "1").status.success());
    let late_skewed = with_skew("2000", "1000");
    assert!(
        text(&late_skewed).contains("DO NOT EXECUTE: decision expired"),
        "{}",
        text(&late_skewed)
    );
    let other = run("executor-us", "1500", "decision");
    assert!(
        !other.status.success() && text(&other).contains("DO NOT EXECUTE"),
        "{}",
        text(&other)
    );
    let mut tampered = sealed[0].clone();
    let at = tampered.windows(8).position(|w| w == b"allow-eu").unwrap();
    tampered[at] = b'A';
    std::fs::write(dir.join("tampered"), &tampered).unwrap();
    let bad = run("executor-eu", "1500", "tampered");
    assert!(
        !bad.status.success() && text(&bad).contains("inclusion proof"),
        "{}",
        text(&bad)
    );
    // The digest alone serves an executor that holds only that.
    let digest: String = warrant_schemas::intent_digest(&intent)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let by_digest = |digest: &str| {
        verify(
            "decision",
            ["--intent-digest", digest],
            "executor-eu",
            "1500",
        )
    };
    let ok = by_digest(&digest);
    assert!(ok.status.success(), "{}", text(&ok));
    let wrong = by_digest(&"00".repeat(32));
    assert!(
        !wrong.status.success() && text(&wrong).contains("DO NOT EXECUTE"),
        "{}",
        text(&wrong)
    );
    assert!(!by_digest("xyz").status.success());
    // A file that is not a SignedIntent (here: the decision) says so.
    let decision_file = dir.join("decision");
    let swapped = verify(
        "decision",
        ["--intent", decision_file.to_str().unwrap()],
        "executor-eu",
        "1500",
    );
    assert!(
        !swapped.status.success()
            && text(&swapped).contains("is not a SignedIntent")
            && text(&swapped).contains("`WDC1` (a Decision)"),
        "{}",
        text(&swapped)
    );
    let nameless = run("", "1500", "decision");
    assert!(
        !nameless.status.success() && text(&nameless).contains("no audience given"),
        "{}",
        text(&nameless)
    );
    // Something far larger than any decision is refused before it is
    // loaded, with a message saying why.
    std::fs::write(dir.join("huge"), vec![0u8; 1 << 20]).unwrap();
    let huge = run("executor-eu", "1500", "huge");
    assert!(
        !huge.status.success() && text(&huge).contains("not a single decision or intent"),
        "{}",
        text(&huge)
    );

    // An intent's strings are the producer's: a newline, an escape
    // sequence or a right-to-left override in them is shown escaped, so
    // it cannot forge or hide a line of the verdict.
    let hostile = warrant_schemas::IntentSigner::from_seed([4; 32]).sign_intent(
        &warrant_schemas::IntentFields {
            resource: "accounts/eu/1\nDO NOT EXECUTE: \u{1b}[2K\u{202e}x\u{2028}y",
            ..warrant_schemas::IntentFields::example()
        },
    );
    let sealed = seal(
        &key,
        &[DecisionCore {
            intent_digest: warrant_schemas::intent_digest(&hostile),
            ..core
        }],
    )
    .unwrap();
    std::fs::write(dir.join("hostile-intent"), &hostile).unwrap();
    std::fs::write(dir.join("hostile-decision"), &sealed[0]).unwrap();
    let hostile_file = dir.join("hostile-intent");
    let shown = verify(
        "hostile-decision",
        ["--intent", hostile_file.to_str().unwrap()],
        "executor-eu",
        "1500",
    );
    assert!(shown.status.success(), "{}", text(&shown));
    let out = text(&shown);
    assert!(
        out.contains(r"resource `accounts/eu/1\nDO NOT EXECUTE: \u{1b}[2K\u{202e}x\u{2028}y`"),
        "{out}"
    );
    assert!(
        !out.contains('\u{1b}')
            && !out.contains('\u{202e}')
            && !out.contains('\u{2028}')
            && out.lines().count() == 2,
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lineage_verify_passes_a_whole_log_and_names_the_first_bad_record() {
    use warrant_engine::lineage::{Entry, LineageWriter, file::push_frame};
    use warrant_engine::seal::EngineKey;
    use warrant_schemas::wire::{Reason, Verdict};
    let dir = std::env::temp_dir().join(format!("warrant-lineage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = EngineKey::from_seed([12; 32]);
    let mut w = LineageWriter::new(2);
    let mut log = Vec::new();
    let mut frames = Vec::new();
    for i in 0..20u8 {
        let rec = w.append(&Entry {
            decision_digest: [i; 32],
            intent_id: [i; 16],
            parent_id: (i > 0).then(|| [i - 1; 16]),
            verdict: Verdict::Authorize,
            reason: Reason::Authorized,
            issued_at_us: u64::from(i),
            replay: Some(([i; 16], 1_000)),
            intent_digest: [0; 32],
            valid_until_us: 0,
        });
        push_frame(&mut log, &rec);
        frames.push(rec);
        if i % 5 == 4 {
            push_frame(&mut log, &w.checkpoint(&key, u64::from(i)));
        }
    }
    std::fs::write(dir.join("log"), &log).unwrap();
    let pk: String = key
        .public_key()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let run_with = |file: &str, partition: &str, extra: &[&str]| {
        let path = dir.join(file);
        let mut args = vec![
            "lineage",
            "verify",
            "--log",
            path.to_str().unwrap(),
            "--partition",
            partition,
            "--engine-key",
            &pk,
        ];
        args.extend_from_slice(extra);
        warrant(&args)
    };
    let run = |file: &str, partition: &str| run_with(file, partition, &[]);
    let ok = run("log", "2");
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("lineage ok: partition 2, 20 records (20 authorized, 19 chained to a parent), 4 checkpoints"), "{}", text(&ok));
    // Drop record 7: the first bad record is named.
    let mut dropped = Vec::new();
    let frames = warrant_engine::lineage::file::split(&log).unwrap();
    for (i, r) in frames.records.iter().enumerate() {
        if i != 7 {
            push_frame(&mut dropped, r);
        }
    }
    for c in &frames.checkpoints {
        push_frame(&mut dropped, c);
    }
    std::fs::write(dir.join("dropped"), &dropped).unwrap();
    let bad = run("dropped", "2");
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("record 7: sequence 8 where 7 was due"),
        "{}",
        text(&bad)
    );
    let wrong = run("log", "3");
    assert!(!wrong.status.success(), "{}", text(&wrong));
    // Broken framing is named by frame and byte offset, not as a record.
    let mut trailing = log.clone();
    trailing.extend_from_slice(&[1, 2]);
    std::fs::write(dir.join("trailing"), &trailing).unwrap();
    let cut_frame = run("trailing", "2");
    assert!(
        !cut_frame.status.success()
            && text(&cut_frame).contains(&format!(
                "frame 24 (at byte {}): truncated frame length",
                log.len()
            )),
        "{}",
        text(&cut_frame)
    );
    // An empty log is refused unless asked for.
    std::fs::write(dir.join("empty"), b"").unwrap();
    let empty = run("empty", "2");
    assert!(
        !empty.status.success() && text(&empty).contains("holds 0 records"),
        "{}",
        text(&empty)
    );
    assert!(
        run_with("empty", "2", &["--min-records", "0"])
            .status
            .success()
    );
    // Cut back to its checkpoint at 15, the log verifies on its own; a
    // size seen signed before catches it.
    let mut cut = Vec::new();
    for r in frames.records.iter().take(15) {
        push_frame(&mut cut, r);
    }
    for c in frames.checkpoints.iter().take(3) {
        push_frame(&mut cut, c);
    }
    std::fs::write(dir.join("cut"), &cut).unwrap();
    assert!(run("cut", "2").status.success());
    let short = run_with("cut", "2", &["--min-records", "20"]);
    assert!(
        !short.status.success() && text(&short).contains("fewer than the 20 expected"),
        "{}",
        text(&short)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `warrant demo --duration 1 ARGS --out DIR` into a fresh directory
/// named after `name`: the directory and the run.
fn demo_into(name: &str, args: &[&str]) -> (PathBuf, Output) {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut all = vec!["demo", "--duration", "1"];
    all.extend_from_slice(args);
    all.extend(["--out", dir.to_str().unwrap()]);
    let o = warrant(&all);
    (dir, o)
}

#[test]
fn demo_runs_checks_and_leaves_files_a_user_can_verify() {
    let (dir, o) = demo_into("warrant-demo", &["--rate", "2000"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let sent_line = out.lines().find(|l| l.contains("intents sent")).unwrap();
    let numbers: Vec<&str> = sent_line
        .split_whitespace()
        .filter(|w| w.parse::<u64>().is_ok())
        .collect();
    assert_eq!(numbers, ["2000", "2000"], "{sent_line}");
    for needle in [
        "exactly one each: yes",
        "p99",
        "BadSignature",
        "ReplayedNonce",
        "DenyRule",
        "Expired",
        "UnknownKey",
        "Malformed",
        "every intent got its expected reason",
        "lineage: 2000 records in 4 partitions verified",
        "sampled decisions verified",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
    // The files it leaves verify with the commands it prints.
    let key = std::fs::read_to_string(dir.join("engine.pub")).unwrap();
    for p in 0..4 {
        let log = dir.join(format!("lineage-{p}.log"));
        let o = warrant(&[
            "lineage",
            "verify",
            "--log",
            log.to_str().unwrap(),
            "--partition",
            &p.to_string(),
            "--engine-key",
            &key,
        ]);
        assert!(o.status.success(), "partition {p}: {}", text(&o));
    }
    // The sample authorizes its own executor, and another executor's
    // audience is refused.
    for (audience, may_run) in [("executor", true), ("someone-else", false)] {
        let o = warrant(&[
            "verify",
            "--decision",
            dir.join("decision.bin").to_str().unwrap(),
            "--intent",
            dir.join("intent.bin").to_str().unwrap(),
            "--engine-key",
            &key,
            "--audience",
            audience,
        ]);
        assert_eq!(o.status.success(), may_run, "{audience}: {}", text(&o));
    }
    // The `warrant verify` command it prints passes as printed, however
    // long after the run: it checks at an instant inside the decision's
    // validity window, and says why.
    let printed = out
        .lines()
        .find(|l| l.trim_start().starts_with("warrant verify "))
        .unwrap_or_else(|| panic!("no verify command in:\n{out}"));
    let args: Vec<&str> = printed.split_whitespace().skip(1).collect();
    let at = args
        .iter()
        .position(|a| *a == "--now-us")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("no --now-us in `{printed}`"));
    let valid_until = out
        .split("until ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the output does not say why --now-us:\n{out}"));
    assert!(
        out.contains("--now-us checks it as of its issue time"),
        "{out}"
    );
    let o = warrant(&args);
    assert!(o.status.success(), "{printed}: {}", text(&o));
    // Past the window it is refused: the flag is what makes it pass.
    let mut late = args.clone();
    let after = (valid_until + 1).to_string();
    let i = late.iter().position(|a| a == at).unwrap();
    late[i] = &after;
    let o = warrant(&late);
    assert!(
        !o.status.success() && text(&o).contains("expired"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every command the demo prints runs as printed, whatever partitions the
/// principals land on (two principals over eight partitions leave most
/// partitions without a log).
#[test]
fn the_commands_the_demo_prints_run_as_printed() {
    let (dir, o) = demo_into(
        "warrant-demo-sparse",
        &["--rate", "1000", "--principals", "2", "--partitions", "8"],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let printed: Vec<&str> = out
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("warrant ") && l.contains("--engine-key"))
        .collect();
    assert_eq!(printed.len(), 2, "{out}");
    for line in printed {
        let args: Vec<&str> = line.split_whitespace().skip(1).collect();
        let o = warrant(&args);
        assert!(o.status.success(), "{line}: {}", text(&o));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_refuses_a_mix_over_100_percent() {
    let o = warrant(&[
        "demo",
        "--duration",
        "1",
        "--forged",
        "60",
        "--denied",
        "50",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("over 100%"), "{}", text(&o));
}

/// A reader that goes away early (`warrant policy check … | head`) is not a
/// panic: the command runs on and exits by its own outcome.
#[test]
fn a_closed_standard_output_is_not_a_panic() {
    use std::process::Stdio;
    for args in [
        &["policy", "check", "examples/policy/split"][..],
        &["policy", "test", "examples/policy/payments.cases.toml"][..],
    ] {
        let mut child = command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        // The read end closes before the command writes a byte.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(o.status.success(), "{args:?}: {:?} {stderr}", o.status);
    }
}

/// Runs `warrant args` and waits at most `secs` for it: a command that
/// would read forever fails the test instead of hanging it.
fn warrant_within(args: &[&str], env: &[(&str, &str)], secs: u64) -> Output {
    use std::process::Stdio;
    let mut child = command(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`warrant {}` still running after {secs} s", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `o` failed cleanly: exit 1 (the command's error) or 2 (a usage error),
/// no panic, and `want` in what it printed.
fn assert_clear_error(args: &[&str], o: &Output, want: &str) {
    let t = text(o);
    assert!(
        matches!(o.status.code(), Some(1 | 2)) && !t.contains("panicked"),
        "{args:?}: {:?}\n{t}",
        o.status
    );
    assert!(t.contains("error: ") && t.contains(want), "{args:?}: {t}");
}

#[test]
fn numbers_out_of_range_are_clear_errors_not_panics_or_silent_fixes() {
    let max = u64::MAX.to_string();
    for (args, want) in [
        (&["demo", "--duration", "1", "--rate", &max][..], "too many"),
        (&["demo", "--duration", "1e300"][..], "out of range"),
        (
            &["demo", "--duration", "0.3", "--partitions", "4294967295"][..],
            "not in 1..=1024",
        ),
        (
            &["demo", "--duration", "0.2", "--principals", "0"][..],
            "not in 2..=65536",
        ),
        (
            &["demo", "--duration", "0.2", "--forged", "200"][..],
            "not in 0..=100",
        ),
        (&["selftest", "--count", &max][..], "not in 1..=1000000"),
        (&["selftest", "--count", "0"][..], "not in 1..=1000000"),
        (
            &["selftest", "--count", "100", "--forged-percent", "200"][..],
            "not in 0..=100",
        ),
        (
            &["selftest", "--count", "100", "--principals", "0"][..],
            "not in 1..=65536",
        ),
    ] {
        let o = warrant_within(args, &[], 60);
        assert_clear_error(args, &o, want);
        assert!(!text(&o).contains("selftest passed"), "{args:?}");
    }
}

#[test]
fn demo_checks_its_options_before_it_prints_or_runs() {
    for (args, want) in [
        (
            &["demo", "--duration", "2", "--out", "/dev/null"][..],
            "`/dev/null` is not a directory",
        ),
        (
            &[
                "demo",
                "--duration",
                "2",
                "--forged",
                "60",
                "--denied",
                "50",
            ][..],
            "over 100%",
        ),
    ] {
        let o = warrant_within(args, &[], 60);
        assert_clear_error(args, &o, want);
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.is_empty(), "{args:?} ran before failing:\n{stdout}");
    }
    // What it prints about itself reads right.
    let o = warrant(&[
        "demo",
        "--duration",
        "0.2",
        "--rate",
        "500",
        "--partitions",
        "1",
        "--no-pin",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("over 1 partition, 16 principals") && t.contains("verify threads, not pinned"),
        "{t}"
    );
    assert!(!t.contains("cores []"), "{t}");
}

#[cfg(unix)]
#[test]
fn what_is_not_a_file_is_refused_before_it_is_read() {
    let key = "ab".repeat(32);
    for (args, want) in [
        (
            &[
                "lineage",
                "verify",
                "--log",
                "/dev/zero",
                "--partition",
                "0",
                "--engine-key",
                &key,
            ][..],
            "cannot read `/dev/zero`: not a regular file",
        ),
        (
            &["policy", "check", "/dev/zero"][..],
            "cannot read `/dev/zero`: not a regular file or a directory",
        ),
        (
            &[
                "policy",
                "explain",
                "examples/policy/payments.toml",
                "--request",
                "/dev/zero",
            ][..],
            "cannot read `/dev/zero`: not a regular file",
        ),
        (
            &["policy", "test", "/dev/zero"][..],
            "/dev/zero: not a regular file",
        ),
    ] {
        let o = warrant_within(args, &[], 20);
        assert_clear_error(args, &o, want);
    }
}

#[cfg(feature = "kafka")]
#[test]
fn keys_refuses_conflicting_flags_and_names_the_bad_one() {
    let dir = std::env::temp_dir().join(format!("warrant-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("warrant.toml");
    // No broker there: nothing may get as far as publishing.
    std::fs::write(
        &config,
        "[kafka]\nbrokers = \"127.0.0.1:1\"\n[trust]\ntopic = \"warrant.keys\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let key = "ab".repeat(32);
    let zero = "00".repeat(32);
    for (args, want) in [
        (
            &[
                "keys",
                "--config",
                config,
                "--public-key",
                &key,
                "--withdraw",
                "--principal",
                "p",
            ][..],
            "'--withdraw' cannot be used with '--principal <PRINCIPAL>'",
        ),
        (
            &[
                "keys",
                "--config",
                config,
                "--public-key",
                &key,
                "--withdraw",
                "--status",
                "revoked",
            ][..],
            "'--withdraw' cannot be used with '--status <STATUS>'",
        ),
        (
            &[
                "keys",
                "--config",
                config,
                "--public-key",
                "zz",
                "--principal",
                "p",
            ][..],
            "--public-key `zz` is not 64 hex digits",
        ),
        (
            &[
                "keys",
                "--config",
                config,
                "--public-key",
                &zero,
                "--principal",
                "p",
            ][..],
            &format!("--public-key `{zero}` for --principal `p`: "),
        ),
    ] {
        let o = warrant_within(args, &[], 60);
        assert_clear_error(args, &o, want);
        assert!(
            !text(&o).contains("key 0 (principal"),
            "{args:?}: {}",
            text(&o)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "kafka")]
#[test]
fn run_check_names_the_environment_variable_at_fault() {
    let dir = std::env::temp_dir().join(format!("warrant-envcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("warrant.toml");
    std::fs::write(&config, "").unwrap();
    let config = config.to_str().unwrap();
    let args = &["run", "--config", config, "--check"][..];
    for (var, value, want) in [
        (
            "WARRANT_ADMIN_LISTEN",
            "nonsense",
            "`admin.listen` must be an address",
        ),
        (
            "WARRANT_KAFKA_SINK_TIMEOUT_MS",
            "9223372036854775807",
            "`kafka.sink_timeout_ms` must be at most 86400000 (one day)",
        ),
        (
            "WARRANT_TRUST_WATCH_MS",
            "9223372036854775807",
            "`trust.watch_ms` must be at most",
        ),
        (
            "WARRANT_POLICY_WATCH_MS",
            "99999999999999999999",
            "is out of range",
        ),
    ] {
        let o = warrant_within(args, &[(var, value)], 60);
        assert_clear_error(args, &o, &format!("error: {var}: "));
        assert!(text(&o).contains(want), "{var}: {}", text(&o));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
