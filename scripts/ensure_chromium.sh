#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (Playwright cannot download its own browser offline).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
bash "$(dirname "$0")/apt_install.sh" chromium "the browser tests"
