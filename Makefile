# Two commands do all set-up on a fresh Debian 12 machine (as root, or with sudo):
#   make demo        - system packages + .venv + the project, then a demo run over sample_media
#   make test        - the same bootstrap, then the whole test suite
#   make image-test  - also podman/buildah/runc/mmdebstrap; builds the Lambda image and runs it as Lambda does
#   make stack-up    - a local S3 API + a FUSE mount of the bucket + the upload trigger (media-worker stack)
#   make e2e         - uploads through S3 -> the worker on the mount -> outputs read back through S3
#   make bench       - every benchmark in bench/ (make bench-NAME: one of them; docs/benchmarks.md)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap demo test lint bench samples events image image-test stack-up stack-down e2e e2e-image clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(BIN)/media-worker demo

test: bootstrap
	$(BIN)/python -m pytest -q

# the container image, built with podman/buildah (no Docker engine needed; see scripts/image.sh)
image:
	@SCOPES="runtime build dev imagetest" scripts/bootstrap.sh
	scripts/image.sh build

image-test: image
	$(BIN)/python -m pytest -q -m image tests/test_image.py

# the upload-triggered flow on this machine (state in .stack/; `media-worker stack status` shows endpoint
# and keys); IMAGE=media-worker:dev runs the function as the built image under the Lambda emulator
stack-up: bootstrap
	$(BIN)/media-worker stack up $(if $(IMAGE),--image $(IMAGE))

stack-down:
	$(BIN)/media-worker stack down

e2e: bootstrap
	$(BIN)/python -m pytest -q tests/test_local_stack.py

e2e-image: image
	$(BIN)/python -m pytest -q -m image tests/test_image.py -k upload_trigger

lint: bootstrap
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# every benchmark under bench/, with the arguments docs/benchmarks.md's figures were measured with;
# `make bench-NAME` runs one. A benchmark that misses a target (or cannot run: old-vs-mount needs
# /dev/fuse and root) does not stop the others; `make bench` then lists it and exits 1.
BENCHES := thumbnails startup coldstart transcode ocr phone memory old-vs-mount
BENCH_thumbnails := bench/bench_thumbnails.py --runs 7 --batch 12
BENCH_startup := bench/bench_startup.py --runs 9 --files 2000
BENCH_coldstart := bench/bench_coldstart.py --runs 9
BENCH_transcode := bench/bench_transcode.py --runs 3
BENCH_ocr := bench/bench_ocr.py --repeat 3
BENCH_phone := bench/bench_phone.py --runs 3 --seconds 10
BENCH_memory := bench/bench_memory.py
BENCH_old-vs-mount := bench/bench_old_vs_mount.py
BENCH_SETUP := SCOPES="runtime build dev bench" scripts/bootstrap.sh

bench:
	@$(BENCH_SETUP)
	@failed=""; $(foreach b,$(BENCHES),echo "== make bench-$(b)"; \
	  $(BIN)/python $(BENCH_$(b)) || failed="$$failed $(b)";) \
	  if [ -n "$$failed" ]; then echo "bench: missed a target or did not run:$$failed"; exit 1; fi

bench-%:
	$(if $(BENCH_$*),,$(error no benchmark '$*'; one of: $(BENCHES)))
	@$(BENCH_SETUP)
	$(BIN)/python $(BENCH_$*)

samples: bootstrap
	$(BIN)/python sample_media/make_samples.py
	$(BIN)/python events/make_events.py

events: bootstrap
	$(BIN)/python events/make_events.py

clean:
	-$(BIN)/media-worker stack down --purge 2>/dev/null
	rm -rf $(VENV) .venv-sam .aws-sam .pytest_cache .mypy_cache .ruff_cache
