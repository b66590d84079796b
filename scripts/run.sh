#!/usr/bin/env bash
# Runs the Weft server: installs the Debian packages it needs if missing,
# builds a release binary, and starts `weft serve` with any arguments given
# (default: 127.0.0.1:8080, data in ./weft-data).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh run
swift build -c release --product weft
exec .build/release/weft serve "$@"
