# Two commands set up a fresh machine:
#   make up     install everything, then run the whole platform (embedded backends)
#   make test   install everything, then lint protos, check gen/, run every test suite
# Both create ./.venv and node_modules/ on first use.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test setup gen lint check-gen breaking pytest bench clean chromium prometheus web web-check bench-tools load-bench deploy-check asr-bench haproxy node-loss-bench origin-store-bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,research]'
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch node_modules/.installed

setup: $(STAMP) node_modules/.installed web/node_modules/.installed chromium prometheus haproxy

# The browser pages' front end (web/): hls.js, tus-js-client, bundled by esbuild into
# gateway/static/ (committed, shipped in the Python package).
web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch web/node_modules/.installed

web: web/node_modules/.installed
	cd web && node build.mjs

# CI: the committed gateway/static/ must be exactly what a fresh build from the lockfile gives.
web-check: web/node_modules/.installed
	@rm -rf .cache/web-check && mkdir -p .cache/web-check
	cd web && node build.mjs ../.cache/web-check
	@diff -r gateway/static .cache/web-check || { echo "gateway/static/ is out of date with web/ (run make web)"; exit 1; }
	@echo "gateway/static/ matches a fresh build of web/"

# Browser tests drive Debian's chromium through Playwright (no browser download). Install it
# when missing and apt is usable; otherwise the browser tests say why they cannot run
# (skipped locally, failed in CI).
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium (Debian package) for the browser tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	else echo "chromium is not installed and apt-get is not usable: browser tests will not run"; fi

# Prometheus and Alertmanager (Debian's packages): promtool and amtool check the alert rules
# and configs under deploy/observability/. Installed when missing and apt is usable;
# otherwise those tests say why they cannot run (skipped locally, failed in CI).
prometheus:
	@if command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing prometheus and prometheus-alertmanager (Debian packages) for the alert rule tests"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus prometheus-alertmanager; \
	else echo "promtool/amtool are not installed and apt-get is not usable: alert rule tests will not run"; fi

# HAProxy (Debian's package): the load balancer in front of the two platform nodes of the
# node-loss test (tests/test_node_loss.py) and bench/node_loss.py. Installed when missing and
# apt is usable; otherwise that test says why it cannot run (skipped locally, failed in CI).
haproxy:
	@if command -v haproxy >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing haproxy (Debian package) for the node-loss test"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy; \
	else echo "haproxy is not installed and apt-get is not usable: the node-loss test will not run"; fi

# Two platform nodes behind HAProxy on the real test servers, one killed under load:
# bench/results/node_loss.json (needs Java for the servers).
node-loss-bench: $(STAMP) haproxy
	$(BIN)/python bench/node_loss.py $(ARGS)

# wrk and nginx (Debian's packages) for bench/load_bench.py (`make load-bench`).
bench-tools:
	@if command -v wrk >/dev/null 2>&1 && command -v nginx >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx; \
	else echo "wrk/nginx are not installed and apt-get is not usable: the load benchmark cannot run"; fi

load-bench: $(STAMP) bench-tools
	$(BIN)/python bench/load_bench.py $(ARGS)

# bench/asr_bench.py speaks its test sentences with Debian's espeak-ng.
asr-bench: $(STAMP)
	@command -v espeak-ng >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng; }
	$(BIN)/python bench/asr_bench.py $(ARGS)

# The fleet's origin (S3Proxy answering presigned segment URLs) against nginx: needs Java.
origin-store-bench: $(STAMP) bench-tools
	$(BIN)/python bench/origin_store_bench.py $(ARGS)

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

# The fleet's deploy files against maintained schemas, offline (both tools are dev
# dependencies in .venv, their schemas inside the packages): deploy/compose.yaml against the
# compose-spec (vendored by check-jsonschema), deploy/k8s/ against Kubernetes 1.34's schemas
# (kubernetes-validate, strict: unknown fields fail). cert-manager's kinds have no schema
# there (--no-warn hides that); tests/test_deploy_k8s.py checks them and how every object fits together.
deploy-check: $(STAMP)
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(BIN)/kubernetes-validate --kubernetes-version 1.34 --strict --quiet --no-warn deploy/k8s/*.yaml

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: setup lint breaking check-gen web-check deploy-check pytest

clean:
	rm -rf $(VENV) node_modules web/node_modules .pytest_cache
