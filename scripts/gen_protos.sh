#!/usr/bin/env bash
# Generate the Python stubs for protos/talklike/v1 into OUT_DIR (the package talklike.v1).
# One place generates them: `make proto` writes services/v1, `make proto-check` a scratch copy to compare.
set -euo pipefail
PY=$1
OUT_DIR=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
BIN=$(dirname "$PY")
"$PY" -m grpc_tools.protoc -I "$ROOT/protos" \
  --python_out="$TMP" --grpc_python_out="$TMP" \
  --plugin=protoc-gen-mypy="$BIN/protoc-gen-mypy" --mypy_out="$TMP" \
  --plugin=protoc-gen-mypy_grpc="$BIN/protoc-gen-mypy_grpc" --mypy_grpc_out="$TMP" \
  "$ROOT"/protos/talklike/v1/*.proto
rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
cp "$TMP"/talklike/v1/* "$OUT_DIR"/
cat > "$OUT_DIR/__init__.py" <<'PY'
"""Generated from protos/talklike/v1 by `make proto`. Do not edit."""
PY
