# Two commands do all set-up on a fresh Debian 12 machine (as root, or with sudo):
#   make demo   - system packages + .venv + the project, then a demo run over sample_media
#   make test   - the same bootstrap, then the whole test suite
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap demo test lint bench samples clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(BIN)/media-worker demo

test: bootstrap
	$(BIN)/python -m pytest -q

lint: bootstrap
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

bench: bootstrap
	$(BIN)/python bench/bench_thumbnails.py
	$(BIN)/python bench/bench_coldstart.py

samples: bootstrap
	$(BIN)/python sample_media/make_samples.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
