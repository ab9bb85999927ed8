#!/usr/bin/env bash
# Install one Debian package for the tests when it is missing: `apt_install.sh PACKAGE WHAT-FOR`.
# As root with apt-get (CI) it installs; otherwise it says what to run and fails.
set -euo pipefail
pkg=$1
why=$2
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing Debian $pkg for $why..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
else
  echo "error: $pkg is missing for $why; install it (sudo apt-get install $pkg) and re-run make test" >&2
  exit 1
fi
