# syntax=docker/dockerfile:1
# engine: the self-hosted, Symbl-compatible API with offline speech-to-text and analysis. Its models (Whisper tiny.en,
# spaCy en_core_web_sm) ship inside locked PyPI packages, so nothing is downloaded at run time.
# Build from the repository root: docker build -f docker/engine.Dockerfile -t parley-engine .

# Both stages use one base: the venv's interpreter is a symlink to the base image's /usr/local/bin/python3.11.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# uv from PyPI at the version scripts/bootstrap pins, so the image installs exactly what uv.lock says.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11
WORKDIR /app
# Third-party dependencies first, from the lock file and the workspace's pyprojects only (uv needs every member's
# pyproject to recognise the workspace): this large layer is rebuilt only when a dependency changes.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/ingest/pyproject.toml services/ingest/
COPY services/job_watcher/pyproject.toml services/job_watcher/
COPY services/insight_fetcher/pyproject.toml services/insight_fetcher/
COPY services/engine/pyproject.toml services/engine/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package parley-engine --no-install-workspace
# Then the engine and the shared package, installed non-editable so the final stage needs only the venv.
COPY shared/parley_shared shared/parley_shared
COPY services/engine/parley_engine services/engine/parley_engine
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package parley-engine --no-editable

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/parley parley \
    && mkdir -p /var/lib/parley/engine \
    && chown 10001:10001 /var/lib/parley/engine
# Owned by root: the engine can read its code but not rewrite it; it writes only under its data dir.
COPY --from=build /app/.venv /app/.venv
# A named volume mounted on PARLEY_ENGINE_DATA_DIR starts with this directory's owner, so the non-root user can write
# the SQLite database, the uploaded media and the pending webhook deliveries there.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PARLEY_HTTP_HOST=0.0.0.0 \
    PARLEY_HTTP_PORT=8700 \
    PARLEY_ENGINE_DATA_DIR=/var/lib/parley/engine
WORKDIR /home/parley
USER 10001:10001
EXPOSE 8700
# urlopen raises on a refused connection and on any non-2xx answer, so the exit status is the verdict. The start
# period covers loading the speech and language models.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8700/healthz', timeout=4)"]
# Serves on PARLEY_HTTP_HOST:PARLEY_HTTP_PORT (EngineSettings), set above.
CMD ["python", "-m", "parley_engine"]
