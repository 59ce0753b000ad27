# Two commands for a newcomer: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/doit
	@echo
	@echo "reports:   exchange/reports/ (summary.md, <order>.md, <order>.json)"
	@echo "quilt:     .toyfoundry/telemetry/quilt/quilt_rollup_all.json"
	@echo "exports:   .toyfoundry/telemetry/quilt/exports/"
	@echo "dashboard: .toyfoundry/telemetry/quilt/dashboard.html (earlier days: .toyfoundry/telemetry/dashboards/index.html)"
	@echo "outbox:    exchange/outbox/toysoldiers/"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check toyfoundry tests bench dodo.py
	$(BIN)/ruff format --check toyfoundry tests bench dodo.py
	$(BIN)/mypy toyfoundry

bench: $(STAMP)
	$(BIN)/python -m bench

clean-venv:
	rm -rf $(VENV)
