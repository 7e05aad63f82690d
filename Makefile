# The two commands a fresh machine needs (see README.md):
#   make sandbox   set up, start the local sandbox cluster, run site.yml on it
#   make test      set up, run every test (unit, sanity, integration)
# and for the inner loop and measurements:
#   make test-quick  unit, sanity and lint tests only (no sandbox), a few minutes
#   make bench     set up, run the benchmarks (bench/), print one table
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTEST_ARGS ?=
# pytest-xdist workers, each with a sandbox of its own (tests/support/sandbox.py),
# each file on one worker. Two is what a 2-core machine gains most from
# (docs/test-suite-timing.md: a third was slower); 1 runs in one process.
# --no-loadscope-reorder keeps tests/conftest.py's order (longest file first);
# left alone, xdist starts the files with the most tests first.
TEST_WORKERS ?= 2
XDIST = $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder,)

.PHONY: help setup sandbox sandbox-down test test-quick unit bench lock ee-context vllm-flags

help:
	@echo "make sandbox   - set up, start the sandbox cluster, run site.yml against it"
	@echo "make test      - set up and run all tests (unit, sanity, integration; TEST_WORKERS=2 in parallel)"
	@echo "make test-quick - unit, sanity and lint tests only: no sandbox, a few minutes"
	@echo "make sandbox-down - stop the sandbox cluster"
	@echo "make bench     - run the benchmarks against their baselines (BENCH_ARGS=\"--only NAME --quick\")"

setup:
	hack/setup

sandbox: setup
	hack/sandbox up
	K8S_AUTH_KUBECONFIG=$$(hack/sandbox kubeconfig) .venv/bin/ansible-playbook -i inventories/sandbox site.yml

sandbox-down:
	hack/sandbox down

test:
	hack/setup --host-image
	.venv/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-quick:
	hack/setup-python
	.venv/bin/python -m pytest $(XDIST) tests/unit tests/sanity $(PYTEST_ARGS)

# Each benchmark against the tool a user would otherwise use, in the same run
# (bench/README.md); the table goes to stdout, the rows to bench/results/.
BENCH_ARGS ?=
bench: setup
	.venv/bin/pip install -q -r bench/requirements.txt
	.venv/bin/python bench/run.py $(BENCH_ARGS)

unit: setup
	.venv/bin/python -m pytest tests/unit $(PYTEST_ARGS)

# Re-resolve requirements.in into the pinned requirements.txt.
lock:
	. hack/lib/python.sh && py=$$(require_python) && rm -rf .cache/lock-venv && "$$py" -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install -q -r requirements.in
	{ echo "# Pinned, resolved from requirements.in (make lock) with Python $$(.cache/lock-venv/bin/python -c 'import sys; print(*sys.version_info[:2], sep=".")')."; \
	  .cache/lock-venv/bin/pip freeze; } > requirements.txt

# The execution environment's build context (execution-environment.yml):
# the collection tarball, then ansible-builder's Containerfile and files.
ee-context:
	hack/setup-python
	rm -rf .cache/ee-collection .cache/ee-context && mkdir -p .cache/ee-collection
	.venv/bin/ansible-galaxy collection build --force --output-path .cache/ee-collection .
	mv .cache/ee-collection/inferops-vllm-*.tar.gz .cache/ee-collection/inferops-vllm.tar.gz
	.venv/bin/ansible-builder create -f execution-environment.yml -c .cache/ee-context --output-filename Containerfile

# Regenerate the vLLM flag catalog (plugins/module_utils/serving/_vllm_flags_data.py)
# from the released wheels' sources: the latest patch of every minor from 0.10
# that the package index serves, each downloaded to a temporary folder, read
# and deleted (see docs/serving_plan.md, "vLLM flags per version").
vllm-flags:
	.venv/bin/python hack/extract-vllm-flags.py --output plugins/module_utils/serving/_vllm_flags_data.py
