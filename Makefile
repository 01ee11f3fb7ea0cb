# Two entry points that do their own set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-under-load lint bench clean browser

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The lecture's network trained on the embedded SQLite default (./gradbook.db), then its book:
# the first steps' history, the computation graph at step 0 and the numerical check of that step.
demo: $(STAMP)
	@id=$$($(BIN)/gradbook train --preset seed --json | $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["id"])') && \
	  echo && $(BIN)/gradbook history $$id --end 9 && \
	  echo && $(BIN)/gradbook graph --job $$id --step 0 && \
	  echo && $(BIN)/gradbook verify $$id --step 0

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The suite while two busy loops keep both cores loaded, as on a shared CI machine: a test that
# waits for time instead of a state fails here first.
test-under-load: $(STAMP) browser
	@pids=""; for i in 1 2; do ( while :; do :; done ) & pids="$$pids $$!"; done; \
	  trap 'kill $$pids' EXIT; $(MAKE) --no-print-directory test

# The dashboard's browser tests drive Debian's chromium through Playwright (Playwright's own browser
# download is not available here). Installed when missing and apt-get can run; otherwise those
# tests skip and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed and apt-get unavailable: browser tests will be skipped"; fi; }

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
