# bankplatform: every target installs what it needs first (`make install` is idempotent).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
# `make lab LAB_DIR=... LAB_PORT=...`; $JUPYTER_TOKEN fixes the token (random otherwise).
LAB_DIR ?= notebooks
LAB_PORT ?= 8888
# Apache Airflow beside the project: its own venv (airflow/requirements.lock, never
# the project's packages), its home, and the DAGs kedro-airflow generates.
AIRFLOW_DIR := .airflow
AIRFLOW_BIN := $(AIRFLOW_DIR)/venv/bin
AIRFLOW_ENV ?= local
UI_STORE ?= sqlite:///mlflow.db
UI_PORT ?= 5000

# Feast instruments its classes with typeguard at every import (16 s here);
# optimized mode turns that off. Bytecode caches must be writable for it to pay.
export PYTHONOPTIMIZE := 1
unexport PYTHONDONTWRITEBYTECODE
# BANKPLATFORM_DEBUG=1: Kedro logs everything (conf/logging-debug.yml) and no
# third-party warning is filtered (bankplatform.third_party).
$(if $(BANKPLATFORM_DEBUG),$(eval export KEDRO_LOGGING_CONFIG := $(CURDIR)/conf/logging-debug.yml))
# No call to a third party: bank networks and review rooms are offline.
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: help install lock demo test lint bench lab viz ui clean-data browser screenshots mlflow-server airflow airflow-env

# The demo's recurring steps. The version the last evaluation judged: approved by a
# validator and promoted by a risk officer (tokens the admin issues), if its gates passed.
define APPROVE_AND_PROMOTE
version=$$($(BIN)/python -c "import json; print(json.load(open('data/08_reporting/gate_outcome.json'))['version'])") && \
status=$$($(BIN)/python -c "import json; print(json.load(open('data/08_reporting/gate_outcome.json'))['gate_status'])") && \
if [ "$$status" != passed ]; then echo "version $$version: gates $$status, so no validator may approve it (see its evidence)"; exit 0; fi && \
echo "BANKPLATFORM_TOKEN=<victor.validator's> bankplatform model approve credit_default_pd $$version" && \
BANKPLATFORM_TOKEN=$$($(BIN)/bankplatform token issue --user victor.validator --role model_validator --ttl-minutes 30) \
	$(BIN)/bankplatform model approve credit_default_pd $$version && \
echo "BANKPLATFORM_TOKEN=<rita.riskofficer's> bankplatform model promote credit_default_pd $$version" && \
BANKPLATFORM_TOKEN=$$($(BIN)/bankplatform token issue --user rita.riskofficer --role model_risk_officer --ttl-minutes 30) \
	$(BIN)/bankplatform model promote credit_default_pd $$version
endef
# What the last monitoring run found and did.
define SHOW_ACTION
$(BIN)/python -c "import json; a = json.load(open('data/08_reporting/monitoring/last_action.json')); \
	print('findings:', '; '.join(a['findings'].values()) or 'none'); \
	print('action:', a['action'], a['status'], {k: a[k] for k in ('instead_of', 'new_version', 'gate_status', 'review_id') if k in a}); \
	print('reports:', a['reports'])"
endef

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install exactly requirements.lock (idempotent)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install -q "uv==$(UV_VERSION)"
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

lock: ## Re-pin requirements.lock from the ranges in pyproject.toml
	@test -x $(BIN)/uv || $(MAKE) install
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

demo: install ## Generate the demo extract, run every pipeline, serve, monitor drift (embedded default)
	$(BIN)/bankplatform keys init
	$(BIN)/bankplatform data generate
	$(BIN)/kedro run
	$(BIN)/bankplatform workspace status
	$(BIN)/bankplatform model list
	@echo "== a validator approves and a risk officer promotes the new version, each with a token the admin issued"
	@$(APPROVE_AND_PROMOTE)
	$(BIN)/bankplatform model list
	@echo "== the scoring service: 1,000 applications from the origination system, one decision's whole chain, then 300 drifted ones"
	@$(BIN)/bankplatform serve > data/08_reporting/serve-demo.log 2>&1 & server=$$!; \
	summary=$$($(BIN)/bankplatform simulate traffic --requests 1000); status=$$?; echo "$$summary"; \
	if [ $$status -eq 0 ]; then \
		$(BIN)/bankplatform decision trace $$(echo "$$summary" | grep -o 'req_[0-9a-f]*'); status=$$?; \
	fi; \
	if [ $$status -eq 0 ]; then \
		$(BIN)/bankplatform simulate traffic --requests 300 --drift 0.5 --seed 1; status=$$?; \
	fi; \
	kill $$server; wait $$server 2>/dev/null; exit $$status
	@echo "== monitoring: today's decisions against the champion's validated window, and the action the policy takes"
	$(BIN)/kedro run --pipelines monitoring
	@$(SHOW_ACTION)
	$(BIN)/bankplatform review list
	@echo "== weeks later: loan servicing's outcomes of the granted loans arrive; the same window is judged again"
	$(BIN)/bankplatform simulate outcomes --out data/01_raw/servicing/outcomes-export.csv
	$(BIN)/bankplatform data outcomes data/01_raw/servicing/outcomes-export.csv
	$(BIN)/kedro run --pipelines monitoring
	@$(SHOW_ACTION)
	@echo "== the review asks for a model of the newest window: a data scientist retrains on it; the same two people decide"
	$(BIN)/kedro run --pipelines training,evaluation
	@$(BIN)/python -c "import json; w = json.load(open('data/08_reporting/training_report.json')); \
		g = json.load(open('data/08_reporting/gate_outcome.json')); t = w['training_window']; \
		trained = f\"version {g['version']}: trained on applications up to {t['train_until']}\"; \
		judged = f\"judged against the champion on {t['validate_from']} to {t['newest_labelled']}\"; \
		print(f\"{trained}, {judged} ({w['served_decisions']:,} served decisions with outcomes), gates {g['gate_status']}\")"
	@$(APPROVE_AND_PROMOTE)
	$(BIN)/bankplatform model list
	@echo "== the next morning's bookings: core banking publishes them on the stream (account numbers pseudonymised at the edge); the consumer counts each once into the online store"
	$(BIN)/bankplatform simulate bookings --rate 100 --seconds 3 --seed 5
	$(BIN)/bankplatform stream --until-idle 3
	$(BIN)/bankplatform stream status
	@echo "== where to look next"
	@echo "  MLflow UI (runs, registry, monitoring):  make ui"
	@echo "  evidence notebooks (HTML):               $$(ls data/08_reporting/governance/credit_default_pd/*/model_validation.html | head -1 | xargs dirname)/"
	@echo "  monitoring reports:                      $$(ls -d data/08_reporting/monitoring/*/*/ | tail -1)"
	@echo "  pipelines for reviewers:                 make viz   (then serve build/ on 127.0.0.1)"
	@echo "  model card:                              .venv/bin/bankplatform model card credit_default_pd 1 --html > card.html"
	@echo "  notebooks 01-07 in JupyterLab:           make lab"
	@echo "  platform KPIs:                           .venv/bin/bankplatform kpis"
	@echo "== the audit log"
	$(BIN)/bankplatform audit verify

airflow-env: install ## Install Apache Airflow in its own venv (.airflow/venv, airflow/requirements.lock)
	@test -x $(AIRFLOW_BIN)/python || $(BIN)/uv venv -q --python $(PYTHON) $(AIRFLOW_DIR)/venv
	@test $(AIRFLOW_DIR)/venv/.installed -nt airflow/requirements.lock || { \
		$(BIN)/uv pip sync -q --python $(AIRFLOW_BIN)/python airflow/requirements.lock && touch $(AIRFLOW_DIR)/venv/.installed; }

airflow: airflow-env ## Generate the Airflow DAGs of the pipelines (.airflow/dags; AIRFLOW_ENV=local) and set up Airflow's database
	$(BIN)/kedro airflow create --pipelines monitoring,__default__ --env $(AIRFLOW_ENV) \
		--jinja-file airflow/dag_template.j2 --target-dir $(AIRFLOW_DIR)/dags --group-by memory \
		--params "project_path=$(CURDIR),kedro=$(CURDIR)/$(BIN)/kedro"
	AIRFLOW_HOME=$(CURDIR)/$(AIRFLOW_DIR) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/$(AIRFLOW_DIR)/dags \
		AIRFLOW__CORE__LOAD_EXAMPLES=False $(AIRFLOW_BIN)/airflow db migrate > $(AIRFLOW_DIR)/db-migrate.log
	@echo "DAGs in $(AIRFLOW_DIR)/dags; try one run:  AIRFLOW_HOME=$(CURDIR)/$(AIRFLOW_DIR) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/$(AIRFLOW_DIR)/dags $(AIRFLOW_BIN)/airflow dags test bankplatform_monitoring"

test: install lint browser airflow-env ## Lint, type-check, then run every test
	$(BIN)/pytest -n 3 --dist loadfile --durations=25 || [ $$? -eq 5 ]

# The page tests drive Debian's chromium (never `playwright install`, which downloads).
browser: ## Install Debian's chromium for the browser tests if it is missing (needs root)
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; } \
		|| echo "warning: no /usr/bin/chromium and no root to install it: the browser tests will fail (apt-get install chromium)"

screenshots: install browser ## Refresh docs/screenshots from the browser tests
	BANKPLATFORM_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q -n 2 --dist loadfile -p no:cacheprovider \
		tests/integration/test_workspace_pages.py tests/integration/test_reviewer_pages.py tests/integration/test_monitoring.py

# detect-secrets: every file git tracks or would add, against the audited baseline
# (.secrets.baseline; `detect-secrets audit .secrets.baseline` to review a finding).
lint: install ## ruff (lint + format), mypy on src/, import contracts, no secret in git
	git ls-files -z --cached --others --exclude-standard | xargs -0 $(BIN)/detect-secrets-hook --baseline .secrets.baseline
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install ## Run the benchmarks (not part of CI); ratios against baselines
	$(BIN)/python benchmarks/run.py

# The extension manager stays read-only: browsing it would query PyPI from the lab.
# Token auth (the URL with the token is printed), the project's venv as the
# `bankplatform` kernel, no news or update checks (jupyter/lab/settings/overrides.json).
lab: install ## Start JupyterLab on 127.0.0.1 (token auth, the project's kernel, offline)
	@$(BIN)/python -m ipykernel install --sys-prefix --name bankplatform --display-name "bankplatform (.venv)" >/dev/null
	$(BIN)/jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --no-browser --notebook-dir $(LAB_DIR) \
		--LabApp.app_settings_dir=$(CURDIR)/jupyter/lab/settings \
		--LabApp.extension_manager=readonly $(if $(filter 0,$(shell id -u)),--allow-root)

viz: install ## Build the offline-safe kedro-viz site for reviewers into build/
	$(BIN)/kedro viz build --include-hooks --include-previews
	$(BIN)/python -m bankplatform.review.offline_site build

# MLflow's documented opt-outs: no usage data leaves (the UI still shows its notice
# on the home page, which is why the address printed is the experiment's), and the
# AI Gateway (LLM provider keys and endpoints) is off.
ui: install ## MLflow's UI over the workspace's tracking store on 127.0.0.1, telemetry off
	@echo "open $$($(BIN)/python -m bankplatform.review.tracking_ui $(UI_STORE) $(UI_PORT))"
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true MLFLOW_ENABLE_AI_GATEWAY=false \
		$(BIN)/mlflow ui --backend-store-uri $(UI_STORE) --host 127.0.0.1 --port $(UI_PORT)

# The production profile's tracking server: conf/$(ENV)/tracking_server.yml, its
# secrets in conf/local/credentials.yml (docs/operations.md has the set-up).
mlflow-server: install ## MLflow tracking server on PostgreSQL (verify-full TLS), basic auth, HTTPS (ENV=prod)
	$(BIN)/bankplatform tracking-server --env $(or $(ENV),prod)

clean-data: ## Remove generated data (keeps the folder layout)
	find data -type f ! -name .gitkeep -delete
