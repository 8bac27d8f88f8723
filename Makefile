# Two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all test-slow lint typecheck unit bench soak bench-cluster plugins clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Troop needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# Every test, with the real services they need (scripts/services.sh installs what is missing).
test: $(STAMP) lint typecheck
	bash scripts/services.sh ensure
	$(BIN)/pytest -q -m "not slow"

# The slow ones too (rotation storm with 1,000 scouts, 100,000-result store growth); CI runs both.
test-all: test test-slow

test-slow: $(STAMP)
	bash scripts/services.sh ensure
	$(BIN)/pytest -q -m slow

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# Troop vs SaltStack vs Ansible on the same namespace hosts, then memory and the 10,000-scout
# swarm (about 30 minutes; root). Installs what it needs under bench/work/ (salt, ansible and
# tools venvs) and openssh-server via apt-get if missing. Not part of `make test`.
#   make bench SCENARIOS=ping,cmd TOOLS=troop,salt RUNS=5   (a subset skips the scale part)
#   make bench BENCH_ARGS="--no-scale"                      (see python bench/run.py --help)
SCENARIOS ?=
TOOLS     ?=
RUNS      ?= 5
bench: $(STAMP)
	$(BIN)/python bench/run.py --runs $(RUNS) $(if $(SCENARIOS),--scenario $(SCENARIOS)) \
		$(if $(TOOLS),--tool $(TOOLS)) $(BENCH_ARGS)

# 1,000 scouts and a job a second for 10 minutes: RSS and open fds must stay flat (not in CI).
soak: $(STAMP)
	$(BIN)/python bench/soak.py --scouts 1000 --minutes 10

# Scale-out: 3 Generals on one PostgreSQL and one NATS (both started by the bench, on loopback),
# 1,000 swarm scouts spread over them; ping of all and of one host on another General (not in CI).
#   make bench-cluster CLUSTER_ARGS="--profile"          (see python bench/cluster.py --help)
bench-cluster: $(STAMP)
	bash scripts/services.sh ensure
	$(BIN)/python bench/cluster.py $(CLUSTER_ARGS)

# The built-in scout_manager plugin, named by the plugin rule (NAME-OS-vX.Y.Z), in build/plugins/.
plugins: $(STAMP)
	$(BIN)/python -m troop.scout_manager.build build/plugins

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
