//! Every committed fuzz input, through the checks the fuzz targets run
//! (`warrant_tests::fuzz`): the seeds in `fuzz/seeds/<target>/` and every
//! crash or hang input kept in `fuzz/regressions/<target>/` (a crash found
//! by `fuzz/run.sh` is copied there, named for what it found, and stays a
//! regression test once fixed). A target directory that is missing or
//! empty fails: a renamed target must not silently lose its inputs.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use warrant_tests::fuzz::TARGETS;
use warrant_tests::workspace_root;

#[test]
fn every_seed_and_regression_input_passes_its_target() {
    let mut total = 0;
    for (name, check) in TARGETS {
        let mut n = 0;
        for kind in ["seeds", "regressions"] {
            let dir = workspace_root().join("fuzz").join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let path = e.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let result = std::panic::catch_unwind(|| check(&data));
                assert!(result.is_ok(), "{name}: {} fails its check", path.display());
                n += 1;
            }
        }
        assert!(n > 0, "no inputs for fuzz target {name}");
        total += n;
    }
    println!("{total} fuzz inputs replayed");
}

#[test]
fn the_targets_are_the_fuzz_crates_binaries() {
    let manifest = std::fs::read_to_string(workspace_root().join("fuzz/Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no target {name}"
        );
        let target =
            std::fs::read_to_string(workspace_root().join(format!("fuzz/fuzz_targets/{name}.rs")))
                .unwrap();
        assert!(
            target.contains(&format!("warrant_tests::fuzz::{name}(data)")),
            "fuzz/fuzz_targets/{name}.rs does not run warrant_tests::fuzz::{name}"
        );
    }
}
