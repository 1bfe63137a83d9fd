#!/usr/bin/env bash
# The one command that runs every test on a fresh Debian 12 machine (README, .ci/run).
# Installs what the tests need: Debian packages when missing (as root), then npm packages,
# builds (npm ci runs `prepare` → tsc), then runs the whole vitest suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
[ -x /usr/bin/chromium ] || need+=(chromium)   # the dashboard test drives Debian's chromium (playwright-core)
command -v redis-server >/dev/null || need+=(redis-server)   # the fleet test starts its own redis-server
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-all: missing Debian packages: ${need[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "test-all: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

npm ci --no-audit --no-fund
npx vitest run "$@"
