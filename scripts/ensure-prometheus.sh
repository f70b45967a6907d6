#!/usr/bin/env bash
# tests/integration/test_monitoring.py runs a real Prometheus (and promtool); this makes sure both are there.
set -euo pipefail
command -v prometheus >/dev/null && command -v promtool >/dev/null && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing prometheus (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
else
  echo "prometheus is missing: install it (sudo apt-get install prometheus) and re-run" >&2
  exit 1
fi
