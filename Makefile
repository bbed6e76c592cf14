# Two commands do all set-up on a fresh Debian 12 machine (as root, or with sudo):
#   make demo        - system packages + .venv + the project, then a demo run over sample_media
#   make test        - the same bootstrap, then the whole test suite
#   make image-test  - also podman/buildah/runc/mmdebstrap; builds the Lambda image and runs it as Lambda does
#   make stack-up    - a local S3 API + a FUSE mount of the bucket + the upload trigger (media-worker stack)
#   make e2e         - uploads through S3 -> the worker on the mount -> outputs read back through S3
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

bench: bootstrap
	$(BIN)/python bench/bench_thumbnails.py
	$(BIN)/python bench/bench_coldstart.py
	$(BIN)/python bench/bench_startup.py

samples: bootstrap
	$(BIN)/python sample_media/make_samples.py
	$(BIN)/python events/make_events.py

events: bootstrap
	$(BIN)/python events/make_events.py

clean:
	-$(BIN)/media-worker stack down --purge 2>/dev/null
	rm -rf $(VENV) .venv-sam .aws-sam .pytest_cache .mypy_cache .ruff_cache
