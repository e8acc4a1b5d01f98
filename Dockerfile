# syntax=docker/dockerfile:1
# strategy-rollouts operator image.
#   docker build -t strategy-rollouts:dev .
# Stage 1 builds the project wheel and every dependency wheel, the dependencies at the versions of uv.lock
# (requirements/image.txt, exported with hashes by `make lock`); stage 2 installs them offline into a
# slim runtime that runs as a non-root user and never writes outside /tmp (readOnlyRootFilesystem).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The locked dependencies first, so their layer is cached across source-only changes; every file checked
# against its hash. Then the project alone: its dependencies are the locked wheels already in /wheels.
COPY requirements/image.txt requirements/image.txt
RUN pip wheel --wheel-dir /wheels --require-hashes -r requirements/image.txt
COPY pyproject.toml README.md ./
COPY strategy_rollouts/ strategy_rollouts/
RUN pip wheel --wheel-dir /wheels --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="strategy-rollouts" \
      org.opencontainers.image.description="Kubernetes operator for safe trading-strategy rollouts" \
      org.opencontainers.image.licenses="Apache-2.0"
# LOGNAME: kopf names itself user@host via getpass.getuser(), and uid 65532 has no /etc/passwd entry
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    LOGNAME=strategy-rollouts
COPY --from=builder /wheels /wheels
# Only the locked versions are in /wheels, so this resolves to exactly the lock
RUN pip install --no-index --find-links /wheels "strategy-rollouts[dashboard]" \
    && rm -rf /wheels \
    && python -m compileall -q "$(python -c 'import os, strategy_rollouts as m; print(os.path.dirname(m.__file__))')" \
    && strategy-rollouts --version
# 65532 = "nonroot" in distroless images; numeric so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
WORKDIR /tmp
# metrics (prometheus_client) and kopf liveness (/healthz)
EXPOSE 9102 8080
ENTRYPOINT ["strategy-rollouts"]
CMD ["run"]
