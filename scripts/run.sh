#!/usr/bin/env bash
# Runs the Weft server: installs the Debian packages it needs if missing,
# builds a release binary, and starts `weft serve` with any arguments given
# (default: 127.0.0.1:8080, data in ./weft-data).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh run
swift build -c release --product weft
# Organization secrets need a master key kept outside the data directory:
# one is made once in ~/.config/weft (0600) unless the caller names a key.
if [ -z "${WEFT_SECRETS_KEY:-}${WEFT_SECRETS_KEY_FILE:-}" ] && [[ " $* " != *" --secrets-key-file"* ]]; then
  key="${XDG_CONFIG_HOME:-$HOME/.config}/weft/master.key"
  if [ ! -f "$key" ]; then
    mkdir -p "$(dirname "$key")" && chmod 700 "$(dirname "$key")"
    .build/release/weft secrets new-key --out "$key" >/dev/null
  fi
  export WEFT_SECRETS_KEY_FILE="$key"
fi
# weft_build_info's revision label: the commit this checkout is at.
if [ -z "${WEFT_REVISION:-}" ]; then
  WEFT_REVISION=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
  export WEFT_REVISION
fi
exec .build/release/weft serve "$@"
