#!/usr/bin/env bash
# Runs every test: Swift unit tests, then the interop suite (Python grpcio,
# h2, curl, h2load, promtool) against a real `weft serve` on loopback, then
# the dashboard query checks. Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh test

python3 -c 'import grpc, grpc_tools, grpc_health, h2, pytest, openapi_spec_validator, yaml, opentelemetry.proto, grpc_reflection' 2>/dev/null ||
  python3 -m pip install -q -r Tests/interop/requirements.txt

echo "== swift build (debug, with tests)"
swift build --build-tests
echo "== swift unit tests"
swift test --skip-build 2>&1 | tee /tmp/weft-swift-test.log | grep -E "✘|passed after|failed after|error:" || true
grep -qE "Test run with [0-9]+ tests? .*passed" /tmp/weft-swift-test.log || { echo "swift unit tests failed"; cat /tmp/weft-swift-test.log | tail -50; exit 1; }

echo "== dashboards"
python3 dashboards/check_dashboards.py --promtool
echo "== alert rules"
promtool check rules dashboards/alerts.yml && promtool test rules dashboards/alerts_test.yml

echo "== interop tests (real weft serve on loopback)"
WEFT_BIN="$PWD/.build/debug/weft" python3 -m pytest -q Tests/interop "$@"

echo "== all tests passed in $(( $(date +%s) - start ))s"
