#!/usr/bin/env bash
# Every test layer, in order; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
export MPLBACKEND=Agg
if [ -f js/package.json ]; then
  (cd js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run typecheck && npm run build && npm test)
fi
python -m pytest "$@"
if [ -f mkdocs.yml ]; then
  python -m mkdocs build --strict --site-dir site
fi
