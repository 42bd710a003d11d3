#!/usr/bin/env bash
# Bounded fuzzing run of every target (default 60 s each), starting from the
# committed seeds. Not part of the default test run.
#
#   fuzz/run.sh            # 60 s per target
#   fuzz/run.sh 600        # 10 min per target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). The stable
# toolchain builds fuzz targets with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs
# nightly-only sanitizer flags). A crash is saved under fuzz/artifacts/;
# copy it to fuzz/regressions/<target>/ (named for what it found): the
# normal test run replays it from then on (tests/tests/fuzz_inputs.rs).
# Targets: signed_intent, decision, lineage, policy (their checks live in
# tests/src/fuzz.rs).
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  echo "== fuzzing $target for ${secs}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -max_len=65536 -timeout=10
done
