#!/usr/bin/env bash
# Long schemathesis profile, run by hand: property-based tests of every REST
# operation against the server's own GET /openapi.json, with all of
# schemathesis' checks (server errors, status codes, content types, response
# schemas, schema-valid requests accepted, schema-invalid ones refused,
# missing auth refused, ...), a fixed seed, bounded by time (240 s default).
#
# The short profile of the same run is Tests/interop/test_schemathesis.py
# (pytest, --max-examples 15); this script drives the same code through its
# CLI: it seeds the server (workflows, a collaborator, a version, finished
# executions, a held lease) so generated ids reach the handlers, runs the
# schemathesis CLI, groups what it reports into distinct failures (operation,
# check, status, server message), leaves out the refusals listed in
# LEGITIMATE_REFUSALS and prints them with what was sent and answered.
#
# Usage:
#   loadtest/schemathesis-long.sh                       # starts $WEFT_BIN (default .build/debug/weft) on a free port
#   loadtest/schemathesis-long.sh --url http://127.0.0.1:8080 [--token "$TOKEN"]
#                                                       # a running server; without --token a fresh user is registered
#   loadtest/schemathesis-long.sh --max-time 600 --seed 7 --workers 2 --out /tmp/weft-st
#   loadtest/schemathesis-long.sh --max-examples 15     # the short (pytest) profile, by hand
#   loadtest/schemathesis-long.sh --no-seed-data        # fuzz only with generated ids
#
# Writes to --out (default a new /tmp/weft-schemathesis-*): schemathesis.toml,
# the NDJSON event log, JSON and JUnit reports, schemathesis' own output and
# summary.txt. `python3 Tests/interop/test_schemathesis.py summarize DIR`
# prints the summary of a report again.
#
# Exit status: 0 no failure, 1 failures (listed), 2 schemathesis did not run,
# 3 the server died.
#
# Needs: python3 with schemathesis (pip install -r Tests/interop/requirements.txt).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"

if ! "$py" -c 'import schemathesis' 2>/dev/null; then
  echo "schemathesis is not installed: $py -m pip install -r $root/Tests/interop/requirements.txt" >&2
  exit 2
fi

args=("$@")
bounded=0
for arg in "$@"; do
  case "$arg" in --max-time|--max-time=*|--max-examples|--max-examples=*) bounded=1 ;; esac
done
[ "$bounded" = 1 ] || args+=(--max-time 240)

cd "$root"
exec "$py" Tests/interop/test_schemathesis.py run "${args[@]}"
