# Two commands on a fresh machine: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Prefect: no telemetry, and enough time for a cold ephemeral server on a small machine.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: venv demo test bench soak lint serve serve-sandbox clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/consent demo

# pytest-xdist workers, each with its own Prefect test server, sandbox and databases: one more than the cores,
# as a fifth of the suite's time is spent waiting (servers, subprocesses, Retry-After): on 2 cores 3 workers took
# 306 s, 2 took 353 s, 4 took 319 s. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print((os.cpu_count() or 1) + 1)")
test: venv
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

# Figures, not tests: the flows at chosen sizes against a sandbox process and a real Prefect server, and the
# reconciliation diff against a naive loop, paging under a low per-minute rate limit (~2 min), the event-driven
# nights (webhooks, codat-events, incremental reconciliation), and webhook-to-correction latency under
# deployments.serve, and the Consent API under load (access checks with wrk, batches, grant/revoke; on PostgreSQL
# too when BENCH_POSTGRES_URL is set). Results land in benchmarks/results/ (gitignored).
BENCH_COMPANIES ?= 1000 10000
BENCH_POSTGRES_URL ?=
bench: venv
	$(BIN)/python -m benchmarks.bench --companies $(BENCH_COMPANIES)
	$(BIN)/python -m benchmarks.diff_bench --rows 1000000
	$(BIN)/python -m benchmarks.rate_limit_bench
	$(BIN)/python -m benchmarks.incremental_bench --companies $(BENCH_COMPANIES) --nights 3
	$(BIN)/python -m benchmarks.webhook_latency_bench
	$(BIN)/python -m benchmarks.access_core_bench --companies 10000 $(if $(BENCH_POSTGRES_URL),--postgres-url $(BENCH_POSTGRES_URL))
	$(BIN)/python -m benchmarks.api_bench --companies 10000 $(if $(BENCH_POSTGRES_URL),--postgres-url $(BENCH_POSTGRES_URL))

# Longer runs of the crash trials (SIGKILL at random points): 20 per flow instead of CI's few, for every flow
# (the scan and the reconciliation in test_flow_crashes.py, retention in test_retention_crashes.py), with the
# scan's send/mark kill and the API fault runs of every flow beside them; and the sandbox fuzzed from Codat's
# spec with 16 times the suite's examples (test_sandbox_fuzz.py, a few minutes).
soak: venv
	CONSENT_CRASH_TRIALS=20 CONSENT_FUZZ_EXAMPLES=400 $(BIN)/python -m pytest -q tests/test_flow_crashes.py \
		tests/test_retention_crashes.py tests/test_flow_expiry_scan.py tests/test_flow_faults.py \
		tests/test_sandbox_fuzz.py tests/test_api_openapi.py

lint: venv
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check .

# The system as operators see it: a Prefect server (UI at http://127.0.0.1:4200), the Codat sandbox, and every
# deployment of prefect.yaml served on its schedule from one process. Ctrl-C stops all of it.
serve: venv
	$(BIN)/python -m deployments.serve $(SERVE_ARGS)

serve-sandbox: venv
	$(BIN)/consent sandbox serve --api-key "$${CONSENT_CODAT_API_KEY:-sandbox-key}"

clean:
	rm -rf $(VENV) .consent .pytest_cache .hypothesis
