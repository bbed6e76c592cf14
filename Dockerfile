# media-worker as a container-image AWS Lambda function (x86_64; arm64: see docs/image.md).
#
#   make image                      # podman/buildah here; `docker build -t media-worker .` elsewhere
#   make image-test                 # build, then run it as Lambda does (read-only, uid 1000, emulator)
#
# Two stages on Debian 12 (the python3 and tesseract of scripts/system-packages.txt - the same list and
# versions the development machines install): `build` makes /opt/venv from Debian's /usr/bin/python3 with
# the Python packages of requirements-dev.lock; the final stage gets the runtime Debian packages and
# that venv, without pip, setuptools, wheel, compilers or build trees.  ffmpeg is the static ffmpeg of
# the imageio-ffmpeg wheel (1 MiB reads with -pkt_size); PyAV (libavformat in-process) is the probe.
#
# Networks that re-sign TLS (as corporate proxies do): mount the host's CA bundle for the build only and
# name it, e.g. `podman build -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
# --build-arg PIP_CERT=/run/host-ca.crt .` (scripts/image.sh does); nothing of it ends up in the image.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY scripts/system-packages.txt scripts/system-packages.sh /tmp/pkgs/
# --check: a pin Debian has replaced stops here with one message naming it and scripts/update-pins.sh
RUN apt-get update \
 && /tmp/pkgs/system-packages.sh --check runtime build \
 && /tmp/pkgs/system-packages.sh runtime build \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/*
ARG PIP_CERT=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
RUN /usr/bin/python3 -m venv /opt/venv
WORKDIR /src
# dependencies first (the project's own, pinned by the lock file), so code changes do not re-install them
COPY pyproject.toml requirements-dev.lock ./
RUN /usr/bin/python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/runtime-requirements.txt \
 && /opt/venv/bin/pip install -q ${PIP_CERT:+--cert "$PIP_CERT"} -c requirements-dev.lock \
      -r /tmp/runtime-requirements.txt
COPY README.md ./
COPY config/ config/
COPY pipelines/ pipelines/
COPY handlers/ handlers/
# the project as a regular (non-editable) install: its entry points register the pipelines; then the
# installers leave the venv, extension modules shipped with debug info lose it (PyAV's: 32 -> 7 MB; code
# untouched: strip --strip-debug), and every module is byte-compiled once (the root is read-only at run time)
RUN /opt/venv/bin/pip install -q ${PIP_CERT:+--cert "$PIP_CERT"} --no-deps -c requirements-dev.lock . \
 && /opt/venv/bin/pip uninstall -q -y pip setuptools wheel \
 && rm -f /opt/venv/bin/activate* \
 && find /opt/venv/lib -name '*.so' -type f -exec sh -c \
      'for so; do if readelf -S "$so" | grep "\.debug_info" >/dev/null; then strip --strip-debug "$so"; fi; done' \
      sh {} + \
 && /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib \
 && /opt/venv/bin/python -c "import handlers.lambda_function, pipelines.core.registry as r; print(sorted(r.load_registry().pipelines))"

FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY scripts/system-packages.txt scripts/system-packages.sh /tmp/pkgs/
RUN apt-get update \
 && /tmp/pkgs/system-packages.sh --check runtime \
 && /tmp/pkgs/system-packages.sh runtime \
    | xargs apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /tmp/pkgs \
 && tesseract --list-langs
COPY --from=build /opt/venv /opt/venv
# ask ffmpeg and tesseract their versions, options, encoders and language packs once, here: the answers
# are kept in /opt/venv/var/cache/media-worker/tool-queries.json (pipelines/tools/query_cache.py), so a
# cold start runs no program (~0.3 s less); the function still checks every program at init
RUN MEDIA_WORKER_WORKSPACE=/tmp /opt/venv/bin/media-worker pipelines \
 && test -s /opt/venv/var/cache/media-worker/tool-queries.json
COPY sample_media/ /var/task/sample_media/
ENV PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin \
    LAMBDA_TASK_ROOT=/var/task \
    HOME=/tmp \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MEDIA_WORKER_WORKSPACE=/mnt/workspace
WORKDIR /var/task
# Lambda runs the function as its own non-root user; run as one locally too (any uid works)
USER 1000:1000
ENTRYPOINT ["/opt/venv/bin/python", "-m", "awslambdaric"]
CMD ["handlers.lambda_function.handler"]
