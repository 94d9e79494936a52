# Two commands set up a fresh machine:
#   make up     install everything, then run the whole platform (embedded backends)
#   make test   install everything, then lint protos, check gen/, run every test suite
# Both create ./.venv and node_modules/ on first use.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test setup gen lint check-gen breaking pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

setup: $(STAMP) node_modules/.installed

up: $(STAMP)
	$(BIN)/longtail up $(ARGS)

gen: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

lint: node_modules/.installed
	npx --no-install buf lint

# Breaking-change check of the contracts against the previous commit.
breaking: node_modules/.installed
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git ls-tree -d HEAD~1 protos >/dev/null 2>&1 && [ -n "$$(git ls-tree HEAD~1 protos)" ]; then \
		npx --no-install buf breaking --against '.git#ref=HEAD~1'; \
	else echo "buf breaking: no previous commit with protos/, nothing to compare"; fi

check-gen: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: setup lint breaking check-gen pytest

clean:
	rm -rf $(VENV) node_modules .pytest_cache
