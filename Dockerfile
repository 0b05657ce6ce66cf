# Posthouse in a container: `docker build -t posthouse .`, then see deploy/compose.yaml and the README
# ("Running several nodes"). Two stages: uv installs the locked dependencies and the project into a virtual
# environment; the final image is that environment on the same slim Python, run by an unprivileged user.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/posthouse \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The uv release the Makefile uses.
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
# Dependencies first (a layer that changes only with uv.lock), then the project itself, not editable.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra server --no-install-project
COPY src ./src
RUN uv sync --frozen --no-dev --extra server --no-editable

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 posthouse \
    && useradd --system --uid 10001 --gid posthouse --home-dir /var/lib/posthouse --create-home \
       --shell /usr/sbin/nologin posthouse
COPY --from=build /opt/posthouse /opt/posthouse
# Listeners on every interface of the container (the defaults are loopback); the data folder is a volume.
# POSTHOUSE_HEALTHCHECK_URL is the HEALTHCHECK's target: a node without the api role serves /healthz on
# POSTHOUSE_METRICS_HTTP instead and points it there.
ENV PATH=/opt/posthouse/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    POSTHOUSE_DATA_DIR=/var/lib/posthouse \
    POSTHOUSE_HTTP=0.0.0.0:8080 \
    POSTHOUSE_SMTP=0.0.0.0:2525 \
    POSTHOUSE_TRACKING_HTTP=0.0.0.0:8081 \
    POSTHOUSE_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
USER 10001:10001
WORKDIR /var/lib/posthouse
VOLUME ["/var/lib/posthouse"]
EXPOSE 8080 2525 8081
# /healthz answers 200 once every role of the process runs, 503 while starting; the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['POSTHOUSE_HEALTHCHECK_URL'], timeout=4)"]
# SIGTERM stops the process in order (HTTP, SMTP with a 10 s grace, the worker's deliveries in flight).
STOPSIGNAL SIGTERM
ENTRYPOINT ["posthouse"]
CMD ["serve"]
