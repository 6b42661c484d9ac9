# The project's two commands: `make demo` (set up, then pulumi up of the local stack) and `make test`.
# Both install only what is missing, so running them again is quick.
SHELL := /bin/bash
PYTHON ?= python3
VENV := venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.requirements-installed
STACK ?= local

.PHONY: demo test engine browser preview up refresh destroy outputs try emulator-stop clean-local

demo: $(VENV_STAMP) engine
	$(PY) -m deploy up --stack $(STACK)
	@echo "--- stack outputs (pulumi stack output --json) ---"
	@$(PY) -m deploy outputs --stack $(STACK)

test: $(VENV_STAMP) engine browser
	$(PY) -m pytest

$(VENV_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The pinned Pulumi CLI: reused from the cache or a PATH install, built from Go modules the first time.
engine:
	@bash tools/pulumi/build.sh >/dev/null

# Debian's Chromium for the console's browser test (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "error: the console test needs Chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

preview up refresh destroy outputs: $(VENV_STAMP) engine
	$(PY) -m deploy $@ --stack $(STACK)

# Prompt the stack's tuned endpoint: make try PROMPT="English: Good morning. Spanish:"
PROMPT ?= English: Good morning. Spanish:
try: $(VENV_STAMP) engine
	$(PY) -m deploy try "$(PROMPT)" --stack $(STACK)

emulator-stop: $(VENV_STAMP)
	$(PY) -m deploy emulator-stop

# Forget the local stack and the emulator's state (destroy first if you want the jobs cancelled).
# Other stacks' state in .pulumi-state is left alone.
clean-local: $(VENV_STAMP) engine
	$(PY) -m deploy forget --stack local
	$(PY) -m deploy emulator-stop
	rm -rf .run
