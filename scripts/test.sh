#!/usr/bin/env bash
# Runs every test: Swift unit tests, then the interop suite (Python grpcio,
# h2, curl, h2load, promtool) against a real `weft serve` on loopback, then
# the dashboard query checks. Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh test

python3 -c 'import grpc, grpc_tools, grpc_health, h2, pytest, openapi_spec_validator, yaml, opentelemetry.proto, grpc_reflection, schemathesis, aiosmtpd, prometheus_client' 2>/dev/null ||
  python3 -m pip install -q -r Tests/interop/requirements.txt
python3 -c 'import playwright' 2>/dev/null || python3 -m pip install -q -r Tests/web/requirements.txt

echo "== swift build (debug, with tests)"
swift build --build-tests
echo "== swift unit tests"
# Judged by swift test's exit status (a failure, a crash or a hang at exit
# fails the run), and at least one test must have run.
log=$(mktemp)
set +e
swift test --skip-build 2>&1 | tee "$log" | grep -E "✘|Test run with|error:"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "swift unit tests failed (swift test exited with $status)"
  tail -50 "$log"
  exit 1
fi
ran=$(grep -oE "Test run with [0-9]+ tests?" "$log" | grep -oE "[0-9]+" | tail -n 1)
if [ "${ran:-0}" -eq 0 ]; then
  echo "swift unit tests: no test ran"
  exit 1
fi

echo "== dashboards"
python3 dashboards/check_dashboards.py --promtool
echo "== alert rules"
python3 dashboards/slo.py --check
promtool check rules dashboards/alerts.yml && promtool test rules dashboards/alerts_test.yml dashboards/alerts_test_long.yml

echo "== interop tests (real weft serve on loopback)"
WEFT_BIN="$PWD/.build/debug/weft" python3 -m pytest -q Tests/interop "$@"

echo "== dashboard tests (a real weft serve, Debian's headless Chromium through Playwright)"
WEFT_BIN="$PWD/.build/debug/weft" python3 -m pytest -q Tests/web

echo "== all tests passed in $(( $(date +%s) - start ))s"
