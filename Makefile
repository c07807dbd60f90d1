# wasupd: `make demo` shows it working, `make test` is the one test command (CI runs it).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: all install system-deps lint test demo bench deb clean

all: test

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

system-deps:
	@scripts/system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check wasupd wasupctl tests bench scripts packaging
	$(VENV)/bin/ruff format --check wasupd wasupctl tests bench scripts packaging
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: $(STAMP) system-deps lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: $(STAMP) system-deps
	@$(PY) scripts/demo.py

bench: $(STAMP) system-deps
	$(PY) bench/run_all.py

# dist/wasupd_<version>_<arch>.deb: the application in its own venv under /opt/wasupd (Debian's python3).
deb: $(STAMP) system-deps
	packaging/build-deb.sh dist

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
