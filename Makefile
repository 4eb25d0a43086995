# Template maintainers' entry points. `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
DEMO := build/demo

.PHONY: help venv test demo lint bench lock regions instance-types clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Create .venv (stdlib venv, pip install uv, uv installs the dev group)

$(VENV)/.installed: pyproject.toml uv.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv
	$(VENV)/bin/uv sync --locked --group dev
	touch $@

# With PYTHONDONTWRITEBYTECODE=1 no process writes bytecode, so each of the suite's hundreds
# of processes would compile the SDK, moto and cfn-lint again: compile every module once,
# before the suite (30 s on 2 cores). The demo's two processes do without.
$(VENV)/.compiled: $(VENV)/.installed
	$(VENV)/bin/uv sync --locked --group dev --compile-bytecode
	touch $@

test: $(VENV)/.compiled ## Run the whole template suite in parallel (bakes every option combination)
	$(PY) -m pytest -n auto

demo: venv ## Bake the default answers into build/demo/ and run the local ML pipeline
	rm -rf $(DEMO)
	$(VENV)/bin/cookiecutter --no-input --output-dir $(DEMO) .
	$(MAKE) -C $(DEMO)/churn-model local-pipeline PYTHON=$(abspath $(PY))

lint: venv ## ruff and the other pre-commit hooks over the template's own files
	PATH="$(abspath $(VENV)/bin):$$PATH" $(VENV)/bin/pre-commit run --all-files

bench: venv ## Measure bake time, the baked suites and the local pipeline against the targets
	$(PY) scripts/benchmark.py

lock: venv ## Regenerate the generated repo's uv.lock from its pyproject.toml (UPGRADE=1: newest versions)
	$(PY) scripts/lock.py $(if $(UPGRADE),--upgrade)

regions: venv ## Regenerate the regions the pre-gen hook accepts (cfn-lint's region schemas)
	$(PY) scripts/regions.py

instance-types: venv ## Regenerate the hook's instance types per use and the endpoint's local-storage families
	$(PY) scripts/instance_types.py

clean: ## Remove the venv and build outputs
	rm -rf $(VENV) build .pytest_cache .ruff_cache
