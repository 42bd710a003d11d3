//! Schema evolution guard: FlatBuffers rules only.
//!
//! `schemas/compat/v1.txt` is the frozen layout of wire format version 1:
//! every table's fields in order with their types, every enum's values and
//! every struct. The current schemas must extend it: tables may only append
//! fields, enums only append values, structs never change. To make a
//! compatible change, append in the `.fbs` file, then run this test with
//! `WARRANT_BLESS_SCHEMA=1` to append the new fields to the snapshot (it
//! refuses to bless an incompatible change).
//!
//! Readers refuse buffers that set fields they do not know
//! (`warrant_schemas::KNOWN_FIELDS`): deploy readers that know an appended
//! field before any writer sets it.

use std::collections::BTreeMap;

/// kind ("table" | "struct" | "enum") and name -> ordered members.
type Layout = BTreeMap<String, Vec<String>>;

fn parse(sources: &[String]) -> Layout {
    let mut layout = Layout::new();
    for src in sources {
        let mut current: Option<String> = None;
        for raw in src.lines() {
            let line = raw.split("//").next().unwrap().trim();
            if line.is_empty() {
                continue;
            }
            if current.is_none() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if let [kind @ ("table" | "struct" | "enum"), name, ..] = words.as_slice() {
                    let name = name.trim_end_matches('{').split(':').next().unwrap();
                    let key = format!("{kind} {name}");
                    if let Some(underlying) = name_underlying(line) {
                        layout
                            .entry(key.clone())
                            .or_default()
                            .push(format!("underlying {underlying}"));
                    }
                    layout.entry(key.clone()).or_default();
                    current = Some(key);
                }
                continue;
            }
            if line.starts_with('}') {
                current = None;
                continue;
            }
            let member = line
                .trim_end_matches([';', ','])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            layout
                .get_mut(current.as_ref().unwrap())
                .unwrap()
                .push(member);
        }
    }
    layout
}

fn name_underlying(line: &str) -> Option<String> {
    // `enum Verdict:ubyte {` -> "ubyte"
    let head = line.split('{').next()?.trim();
    if !head.starts_with("enum") {
        return None;
    }
    head.split(':').nth(1).map(|s| s.trim().to_owned())
}

fn current() -> Layout {
    let dir = warrant_tests::workspace_root().join("schemas/fbs");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    parse(
        &names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "fbs"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<Vec<_>>(),
    )
}

fn render(layout: &Layout) -> String {
    let mut out = String::new();
    for (name, members) in layout {
        out.push_str(name);
        out.push('\n');
        for m in members {
            out.push_str("  ");
            out.push_str(m);
            out.push('\n');
        }
    }
    out
}

fn read_snapshot(text: &str) -> Layout {
    let mut layout = Layout::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(member) = line.strip_prefix("  ") {
            layout.get_mut(&current).unwrap().push(member.to_owned());
        } else if !line.is_empty() {
            current = line.to_owned();
            layout.insert(current.clone(), Vec::new());
        }
    }
    layout
}

/// Every way `now` fails to extend `frozen`.
fn incompatibilities(frozen: &Layout, now: &Layout) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, old) in frozen {
        let Some(new) = now.get(name) else {
            problems.push(format!("{name} was removed"));
            continue;
        };
        let appendable = !name.starts_with("struct ");
        if new.len() < old.len()
            || new[..old.len()] != old[..]
            || (!appendable && new.len() != old.len())
        {
            problems.push(format!(
                "{name} changed incompatibly:\n  was: {old:?}\n  now: {new:?}"
            ));
        }
    }
    problems
}

#[test]
fn schemas_only_evolve_compatibly() {
    let path = warrant_tests::workspace_root().join("schemas/compat/v1.txt");
    let now = current();
    let Ok(text) = std::fs::read_to_string(&path) else {
        panic!(
            "missing {}: run with WARRANT_BLESS_SCHEMA=1 once to create it",
            path.display()
        );
    };
    let frozen = read_snapshot(&text);
    let problems = incompatibilities(&frozen, &now);
    assert!(
        problems.is_empty(),
        "incompatible schema change (bump FORMAT_VERSION instead):\n{}",
        problems.join("\n")
    );
    if render(&now) != text {
        if std::env::var_os("WARRANT_BLESS_SCHEMA").is_some() {
            std::fs::write(&path, render(&now)).unwrap();
        } else {
            panic!("schemas gained fields compatibly; record them with WARRANT_BLESS_SCHEMA=1");
        }
    }
}

#[test]
fn the_guard_catches_every_incompatible_change() {
    let one = |text: &str| parse(&[text.to_owned()]);
    let base = one(
        "table T {\n  a:int;\n  b:string;\n}\nstruct S {\n  x:int;\n}\nenum E:ubyte {\n  X = 0,\n  Y = 1\n}\n",
    );
    assert_eq!(base["table T"], vec!["a:int", "b:string"]);
    assert_eq!(base["enum E"], vec!["underlying ubyte", "X = 0", "Y = 1"]);
    // Compatible: append a field, append an enum value.
    let ok = one(
        "table T {\n  a:int;\n  b:string;\n  c:long;\n}\nstruct S {\n  x:int;\n}\nenum E:ubyte {\n  X = 0,\n  Y = 1,\n  Z = 2\n}\n",
    );
    assert!(incompatibilities(&base, &ok).is_empty());
    let cases = [
        (
            "reordered",
            "table T {\n  b:string;\n  a:int;\n}\nstruct S {\n  x:int;\n}\nenum E:ubyte {\n  X = 0,\n  Y = 1\n}\n",
        ),
        (
            "retyped",
            "table T {\n  a:long;\n  b:string;\n}\nstruct S {\n  x:int;\n}\nenum E:ubyte {\n  X = 0,\n  Y = 1\n}\n",
        ),
        (
            "field removed",
            "table T {\n  a:int;\n}\nstruct S {\n  x:int;\n}\nenum E:ubyte {\n  X = 0,\n  Y = 1\n}\n",
        ),
        (
            "table removed",
            "struct S {\n  x:int;\n}\nenum E:ubyte {\n  X = 0,\n  Y = 1\n}\n",
        ),
        (
            "struct grown",
            "table T {\n  a:int;\n  b:string;\n}\nstruct S {\n  x:int;\n  y:int;\n}\nenum E:ubyte {\n  X = 0,\n  Y = 1\n}\n",
        ),
        (
            "enum renumbered",
            "table T {\n  a:int;\n  b:string;\n}\nstruct S {\n  x:int;\n}\nenum E:ubyte {\n  X = 1,\n  Y = 2\n}\n",
        ),
        (
            "enum widened",
            "table T {\n  a:int;\n  b:string;\n}\nstruct S {\n  x:int;\n}\nenum E:ushort {\n  X = 0,\n  Y = 1\n}\n",
        ),
    ];
    for (what, text) in cases {
        assert!(
            !incompatibilities(&base, &one(text)).is_empty(),
            "{what} was not caught"
        );
    }
}

#[test]
fn identifiers_in_schemas_match_the_crate_constants() {
    let dir = warrant_tests::workspace_root().join("schemas/fbs");
    for (file, ident) in [
        ("intent.fbs", warrant_schemas::INTENT_IDENTIFIER),
        (
            "signed_intent.fbs",
            warrant_schemas::SIGNED_INTENT_IDENTIFIER,
        ),
        ("decision.fbs", warrant_schemas::DECISION_IDENTIFIER),
        ("lineage.fbs", warrant_schemas::LINEAGE_RECORD_IDENTIFIER),
        ("checkpoint.fbs", warrant_schemas::CHECKPOINT_IDENTIFIER),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            text.contains(&format!("file_identifier \"{ident}\";")),
            "{file} should declare {ident}"
        );
    }
}

/// The readers refuse fields past `KNOWN_FIELDS` (`warrant_schemas::read`):
/// those counts must be exactly the schema's, or a reader would refuse its
/// own writers' fields (too few) or let a newer writer's through unread
/// (too many).
#[test]
fn readers_know_exactly_the_schemas_fields() {
    let now = current();
    let tables: Vec<(&str, usize)> = now
        .iter()
        .filter_map(|(name, fields)| Some((name.strip_prefix("table ")?, fields.len())))
        .collect();
    assert_eq!(tables, warrant_schemas::KNOWN_FIELDS.to_vec());
}
