# Set-up is two commands: `make demo` and `make test`. Each installs what it
# needs first (a virtualenv in .venv, the control-plane binaries in the cache).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test unit integration lint fmt binaries peers browser base-python dashboard demo bench bench-peers chaos sandbox-up sandbox-down clean image

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The control plane, the metrics pipeline the test sandbox starts with
# (prometheus-adapter), and the VictoriaMetrics the backend tests query:
# built once, a few minutes cold, then cached.
binaries:
	bash hack/build-binaries.sh >/dev/null
	bash hack/build-binaries.sh --metrics >/dev/null
	bash hack/build-binaries.sh --victoria-metrics >/dev/null

# Argo Rollouts and Flagger, for the peer comparison only (bench/peers builds
# them itself when it runs; `make test` never needs them).
peers:
	bash hack/build-peers.sh >/dev/null

# Debian's chromium + chromedriver for the dashboard's browser tests.
browser:
	bash hack/browser.sh

# Debian's python3.11, the in-cluster test's stand-in for the image's base.
base-python:
	bash hack/base-python.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check canary analysis tests bench chaos
	$(VENV)/bin/ruff format --check canary analysis tests bench chaos
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix canary analysis tests bench chaos
	$(VENV)/bin/ruff format canary analysis tests bench chaos

unit: $(STAMP)
	$(PY) -m pytest -m "not integration" -q

integration: $(STAMP) binaries browser
	$(PY) -m pytest -m integration -q

# Lint, type check, then every test (unit and integration on the real sandbox).
test: lint binaries browser base-python
	$(PY) -m pytest -q -ra

demo: $(STAMP) binaries
	$(PY) -m canary.demo $(DEMO_ARGS)

bench: $(STAMP) binaries
	$(PY) -m bench $(BENCH_ARGS)

# The chaos soak (not part of `make test`): 15 min of faults by default.
# CHAOS_ARGS="--duration 30m --seed 7" to change it; see README "Chaos soak".
chaos: $(STAMP) binaries
	$(PY) -m chaos $(CHAOS_ARGS)

# canary against Argo Rollouts and Flagger on one sandbox (also part of `make bench`).
bench-peers: $(STAMP) binaries peers
	$(PY) -m bench.peers $(PEERS_ARGS)

sandbox-up: $(STAMP) binaries
	$(VENV)/bin/canary sandbox up

# The web dashboard against the current kubeconfig (DASHBOARD_ARGS="-n shop").
dashboard: $(STAMP)
	$(VENV)/bin/canary dashboard $(DASHBOARD_ARGS)

sandbox-down: $(STAMP)
	$(VENV)/bin/canary sandbox down

# The controller image, with docker, podman or buildah, whichever works here
# (IMAGE=registry/name:tag to name it); says so and fails when none does.
image:
	$(if $(IMAGE),IMAGE=$(IMAGE)) bash hack/image.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
