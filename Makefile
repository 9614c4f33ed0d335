# attnviz: `make book` builds the site, `make test` runs every check. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.attnviz-installed

# One OpenMP thread per torch process for the book and the tests: the models are tiny, and on a
# 2-core machine where anything else runs, torch's default threads spin against each other (a
# training step of chapter 8 went from 0.045 s to 1.7 s). Benchmarks keep torch's default.
book test test-fast: export OMP_NUM_THREADS = 1

.PHONY: book test test-fast lint format sync clean help chromium bench drift recipes mutation translate translate-status

# The browser tests drive Debian's chromium; install it with apt when missing (root, or sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

help:
	@echo "make book   build the site into _build/html (sets up .venv first)"
	@echo "make test   lint, package tests, every notebook, the book build, the browser checks"
	@echo "make test-fast  lint and the package tests only (no book build, no browser, no older transformers; under 2 minutes)"
	@echo "make sync   rewrite each chapter's setup cell from _config.yml, strip outputs, copy data into the package"
	@echo "make translate  bring the Chinese edition (zh/) in step with the English; marks what needs translating"
	@echo "make translate-status  list what is left to translate in zh/, page by page"
	@echo "make bench  run the CPU benchmarks; results go to benchmarks/results (~40 min)"
	@echo "make recipes  re-measure chapter 10's recipe matrix (book/data/recipes.json; about an hour)"
	@echo "make drift  check newer transformers releases against the book (report: _build/drift/report.md)"
	@echo "make mutation  mutation-test the core modules (MODULE=patch for one); writes benchmarks/results/mutation.json"
	@echo "make clean  remove _build (keeps .venv)"

# Rebuilt only when a requirements file or pyproject.toml changes.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	$(BIN)/python scripts/install_kernel.py
	touch $@

# Both editions: English into _build/html, Chinese (zh/) into _build/html/zh, one jupyter-cache.
book: $(STAMP)
	$(BIN)/python scripts/book_cache.py
	$(BIN)/python scripts/build_book.py

chromium:
	@[ -n "$$ATTNVIZ_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
	@# the Chinese edition's screenshots (_build/screenshots) need a font with Chinese glyphs
	@fc-list :lang=zh 2>/dev/null | grep -q . || { \
	  echo "installing a Chinese font (fonts-wqy-microhei) for the screenshots of the Chinese edition"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-wqy-microhei >/dev/null; }

test: $(STAMP) chromium lint
	$(BIN)/python scripts/sync_notebooks.py --check
	$(BIN)/python scripts/sync_data.py --check
	$(BIN)/python scripts/translations.py --check
	$(BIN)/python -m pytest

# The package tests alone: what to run after each change to src/attnviz. `make test` before a commit.
test-fast: $(STAMP) lint
	$(BIN)/python scripts/sync_notebooks.py --check
	$(BIN)/python scripts/sync_data.py --check
	$(BIN)/python scripts/translations.py --check
	$(BIN)/python -m pytest -m "not book and not browser and not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/ruff format --check notebooks  # 88 columns, notebooks/ruff.toml

format: $(STAMP)
	$(BIN)/ruff check --fix src tests scripts benchmarks
	$(BIN)/ruff format src tests scripts benchmarks notebooks

sync: $(STAMP)
	$(BIN)/python scripts/sync_notebooks.py
	$(BIN)/python scripts/sync_data.py
	$(BIN)/python scripts/translations.py

# The Chinese edition: code cells copied from the English chapters, stale prose marked 待翻译.
translate: $(STAMP)
	$(BIN)/python scripts/translations.py

translate-status: $(STAMP)
	$(BIN)/python scripts/translations.py --status

# Each script prints its figures and writes benchmarks/results/*.json; a missed target is reported,
# and the next script still runs. benchmarks/gpu.py needs a CUDA machine: run it there.
bench: $(STAMP)
	-$(BIN)/python benchmarks/scaling.py
	-$(BIN)/python benchmarks/patch_cost.py
	-$(BIN)/python benchmarks/capture_cost.py
	-$(BIN)/python benchmarks/long_context.py
	-$(BIN)/python benchmarks/explorer_latency.py
	-$(BIN)/python benchmarks/live_model.py
	-$(BIN)/python benchmarks/book_build.py
	-$(BIN)/python benchmarks/live_explorer.py  # reads the site book_build.py leaves in _build/html
	$(BIN)/python scripts/sync_data.py

# The drift watch (also weekly on GitHub): every transformers release newer than the pin, or the
# newest when none is, in a throw-away environment next to .venv's torch. .venv is never changed.
# DRIFT_VERSIONS="5.25.0 5.26.0" checks those instead. Exit 1 and a report when a claim changed.
drift: $(STAMP)
	$(BIN)/python scripts/drift.py $(if $(strip $(DRIFT_VERSIONS)),--versions $(DRIFT_VERSIONS))

# Chapter 10's recipe matrix: every recipe on every transformers release of scripts/recipe_matrix.py,
# each release in a throw-away environment under .recipe-envs (git-ignored; reused by a second run)
# that shares .venv's torch. RECIPE_VERSIONS="5.24.0" re-measures those releases only.
recipes: $(STAMP)
	PYTHONPATH=$(CURDIR)/src $(BIN)/python scripts/recipe_matrix.py --keep-envs .recipe-envs \
	  $(if $(strip $(RECIPE_VERSIONS)),--versions $(RECIPE_VERSIONS))

# Mutation testing (mutmut): break the core modules one small change at a time and check that the
# fast-lane tests notice. Not part of `make test`: about half an hour for every module on 2 cores.
# MODULE=patch (or probes, capture, reference, families, cli, explorers) runs one. Working copies go
# to _build/mutation; the counts and every survivor, with why it is equivalent, to
# benchmarks/results/mutation.json. Exit 1 when a survivor has no recorded reason.
mutation: export OMP_NUM_THREADS = 1
mutation: $(STAMP)
	$(BIN)/python scripts/mutation.py $(foreach m,$(MODULE),--module $(m))

clean:
	rm -rf _build
