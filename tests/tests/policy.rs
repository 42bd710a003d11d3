//! Policy semantics, analysis findings and error messages, one test each.

use std::sync::Arc;
use std::time::Duration;

use warrant_policy::{
    Decided, Effect, Finding, KeyStatus, Policy, PolicyError, PolicyStore, Request,
};
use warrant_schemas::wire::Reason;
use warrant_schemas::{Attr, AttrValue};

fn policy(rules: &str) -> Policy {
    let text = format!(
        "[policy]\nversion = 1\n[groups]\nops = [\"svc-a\", \"svc-b\"]\nempty = []\n[sets]\neu = [\"DE\", \"FR\"]\n{rules}"
    );
    match Policy::from_sources(&[("test.toml", &text)]) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn error(text: &str) -> String {
    Policy::from_sources(&[("bad.toml", text)])
        .expect_err("policy should be refused")
        .to_string()
}

const REQ: Request<'static> = Request {
    principal: "svc-a",
    action: "payments.transfer",
    resource: "accounts/eu/1",
    environment: "prod",
    region: "DE",
    attributes: &[],
    minute_of_day: 12 * 60,
    key_status: KeyStatus::Active,
};

fn decide<'p>(p: &'p Policy, r: &Request<'_>) -> (Effect, Option<&'p str>) {
    let o = p.evaluate(r);
    assert_eq!(o, p.evaluate_reference(r), "tables and reference disagree");
    (o.effect, p.rule_id(&o))
}

#[test]
fn default_deny_names_no_rule() {
    let p = policy("[[rule]]\nid = \"a\"\neffect = \"allow\"\naction = \"reports.*\"\n");
    let o = p.evaluate(&REQ);
    assert_eq!((o.effect, o.rule), (Effect::Deny, None));
    assert_eq!(p.reason(&o), Reason::NoMatchingRule);
    // A policy with no rules at all denies everything too.
    let empty = policy("");
    assert_eq!(empty.evaluate(&REQ).effect, Effect::Deny);
}

#[test]
fn deny_beats_allow_whatever_the_order() {
    let p = policy(
        "[[rule]]\nid = \"allow-all\"\neffect = \"allow\"\n\
         [[rule]]\nid = \"deny-de\"\neffect = \"deny\"\nregion = \"DE\"\n",
    );
    assert_eq!(decide(&p, &REQ), (Effect::Deny, Some("deny-de")));
    assert_eq!(p.reason(&p.evaluate(&REQ)), Reason::DenyRule);
    assert_eq!(
        decide(
            &p,
            &Request {
                region: "FR",
                ..REQ
            }
        ),
        (Effect::Allow, Some("allow-all"))
    );
    assert_eq!(
        p.reason(&p.evaluate(&Request {
            region: "FR",
            ..REQ
        })),
        Reason::Authorized
    );
}

#[test]
fn first_matching_rule_of_an_effect_decides() {
    let p = policy(
        "[[rule]]\nid = \"allow-1\"\neffect = \"allow\"\naction = \"payments.*\"\n\
         [[rule]]\nid = \"allow-2\"\neffect = \"allow\"\n\
         [[rule]]\nid = \"deny-1\"\neffect = \"deny\"\nenvironment = \"dev\"\n\
         [[rule]]\nid = \"deny-2\"\neffect = \"deny\"\n principal = \"svc-*\"\nenvironment = \"dev\"\n",
    );
    assert_eq!(decide(&p, &REQ).1, Some("allow-1"));
    assert_eq!(
        decide(&p, &Request { action: "x", ..REQ }).1,
        Some("allow-2")
    );
    assert_eq!(
        decide(
            &p,
            &Request {
                environment: "dev",
                ..REQ
            }
        )
        .1,
        Some("deny-1")
    );
}

#[test]
fn a_condition_that_cannot_be_evaluated_never_allows_and_always_denies() {
    let p = policy(
        "[[rule]]\nid = \"allow-small\"\neffect = \"allow\"\nwhen = { amount = { max = 100 } }\n\
         [[rule]]\nid = \"deny-flagged\"\neffect = \"deny\"\nwhen = { flagged = true }\n",
    );
    let good = [
        Attr {
            key: "amount",
            value: AttrValue::Int(5),
        },
        Attr {
            key: "flagged",
            value: AttrValue::Bool(false),
        },
    ];
    assert_eq!(
        decide(
            &p,
            &Request {
                attributes: &good,
                ..REQ
            }
        ),
        (Effect::Allow, Some("allow-small"))
    );
    // amount missing: the allow cannot be evaluated, so it does not allow.
    let no_amount = [Attr {
        key: "flagged",
        value: AttrValue::Bool(false),
    }];
    assert_eq!(
        decide(
            &p,
            &Request {
                attributes: &no_amount,
                ..REQ
            }
        ),
        (Effect::Deny, None)
    );
    // amount of the wrong type: same.
    let str_amount = [
        Attr {
            key: "amount",
            value: AttrValue::Str("5"),
        },
        Attr {
            key: "flagged",
            value: AttrValue::Bool(false),
        },
    ];
    assert_eq!(
        decide(
            &p,
            &Request {
                attributes: &str_amount,
                ..REQ
            }
        ),
        (Effect::Deny, None)
    );
    // flagged missing or mistyped: the deny cannot be evaluated, so it denies.
    let no_flag = [Attr {
        key: "amount",
        value: AttrValue::Int(5),
    }];
    assert_eq!(
        decide(
            &p,
            &Request {
                attributes: &no_flag,
                ..REQ
            }
        ),
        (Effect::Deny, Some("deny-flagged"))
    );
    let int_flag = [
        Attr {
            key: "amount",
            value: AttrValue::Int(5),
        },
        Attr {
            key: "flagged",
            value: AttrValue::Int(0),
        },
    ];
    assert_eq!(
        decide(
            &p,
            &Request {
                attributes: &int_flag,
                ..REQ
            }
        ),
        (Effect::Deny, Some("deny-flagged"))
    );
}

#[test]
fn patterns_groups_sets_and_ranges() {
    let p = policy(
        "[[rule]]\nid = \"r\"\neffect = \"allow\"\nprincipal = [\"group:ops\", \"agent-*\"]\n\
         action = \"payments.*\"\nregion = \"set:eu\"\nwhen = { amount = { min = 10, max = 20 }, currency = [\"EUR\", \"CH*\"] }\n",
    );
    let attrs = |amount: i64, currency: &'static str| {
        [
            Attr {
                key: "amount",
                value: AttrValue::Int(amount),
            },
            Attr {
                key: "currency",
                value: AttrValue::Str(currency),
            },
        ]
    };
    let ok = attrs(10, "EUR");
    assert!(
        p.evaluate(&Request {
            attributes: &ok,
            ..REQ
        })
        .is_allow()
    );
    assert!(
        p.evaluate(&Request {
            principal: "agent-7",
            attributes: &ok,
            ..REQ
        })
        .is_allow()
    );
    assert!(
        !p.evaluate(&Request {
            principal: "svc-c",
            attributes: &ok,
            ..REQ
        })
        .is_allow()
    );
    assert!(
        !p.evaluate(&Request {
            principal: "agent",
            attributes: &ok,
            ..REQ
        })
        .is_allow()
    );
    assert!(
        !p.evaluate(&Request {
            region: "US",
            attributes: &ok,
            ..REQ
        })
        .is_allow()
    );
    assert!(
        !p.evaluate(&Request {
            action: "payments",
            attributes: &ok,
            ..REQ
        })
        .is_allow()
    );
    for (amount, allowed) in [(9, false), (10, true), (20, true), (21, false)] {
        let a = attrs(amount, "CHF");
        assert_eq!(
            p.evaluate(&Request {
                attributes: &a,
                ..REQ
            })
            .is_allow(),
            allowed,
            "amount {amount}"
        );
    }
    let usd = attrs(15, "USD");
    assert!(
        !p.evaluate(&Request {
            attributes: &usd,
            ..REQ
        })
        .is_allow()
    );
}

#[test]
fn time_windows_wrap_midnight_and_key_status_is_checked() {
    let p = policy(
        "[[rule]]\nid = \"night\"\neffect = \"allow\"\ntime = \"22:00-06:00\"\nkey_status = \"active\"\n",
    );
    for (minute, allowed) in [
        (21 * 60 + 59, false),
        (22 * 60, true),
        (0, true),
        (5 * 60 + 59, true),
        (6 * 60, false),
    ] {
        assert_eq!(
            p.evaluate(&Request {
                minute_of_day: minute,
                ..REQ
            })
            .is_allow(),
            allowed,
            "minute {minute}"
        );
    }
    let r = Request {
        minute_of_day: 23 * 60,
        key_status: KeyStatus::Rotating,
        ..REQ
    };
    assert!(!p.evaluate(&r).is_allow());
}

#[test]
fn longer_requested_validity_is_cut_to_the_rule() {
    let p = policy(
        "[[rule]]\nid = \"short\"\neffect = \"allow\"\nmax_validity = \"5m\"\nregion = \"DE\"\n\
         [[rule]]\nid = \"unbounded\"\neffect = \"allow\"\n",
    );
    let o = p.evaluate(&REQ);
    assert_eq!(p.granted_validity_us(&o, 600_000_000), 300_000_000);
    assert_eq!(p.granted_validity_us(&o, 60_000_000), 60_000_000);
    let o = p.evaluate(&Request {
        region: "US",
        ..REQ
    });
    assert_eq!(p.granted_validity_us(&o, 600_000_000), 600_000_000);
    let denied = policy("").evaluate(&REQ);
    assert_eq!(policy("").granted_validity_us(&denied, 600_000_000), 0);
}

#[test]
fn analysis_reports_never_matching_rules() {
    let p = policy(
        "[[rule]]\nid = \"empty-group\"\neffect = \"allow\"\nprincipal = \"group:empty\"\n\
         [[rule]]\nid = \"bad-range\"\neffect = \"allow\"\nwhen = { amount = { min = 5, max = 1 } }\n",
    );
    let never: Vec<&str> = p
        .findings()
        .iter()
        .filter_map(|f| {
            if let Finding::NeverMatches { rule, .. } = f {
                Some(p.rules()[*rule].id.as_str())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(never, ["empty-group", "bad-range"]);
    let text = p.findings()[0].describe(p.rules());
    assert!(
        text.contains("`empty-group` (test.toml:8)") && text.contains("can never match"),
        "{text}"
    );
}

#[test]
fn analysis_reports_shadowed_rules() {
    let p = policy(
        "[[rule]]\nid = \"broad\"\neffect = \"allow\"\naction = \"payments.*\"\n\
         [[rule]]\nid = \"narrow\"\neffect = \"allow\"\naction = \"payments.transfer\"\nregion = \"DE\"\n\
         [[rule]]\nid = \"deny-all-prod\"\neffect = \"deny\"\nenvironment = \"prod\"\n\
         [[rule]]\nid = \"prod-reports\"\neffect = \"allow\"\naction = \"reports.*\"\nenvironment = \"prod\"\n",
    );
    let shadowed: Vec<(&str, &str)> = p
        .findings()
        .iter()
        .filter_map(|f| match f {
            Finding::Shadowed { rule, by } => {
                Some((p.rules()[*rule].id.as_str(), p.rules()[*by].id.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        shadowed,
        [("narrow", "broad"), ("prod-reports", "deny-all-prod")]
    );
}

#[test]
fn analysis_reports_allow_deny_overlaps() {
    let p = policy(
        "[[rule]]\nid = \"allow-payments\"\neffect = \"allow\"\naction = \"payments.*\"\n\
         [[rule]]\nid = \"deny-us\"\neffect = \"deny\"\nregion = \"US\"\n\
         [[rule]]\nid = \"deny-reports\"\neffect = \"deny\"\naction = \"reports.*\"\n",
    );
    let overlaps: Vec<(&str, &str)> = p
        .findings()
        .iter()
        .filter_map(|f| match f {
            Finding::Overlap { deny, allow } => {
                Some((p.rules()[*deny].id.as_str(), p.rules()[*allow].id.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(overlaps, [("deny-us", "allow-payments")]);
}

#[test]
fn errors_name_file_line_and_rule() {
    let header = "[policy]\nversion = 1\n";
    let cases: &[(&str, &str)] = &[
        (
            "[[rule]]\nid = \"r1\"\neffect = \"permit\"\n",
            "bad.toml:3: rule `r1`: effect `permit` is neither `allow` nor `deny`",
        ),
        (
            "[[rule]]\nid = \"r1\"\neffect = \"allow\"\nprincipal = \"group:nope\"\n",
            "bad.toml:3: rule `r1`: unknown group `nope` in `principal`",
        ),
        (
            "[[rule]]\nid = \"r1\"\neffect = \"allow\"\nregion = \"set:nope\"\n",
            "bad.toml:3: rule `r1`: unknown set `nope` in `region`",
        ),
        (
            "[[rule]]\nid = \"r1\"\neffect = \"allow\"\naction = []\n",
            "bad.toml:3: rule `r1`: `action` is an empty list",
        ),
        (
            "[[rule]]\nid = \"r1\"\neffect = \"allow\"\naction = \"pay*ments\"\n",
            "bad.toml:3: rule `r1`: `pay*ments` in `action`: `*` may only end a pattern",
        ),
        (
            "[[rule]]\nid = \"r1\"\neffect = \"allow\"\ntime = \"25:00-26:00\"\n",
            "bad.toml:3: rule `r1`: time `25:00` is out of range (00:00 to 24:00)",
        ),
        (
            "[[rule]]\nid = \"r1\"\neffect = \"allow\"\nmax_validity = \"5y\"\n",
            "bad.toml:3: rule `r1`: bad duration unit in `5y` (use s, m, h or d)",
        ),
        (
            "[[rule]]\nid = \"r1\"\neffect = \"deny\"\nmax_validity = \"5m\"\n",
            "bad.toml:3: rule `r1`: `max_validity` is for allow rules",
        ),
        (
            "[[rule]]\nid = \"r1\"\neffect = \"allow\"\nkey_status = \"revoked\"\n",
            "bad.toml:3: rule `r1`: key_status `revoked` is neither `active` nor `rotating`",
        ),
        (
            "[[rule]]\nid = \"r1\"\neffect = \"allow\"\n[[rule]]\nid = \"r1\"\neffect = \"deny\"\n",
            "bad.toml:6: rule `r1`: rule id is already used at bad.toml:3",
        ),
        (
            // Meant as "1 or 5"; it once compiled to the range 1..=5.
            "[[rule]]\nid = \"r1\"\neffect = \"allow\"\nwhen = { tier = [1, 5] }\n",
            "bad.toml:3: rule `r1`: `tier` = [1, 5]: a list of integers is not a condition; \
             write a range `{ min = .., max = .. }` or one rule per value",
        ),
        (
            "[[rule]]\nid = \"has space\"\neffect = \"allow\"\n",
            "bad.toml:3: rule `has space`: rule id `has space` must be non-empty",
        ),
    ];
    for (rules, want) in cases {
        let got = error(&format!("{header}{rules}"));
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
    // Structural errors come from the TOML layer, still with file and line.
    let got = error(&format!(
        "{header}[[rule]]\nid = \"r1\"\neffect = \"allow\"\nregoin = \"DE\"\n"
    ));
    assert!(
        got.starts_with("bad.toml:6: unknown field `regoin`"),
        "{got}"
    );
    for (when, want) in [
        ("{ amount = { minimum = 100 } }", "expected a condition"),
        ("{ amount = 1.5 }", "expected a condition"),
        (
            "{ amount = [1, 5, 9] }",
            "a list of integers is not a condition",
        ),
    ] {
        let got = error(&format!(
            "{header}[[rule]]\nid = \"r1\"\neffect = \"allow\"\nwhen = {when}\n"
        ));
        assert!(got.starts_with("bad.toml:"), "{got}");
        assert!(got.contains(want), "{when}: {got}");
    }
    let got = error(&format!(
        "{header}[[rule]]\nid = \"r1\"\neffect = \"allow\"\nmax_validity = -5\n"
    ));
    assert!(got.contains("expected a duration"), "{got}");
    let got = error(&format!("{header}[[rule]]\nid = \"r1\"\neffect = \n"));
    assert!(got.starts_with("bad.toml:5: "), "{got}");
    let got = error("[[rule]]\nid = \"r1\"\neffect = \"allow\"\n");
    assert_eq!(got, "bad.toml:1: missing `[policy] version = N`");
}

#[test]
fn a_directory_is_one_policy_and_the_hash_follows_content() {
    let dir = warrant_tests::workspace_root().join("examples/policy/split");
    let p = Policy::load(&dir).unwrap();
    assert_eq!(p.version(), 4);
    assert_eq!(
        p.rules().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["deny-night-deploys", "allow-ops-deploys"]
    );
    let a = Policy::from_sources(&[("a.toml", "[policy]\nversion = 1\n")]).unwrap();
    let b = Policy::from_sources(&[("a.toml", "[policy]\nversion = 1\n# comment\n")]).unwrap();
    assert_ne!(a.hash(), b.hash());
    assert_eq!(
        a.hash(),
        Policy::from_sources(&[("a.toml", "[policy]\nversion = 1\n")])
            .unwrap()
            .hash()
    );
    // Two files declaring the version is an error naming both places.
    let e = Policy::from_sources(&[
        ("a.toml", "[policy]\nversion = 1\n"),
        ("b.toml", "[policy]\nversion = 2\n"),
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "b.toml:2: `[policy] version` is declared again (first at a.toml:2)"
    );
}

#[test]
fn live_reload_swaps_good_policies_and_keeps_the_last_good_one() {
    let dir = std::env::temp_dir().join(format!("warrant-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.toml");
    let store = Arc::new(PolicyStore::new());
    // Nothing loaded: deny, "no policy".
    assert!(matches!(store.evaluate(&REQ), Decided::NoPolicy));

    std::fs::write(
        &file,
        "[policy]\nversion = 1\n[[rule]]\nid = \"a\"\neffect = \"allow\"\n",
    )
    .unwrap();
    store.reload(&file).unwrap();
    let Decided::Evaluated { policy, outcome } = store.evaluate(&REQ) else {
        panic!("loaded")
    };
    assert_eq!((policy.version(), outcome.is_allow()), (1, true));

    // A broken version is refused; version 1 stays in force; the error is visible.
    std::fs::write(
        &file,
        "[policy]\nversion = 2\n[[rule]]\nid = \"a\"\neffect = \"maybe\"\n",
    )
    .unwrap();
    let err = store.reload(&file).unwrap_err();
    assert!(matches!(err, PolicyError::Invalid { line: 3, .. }));
    assert_eq!(store.current().unwrap().version(), 1);
    assert!(store.last_error().unwrap().contains("effect `maybe`"));

    // The watcher picks up a fixed version by itself.
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = heard.clone();
    let watcher = store.watch(file.clone(), Duration::from_millis(20), move |r| {
        h.lock().unwrap().push(r.is_ok());
    });
    // As the watcher's documentation asks: write aside, then rename (a
    // file caught half written by two checks would be compiled, refused,
    // and heard of).
    write_atomic(
        &file,
        "[policy]\nversion = 3\n[[rule]]\nid = \"a\"\neffect = \"deny\"\n",
    );
    let mut version = 0;
    for _ in 0..250 {
        version = store.current().unwrap().version();
        if version == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(version, 3, "watcher did not reload within 5 s");
    assert!(store.last_error().is_none());
    assert!(!store.evaluate(&REQ).clone_outcome_is_allow());

    // The policy removed: none in force (deny all, "no policy") until it
    // is back.
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        for _ in 0..250 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the watcher did not see {what} within 5 s");
    };
    std::fs::remove_file(&file).unwrap();
    wait("the removal", &|| store.current().is_none());
    assert!(matches!(store.evaluate(&REQ), Decided::NoPolicy));
    assert!(store.last_error().unwrap().contains("is gone"));
    // As the watcher's documentation asks: write aside, then rename (a
    // file caught half written by two checks would be compiled, refused,
    // and heard of).
    write_atomic(
        &file,
        "[policy]\nversion = 4\n[[rule]]\nid = \"a\"\neffect = \"allow\"\n",
    );
    wait("the restore", &|| store.current().is_some());
    assert_eq!(store.current().unwrap().version(), 4);
    assert!(store.last_error().is_none());
    drop(watcher);
    assert_eq!(*heard.lock().unwrap(), [true, false, true]);
    store.clear();
    assert!(matches!(store.evaluate(&REQ), Decided::NoPolicy));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_edit_made_before_the_watcher_starts_is_loaded_not_missed() {
    let dir = std::env::temp_dir().join(format!("warrant-since-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("policy.toml");
    let text = |v: u32, effect: &str| {
        format!("[policy]\nversion = {v}\n[[rule]]\nid = \"a\"\neffect = \"{effect}\"\n")
    };
    std::fs::write(&file, text(1, "allow")).unwrap();
    let store = Arc::new(PolicyStore::new());
    // As `warrant run` does: the content is noted, the policy read, and
    // the watcher started only later (after the broker checks).
    let read = warrant_policy::Fingerprint::of(&file);
    store.reload(&file).unwrap();
    std::fs::write(&file, text(2, "deny")).unwrap();
    let _watcher = store.watch_since(file.clone(), Duration::from_millis(20), read, |_| {});
    let mut version = 0;
    for _ in 0..250 {
        version = store.current().unwrap().version();
        if version == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        version, 2,
        "the edit made before the watcher started was missed"
    );
    assert!(!store.evaluate(&REQ).clone_outcome_is_allow());
    let _ = std::fs::remove_dir_all(&dir);
}

trait OutcomeExt {
    fn clone_outcome_is_allow(&self) -> bool;
}
impl OutcomeExt for Decided {
    fn clone_outcome_is_allow(&self) -> bool {
        matches!(self, Decided::Evaluated { outcome, .. } if outcome.is_allow())
    }
}

#[test]
fn the_hash_covers_content_not_the_path_it_was_read_from() {
    let root = warrant_tests::workspace_root();
    let a = Policy::load(&root.join("examples/policy/payments.toml")).unwrap();
    let b = Policy::load(&root.join("examples/policy/../policy/./payments.toml")).unwrap();
    assert_eq!(a.hash(), b.hash());
    let dir = std::env::temp_dir().join(format!("warrant-hash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        root.join("examples/policy/payments.toml"),
        dir.join("renamed.toml"),
    )
    .unwrap();
    assert_eq!(
        Policy::load(&dir.join("renamed.toml")).unwrap().hash(),
        a.hash()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn group_set_and_version_errors_point_at_their_own_lines() {
    // `eu` is both a set and a group name; the duplicate group is on line 6.
    let text = "[policy]\nversion = 1\n[sets]\neu = [\"DE\"]\n[groups]\neu = [\"a\", \"a\"]\n";
    assert_eq!(error(text), "bad.toml:6: group `eu` lists a member twice");
    let e = Policy::from_sources(&[
        ("a.toml", "[policy]\nversion = 1\n[groups]\nops = [\"x\"]\n"),
        ("b.toml", "# another file\n[groups]\nops = [\"y\"]\n"),
    ])
    .unwrap_err()
    .to_string();
    assert_eq!(e, "b.toml:3: group `ops` is defined twice");
}

#[test]
fn minutes_past_the_day_wrap_the_same_way_everywhere() {
    let p = policy("[[rule]]\nid = \"all\"\neffect = \"allow\"\n");
    let r = Request {
        minute_of_day: 5000,
        ..REQ
    };
    assert_eq!(p.evaluate(&r), p.evaluate_reference(&r));
    let p = policy("[[rule]]\nid = \"morning\"\neffect = \"allow\"\ntime = \"08:00-09:00\"\n");
    let r = Request {
        minute_of_day: 1440 + 8 * 60 + 30,
        ..REQ
    };
    assert_eq!(decide(&p, &r), (Effect::Allow, Some("morning")));
}

#[test]
fn a_rule_id_longer_than_a_decision_can_carry_is_refused() {
    let long = "r".repeat(257);
    let text = format!("[policy]\nversion = 1\n[[rule]]\nid = \"{long}\"\neffect = \"allow\"\n");
    let e = error(&text);
    assert!(
        e.contains("rule id is 257 bytes long, over the limit of 256"),
        "{e}"
    );
    // 256 bytes is fine.
    let ok = format!(
        "[policy]\nversion = 1\n[[rule]]\nid = \"{}\"\neffect = \"allow\"\n",
        "r".repeat(256)
    );
    assert!(Policy::from_sources(&[("ok.toml", &ok)]).is_ok());
}

/// Waits up to 5 s for `f`.
fn eventually(what: &str, f: &dyn Fn() -> bool) {
    for _ in 0..250 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("not seen within 5 s: {what}");
}

const ALLOW_ALL: &str = "[policy]\nversion = 1\n[[rule]]\nid = \"all\"\neffect = \"allow\"\n";
const DENY_DE: &str = "[[rule]]\nid = \"no-de\"\neffect = \"deny\"\nregion = \"DE\"\n";

/// A `*.toml` file of a policy directory that cannot be read (here a
/// symlink to nothing, as an unmounted volume leaves) fails the load: its
/// deny rules must not silently drop out of the policy.
#[test]
fn an_unreadable_file_in_a_policy_directory_fails_the_load() {
    let dir = std::env::temp_dir().join(format!("warrant-unreadable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("00-base.toml"), ALLOW_ALL).unwrap();
    std::fs::write(dir.join("05-deny.toml"), DENY_DE).unwrap();
    let p = Policy::load(&dir).unwrap();
    assert!(!p.evaluate(&REQ).is_allow());
    std::fs::remove_file(dir.join("05-deny.toml")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/deny.toml", dir.join("05-deny.toml")).unwrap();
    let e = Policy::load(&dir).expect_err("a file that cannot be read");
    assert!(e.to_string().contains("05-deny.toml"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A policy file's extension is matched whatever its case: a deny rule in
/// `05-DENY.TOML` is part of the policy, not silently left out.
#[test]
fn a_policy_file_counts_whatever_the_case_of_its_extension() {
    let dir = std::env::temp_dir().join(format!("warrant-case-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("00-base.toml"), ALLOW_ALL).unwrap();
    assert!(Policy::load(&dir).unwrap().evaluate(&REQ).is_allow());
    std::fs::write(dir.join("05-DENY.TOML"), DENY_DE).unwrap();
    assert!(!Policy::load(&dir).unwrap().evaluate(&REQ).is_allow());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The watcher likewise: a file that cannot be read changes nothing (the
/// policy in force keeps its deny rule), and the change is applied once
/// the file can be read; a directory left with no `*.toml` file (other
/// files remain) holds no policy.
#[test]
fn the_watcher_never_drops_a_file_it_cannot_read_and_removes_a_policy_whose_files_are_gone() {
    let dir = std::env::temp_dir().join(format!("warrant-watch-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("00-base.toml"), ALLOW_ALL).unwrap();
    std::fs::write(dir.join("05-deny.toml"), DENY_DE).unwrap();
    std::fs::write(dir.join(".gitkeep"), "").unwrap();
    let store = Arc::new(PolicyStore::new());
    store.reload(&dir).unwrap();
    let _watcher = store.watch(dir.clone(), Duration::from_millis(10), |_| {});
    std::fs::remove_file(dir.join("05-deny.toml")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/deny.toml", dir.join("05-deny.toml")).unwrap();
    // Many checks later, the deny rule is still in force, and the
    // unreadable file is reported.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !store.evaluate(&REQ).clone_outcome_is_allow(),
        "the deny rule dropped out"
    );
    let reported = store.last_error().unwrap_or_default();
    assert!(reported.contains("05-deny.toml"), "{reported}");
    // An editor's lock file (hidden, a dangling symlink) is not the
    // policy's: it neither joins nor breaks it.
    std::os::unix::fs::symlink("user@host.1234", dir.join(".#00-base.toml")).unwrap();
    assert!(
        Policy::load(&dir).is_err(),
        "05-deny.toml is still unreadable"
    );
    // Readable again, with a change: applied.
    std::fs::remove_file(dir.join("05-deny.toml")).unwrap();
    std::fs::write(
        dir.join("05-deny.toml"),
        DENY_DE.replace("\"DE\"", "\"FR\""),
    )
    .unwrap();
    eventually("the readable change", &|| {
        store.evaluate(&REQ).clone_outcome_is_allow()
    });
    assert!(store.last_error().is_none());
    assert!(Policy::load(&dir).is_ok());
    // Every policy file removed, `.gitkeep` left: no policy.
    std::fs::remove_file(dir.join("00-base.toml")).unwrap();
    std::fs::remove_file(dir.join("05-deny.toml")).unwrap();
    eventually("the removal", &|| {
        matches!(store.evaluate(&REQ), Decided::NoPolicy)
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pattern longer than any request string can be never matches, and
/// compiling a huge one would take time quadratic in its length: refused,
/// without echoing it whole.
#[test]
fn a_pattern_longer_than_any_request_string_is_refused() {
    let long = "a".repeat(300);
    let e = error(&format!(
        "[policy]\nversion = 1\n[[rule]]\nid = \"r\"\neffect = \"allow\"\naction = \"{long}*\"\n"
    ));
    assert!(e.contains("over the 256 bytes"), "{e}");
    assert!(e.len() < 300, "{e}");
    // At the limit, and a prefix of it, still compile.
    let at = "a".repeat(256);
    policy(&format!(
        "[[rule]]\nid = \"r\"\neffect = \"allow\"\naction = [\"{at}\", \"{at}*\"]\n"
    ));
}

/// `none` names no rule in `warrant policy test` and `explain`: a rule
/// may not take that id, or a case expecting no match would pass when it
/// decides.
#[test]
fn the_rule_id_none_is_reserved() {
    let e = error("[policy]\nversion = 1\n[[rule]]\nid = \"none\"\neffect = \"deny\"\n");
    assert!(e.contains("`none` is reserved"), "{e}");
}

/// Writes `text` to `path` as a watched file should be: aside, then
/// renamed over it.
fn write_atomic(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("writing");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// A value of the wrong type names its key, and says what it should be.
#[test]
fn a_value_of_the_wrong_type_names_its_key() {
    let rule = |line: &str| {
        error(&format!(
            "[policy]\nversion = 1\n[[rule]]\nid = \"r\"\neffect = \"allow\"\n{line}\n"
        ))
    };
    let e = rule("principal = 5");
    assert!(
        e.contains("bad.toml:6")
            && e.contains("`principal`")
            && e.contains("a string or a list of strings"),
        "{e}"
    );
    let e = rule("action = [\"a\", 1]");
    assert!(e.contains("`action`"), "{e}");
    let e = error("[policy]\nversion = 1\n[[rule]]\nid = 5\neffect = \"allow\"\n");
    assert!(e.contains("`id`"), "{e}");
}
