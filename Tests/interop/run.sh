#!/usr/bin/env bash
# Runs the Weft Python interop suite against $WEFT_BIN (default .build/debug/weft).
# Usage: Tests/interop/run.sh [extra pytest args...]
# It never builds the server.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PYTHON:-python3}"

if ! "$py" -c 'import grpc, grpc_tools, grpc_health.v1, grpc_reflection, h2, hpack, openapi_spec_validator, pytest, yaml, opentelemetry.proto, schemathesis, aiosmtpd, prometheus_client' >/dev/null 2>&1; then
  echo "installing Python requirements from $here/requirements.txt" >&2
  "$py" -m pip install -q -r "$here/requirements.txt" || exit $?
fi

cd "$root" || exit 1
"$py" -m pytest -q Tests/interop "$@"
exit $?
