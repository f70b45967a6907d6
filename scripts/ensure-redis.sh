#!/usr/bin/env bash
# The tests start their own redis-server processes; this makes sure the binary is there.
set -euo pipefail
command -v redis-server >/dev/null && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing redis-server (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
else
  echo "redis-server is missing: install it (sudo apt-get install redis-server) and re-run" >&2
  exit 1
fi
