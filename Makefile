# crm-chaincode: `make run` and `make test` on a fresh machine (Python 3.11 and Node 20).
# Only the PyPI and npm registries are used (pip install, npm ci); nothing else is downloaded.
# Nothing here removes var/ (chain state, database, keystore, keyring).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null || echo python3)
endif
NPM ?= npm
VENV := .venv
CLI := $(VENV)/bin/crm-chaincode
PY_STAMP := $(VENV)/.stamp-install
NPM_STAMP := node_modules/.stamp-npm
# The web assets of /portal/, /console/ and /docs, bundled from web/ and node_modules (offline).
WEB_DIR := build/web
WEB_STAMP := $(WEB_DIR)/.stamp-web
WEB_SOURCES := $(shell find web -type f 2>/dev/null) tools/build-web.mjs
# Slither has its own venv: slither-analyzer needs web3 < 8, the project's .venv has web3 8.
SLITHER_VENV := .venv-slither
SLITHER_STAMP := $(SLITHER_VENV)/.stamp-install
SLITHER_REQUIREMENTS := tools/slither-requirements.txt
TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export TEST_POSTGRES_URL
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: one per core, at most TEST_MAX_WORKERS (each worker may run
# its own Anvil and gateway processes and PostgreSQL connections). TEST_WORKERS=0 runs in-process.
TEST_WORKERS ?= auto
TEST_MAX_WORKERS ?= 4
ARGS ?=

.PHONY: help deps run test fuzz lint slither compile deploy node clean distclean bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Python: a venv with the project installed in editable mode, redone when pyproject.toml changes.
$(PY_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "Python 3.11 or newer is needed (tried '$(PYTHON)'); set PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(VENV)/bin/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

# npm: the pinned tools (solc-js, OpenZeppelin, Anvil), reinstalled when the lock file changes.
# A node_modules that npm itself recorded as matching the lock file is kept (no stamp yet).
$(NPM_STAMP): package-lock.json package.json
	@command -v node >/dev/null && node -e 'process.exit(parseInt(process.versions.node, 10) < 20 ? 1 : 0)' || \
	  { echo "Node.js 20 or newer is needed (with npm) to install the pinned tools" >&2; exit 1; }
	@if [ ! -e $@ ] && [ node_modules/.package-lock.json -nt package-lock.json ] \
	    && [ node_modules/.package-lock.json -nt package.json ]; then \
	  echo "node_modules already matches package-lock.json (npm's own record); not reinstalling"; \
	else \
	  echo "$(NPM) ci --no-audit --no-fund"; $(NPM) ci --no-audit --no-fund; \
	fi
	@touch $@

# The gateway's web assets: esbuild bundles web/ with viem; Swagger UI is copied from swagger-ui-dist.
$(WEB_STAMP): $(WEB_SOURCES) package-lock.json $(NPM_STAMP)
	node tools/build-web.mjs $(WEB_DIR)
	@touch $@

deps: $(PY_STAMP) $(NPM_STAMP) $(WEB_STAMP) ## install Python and npm dependencies (and build the web assets) when missing or changed

# Slither's venv, with every package pinned in tools/slither-requirements.txt; redone when it changes.
$(SLITHER_STAMP): $(SLITHER_REQUIREMENTS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "Python 3.11 or newer is needed (tried '$(PYTHON)'); set PYTHON=/path/to/python3.11" >&2; exit 1; }
	@test -x $(SLITHER_VENV)/bin/python || { echo "creating $(SLITHER_VENV) with $(PYTHON)"; $(PYTHON) -m venv $(SLITHER_VENV); }
	$(SLITHER_VENV)/bin/python -m pip install --disable-pip-version-check -q -r $(SLITHER_REQUIREMENTS)
	@touch $@

run: deps ## Anvil + migrations + gateway on http://127.0.0.1:8000 (Ctrl-C stops both)
	$(CLI) run $(ARGS)

test: deps ## the test suite (PostgreSQL tests are skipped if it is unreachable)
	@$(VENV)/bin/python tools/check_postgres.py
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --maxprocesses $(TEST_MAX_WORKERS) --dist worksteal $(PYTEST_ARGS)

# Schemathesis over /openapi.json against a live gateway, with a key of every role: FUZZ_EXAMPLES
# generated requests per operation (`make test` runs the same test with 6).
FUZZ_EXAMPLES ?= 60
fuzz: deps ## the longer Schemathesis run against a live gateway (README: "Fuzzing the API")
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(VENV)/bin/pytest -q -n 0 -s --timeout 0 tests/fuzz $(PYTEST_ARGS)

lint: deps ## ruff check, ruff format --check, mypy, then `make slither`
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	@$(MAKE) slither

# The compiler settings (EVM version, optimizer runs) are the project's, from crm_gateway.config.
slither: deps $(SLITHER_STAMP) ## Slither on contracts/ and slither-check-erc on LoyaltyPoints (via tools/solc)
	@opts=$$($(VENV)/bin/python -c 'from crm_gateway.config import Settings; s = Settings(); \
	  print(f"--evm-version {s.evm_version} --optimize-runs {s.optimizer_runs}")'); \
	  status=0; \
	  $(SLITHER_VENV)/bin/python tools/slither_check.py $$opts analyze || status=1; \
	  $(SLITHER_VENV)/bin/python tools/slither_check.py $$opts erc || status=1; \
	  exit $$status

bench: deps ## benchmarks against baselines of the same run (fresh Anvil; ~5 min): BENCHMARKS.md
	$(VENV)/bin/python -m bench.run $(ARGS)

compile: deps ## compile contracts/ into abi/
	$(CLI) compile $(ARGS)

deploy: deps ## run the migrations against the configured chain
	$(CLI) deploy $(ARGS)

node: deps ## run the project's Anvil node in the foreground
	$(CLI) node $(ARGS)

clean: ## remove caches and build leftovers (keeps .venv, node_modules and var/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
	find . -path ./node_modules -prune -o -path ./$(VENV) -prune -o -path ./$(SLITHER_VENV) -prune -o \
	  -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## also remove .venv, .venv-slither and node_modules (var/ is kept)
	rm -rf $(VENV) $(SLITHER_VENV) node_modules
