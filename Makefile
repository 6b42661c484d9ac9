# The project's two commands: `make demo` (set up, then `pulumi up` of the local stack) and `make test`.
# Both install only what is missing, so running them again is quick. Every stack command below is
# plain `pulumi` in a shell prepared by `. tools/pulumi/activate`; type the same commands yourself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.requirements-installed
POLICY_STAMP := policy/venv/.requirements-installed
STACK ?= local
PULUMI := . tools/pulumi/activate && pulumi

.PHONY: demo test lint bench setup engine browser lint-tools preview up refresh destroy outputs try emulator-stop clean-local

demo: setup
	$(PULUMI) stack select --create $(STACK)
	$(PULUMI) up --yes --stack $(STACK)
	@echo "--- stack outputs (pulumi stack output --json) ---"
	@$(PULUMI) stack output --json --stack $(STACK)

test: setup browser lint-tools lint
	$(PY) -m pytest

# ruff (pyflakes, bugbear, import order) and mypy (strict on tuning/), configured in pyproject.toml.
lint: $(VENV_STAMP)
	$(PY) -m ruff check --quiet .
	$(PY) -m mypy

# Every benchmark of bench/ (a few minutes; best on a quiet machine), then bench/results.md with the machine's
# description. A benchmark that misses its target still lets the others run; the report then fails the target.
BENCH_RESULTS := bench/results
bench: setup
	rm -f $(BENCH_RESULTS)/*.json
	-$(PY) bench/bench_validate.py --mode small
	-$(PY) bench/bench_validate.py --mode command --size-mb 300
	-$(PY) bench/bench_validate.py --mode rate --size-mb 300
	-$(PY) bench/bench_noop.py --runs 9
	-$(PY) bench/bench_emulator.py
	-$(PY) bench/bench_training.py
	$(PY) bench/report.py

setup: $(VENV_STAMP) $(POLICY_STAMP) engine

$(VENV_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The policy pack's own venv: pulumi-policy pins protobuf 5.x, which the project's venv cannot have.
$(POLICY_STAMP): policy/requirements.txt
	test -x policy/venv/bin/python || $(PYTHON) -m venv policy/venv
	policy/venv/bin/python -m pip install --quiet --disable-pip-version-check -r policy/requirements.txt
	touch $@

# The pinned Pulumi CLI and our Python language host: reused from the cache or a PATH install, built
# from Go modules the first time.
engine:
	@bash tools/pulumi/build.sh >/dev/null

# The GitHub Actions workflow linters that tests/workflows runs: actionlint built from its Go module into the
# cache the first time (like the engine), zizmor and shellcheck from PyPI into the venv (single binaries with
# no Python dependencies, so they share it); see tools/lint/install.sh.
lint-tools: $(VENV_STAMP)
	@bash tools/lint/install.sh >/dev/null

# Debian's Chromium for the console's browser test (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "error: the console test needs Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

preview: setup
	$(PULUMI) preview --diff --stack $(STACK)

up refresh destroy: setup
	$(PULUMI) $@ --yes --stack $(STACK)

outputs: setup
	@$(PULUMI) stack output --json --stack $(STACK)

# Prompt the stack's tuned endpoint: make try PROMPT="English: Good morning. Spanish:"
PROMPT ?= English: Good morning. Spanish:
try: setup
	@. tools/pulumi/activate && \
	  endpoint="$$(pulumi stack output tunedModelEndpointName --stack $(STACK))" && \
	  emulator="$$(pulumi config get translation-tuning:emulatorEndpoint --stack $(STACK) 2>/dev/null || true)" && \
	  if [ "$$emulator" = embedded ]; then emulator="$$($(PY) -m emulator.background start --project-dir "$(CURDIR)")"; fi && \
	  $(PY) -m tuning generate "$$endpoint" "$(PROMPT)" $${emulator:+--emulator "$$emulator"} \
	    --project "$$(pulumi config get gcp:project --stack $(STACK))" \
	    --location "$$(pulumi config get gcp:region --stack $(STACK) 2>/dev/null || echo us-central1)"

emulator-stop: $(VENV_STAMP)
	$(PY) -m emulator.background stop --project-dir "$(CURDIR)"

# Forget the local stack and the emulator's state (destroy first if you want the jobs cancelled).
# Other stacks' state in .pulumi-state is left alone.
clean-local: setup
	-$(PULUMI) stack rm local --force --yes
	$(PY) -m emulator.background stop --project-dir "$(CURDIR)"
	rm -rf .run
