#!/usr/bin/env bash
# The label-store tests start a real PostgreSQL from Debian's package (initdb + pg_ctl in a temp dir);
# CURATOR_PG_BIN names another folder holding initdb and pg_ctl. Debian's package also starts a
# cluster of its own; the tests start theirs, so that service is left alone.
set -euo pipefail
if [ -n "${CURATOR_PG_BIN:-}" ]; then
  [ -x "$CURATOR_PG_BIN/initdb" ] && [ -x "$CURATOR_PG_BIN/pg_ctl" ] && exit 0
elif ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
bash "$(dirname "$0")/apt_install.sh" postgresql "the label-store tests"
