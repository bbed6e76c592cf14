# media-worker as a container-image AWS Lambda function (x86_64).
#
#   docker build -t media-worker .
#   docker run --read-only --tmpfs /tmp -v "$PWD/ws:/mnt/workspace" -p 9000:8080 \
#     -v ~/.aws-lambda-rie:/aws-lambda --entrypoint /aws-lambda/aws-lambda-rie \
#     media-worker /usr/local/bin/python -m awslambdaric handlers.lambda_function.handler
#   docker run --read-only --tmpfs /tmp --entrypoint media-worker media-worker demo -w /tmp/demo
#
# Debian 12 (the same tesseract 5.3 the tests run against) + awslambdaric as the runtime interface
# client.  ffmpeg comes from the imageio-ffmpeg wheel (static ffmpeg with 1 MiB reads), not from apt.
# The image runs on a read-only root file system: only /tmp is written (scratch files, tesseract's
# temp files); outputs go to the S3 Files mount at /mnt/workspace.
FROM python:3.11.11-slim-bookworm

ARG TESSERACT_VERSION=5.3.0-2
ARG TESSDATA_VERSION=1:4.1.0-2
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      "tesseract-ocr=${TESSERACT_VERSION}" \
      "tesseract-ocr-eng=${TESSDATA_VERSION}" \
      "tesseract-ocr-osd=${TESSDATA_VERSION}" \
 && rm -rf /var/lib/apt/lists/*

ENV LAMBDA_TASK_ROOT=/var/task \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TMPDIR=/tmp \
    HOME=/tmp \
    MEDIA_WORKER_WORKSPACE=/mnt/workspace
WORKDIR /var/task

# dependencies first (pinned by the lock file), so code changes do not re-install them
COPY pyproject.toml requirements-dev.lock ./
COPY config/__init__.py config/__init__.py
COPY pipelines/__init__.py pipelines/__init__.py
COPY handlers/__init__.py handlers/__init__.py
RUN pip install -c requirements-dev.lock .

# the project itself, installed in place so its entry points (pipelines) are registered and the
# `media-worker demo` command finds sample_media next to the code
COPY config/ config/
COPY pipelines/ pipelines/
COPY handlers/ handlers/
COPY sample_media/ sample_media/
RUN pip uninstall -y media-worker \
 && pip install --no-deps -c requirements-dev.lock -e . \
 && python -m compileall -q config pipelines handlers \
 && chmod -R a+rX /var/task \
 && python -c "import handlers.lambda_function, imageio_ffmpeg, PIL; print(imageio_ffmpeg.get_ffmpeg_exe())" \
 && tesseract --list-langs

# Lambda runs the function as its own non-root user; run as one locally too
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/python", "-m", "awslambdaric"]
CMD ["handlers.lambda_function.handler"]
