#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (Playwright cannot download its own browser offline).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian chromium for the browser tests..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "error: /usr/bin/chromium is missing; install it (sudo apt-get install chromium) and re-run make test" >&2
  exit 1
fi
