# syntax=docker/dockerfile:1
# insight-fetcher: reads a conversation's insights after JobCompleted and publishes InsightsReady.
# Build from the repository root: docker build -f docker/insight-fetcher.Dockerfile -t parley-insight-fetcher .

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
# pyproject to recognise the workspace): this layer is rebuilt only when a dependency changes.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/ingest/pyproject.toml services/ingest/
COPY services/job_watcher/pyproject.toml services/job_watcher/
COPY services/insight_fetcher/pyproject.toml services/insight_fetcher/
COPY services/engine/pyproject.toml services/engine/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package parley-insight-fetcher --no-install-workspace
# Then this service and the shared package, installed non-editable so the final stage needs only the venv.
COPY shared/parley_shared shared/parley_shared
COPY services/insight_fetcher/parley_insight_fetcher services/insight_fetcher/parley_insight_fetcher
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package parley-insight-fetcher --no-editable

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/parley parley
# Owned by root: the service can read its code but not rewrite it.
COPY --from=build /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PARLEY_HTTP_HOST=0.0.0.0 \
    PARLEY_HTTP_PORT=8703
WORKDIR /home/parley
USER 10001:10001
EXPOSE 8703
# urlopen raises on a refused connection and on any non-2xx answer, so the exit status is the verdict.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8703/healthz', timeout=4)"]
# create_app() reads InsightFetcherSettings from PARLEY_* variables. The uvicorn grace outlasts the broker's 15 s drain
# of in-flight batches (PARLEY_SHUTDOWN_GRACE_SECONDS), as `parley run` does.
CMD ["uvicorn", "--factory", "parley_insight_fetcher.app:create_app", "--host", "0.0.0.0", "--port", "8703", \
     "--timeout-graceful-shutdown", "20", "--no-access-log", "--log-level", "warning"]
