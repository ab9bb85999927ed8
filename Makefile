# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each creates .venv (if missing) and installs what it needs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The tested torch pair (served from local disk on our build machines; a library must not pin it,
# so it is installed here, before the package, rather than in pyproject.toml).
TORCH  ?= torch==2.14.1 torchvision==0.29.1
WS     ?= curator-demo

.PHONY: demo test install browsers lab clean

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

test: $(VENV)/.installed browsers
	bash scripts/test.sh

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf $(VENV) $(WS) artifacts
