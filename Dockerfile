# syntax=docker/dockerfile:1
# The webhook image: docker build -t migration-policy-webhook:0.1.0 .
# Reproducible: the base image is pinned to a Python patch release and Debian suite, and
# every runtime dependency is installed from requirements.lock, exact versions with hashes
# (`uv pip compile --generate-hashes`, see docs/install.md); pip refuses anything else.
# The builder installs the lock into a virtualenv, then the project's wheel without
# dependencies; the final image is the same base with that virtualenv only, run as a
# numeric non-root user (65532), with no pip, no build tools and no caches.

FROM python:3.11.15-slim-trixie AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps /wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM python:3.11.15-slim-trixie
LABEL org.opencontainers.image.title="migration-policy-webhook" \
      org.opencontainers.image.description="Admission webhook for KubeVirt live-migration policies" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
USER 65532:65532
# The webhooks over HTTPS; the Deployment also opens the plain-HTTP health (8081) and
# metrics (8080) ports with --health-probe-bind-address and --metrics-bind-address.
EXPOSE 8443
ENTRYPOINT ["migration-policy-webhook"]
CMD ["serve", "--state", "kube"]
