# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each creates .venv (if missing) and installs what it needs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The tested torch pair (served from local disk on our build machines; a library must not pin it,
# so it is installed here, before the package, rather than in pyproject.toml).
TORCH  ?= torch==2.14.1 torchvision==0.29.1
WS     ?= curator-demo

.PHONY: demo test install browsers postgres lab clean docs-images

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/curator demo --workspace $(WS)

browsers:
	bash scripts/ensure_chromium.sh

postgres:
	bash scripts/ensure_postgres.sh

test: $(VENV)/.installed browsers postgres
	bash scripts/test.sh

# Browser tests write widget screenshots to artifacts/screenshots/ (ignored); copy them into the docs.
docs-images:
	@ls artifacts/screenshots/*.png >/dev/null 2>&1 || { echo "no screenshots yet: run the browser tests (pytest tests/browser)" >&2; exit 1; }
	cp artifacts/screenshots/*.png docs/images/

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) $(WS) artifacts
