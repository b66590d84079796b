#!/usr/bin/env bash
# Installs the Debian packages Weft needs to build, run and test, if missing.
# Usage: scripts/install-deps.sh [run|test]   (default: run)
set -euo pipefail
mode=${1:-run}
packages=(libnghttp2-dev zlib1g-dev libsqlite3-dev libssl-dev libjemalloc-dev pkg-config)
if [ "$mode" = test ]; then
  # h2load (nghttp2-client), promtool (prometheus), the blackbox exporter
  # (test_prometheus_scrape.py probes Weft with it), curl with HTTP/2, strace
  # (test_engine_flags.py counts the fsyncs of --store-sync), and grpc's own
  # Ruby interop client (ruby-grpc ships src/ruby/pb/test/client.rb; ruby gives
  # /usr/bin/ruby) for Tests/interop/test_grpc_interop_ruby.py.
  # chromium drives the dashboard's browser tests (Tests/web, Playwright for
  # Python pointed at it: no browser download).
  packages+=(nghttp2-client prometheus prometheus-blackbox-exporter curl strace ruby ruby-grpc chromium fonts-dejavu-core)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # --no-install-recommends keeps the prometheus package from pulling in extras;
  # policy-rc.d stops the package from trying to start a Prometheus service.
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
