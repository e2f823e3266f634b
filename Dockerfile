# syntax=docker/dockerfile:1
# The webhook image: docker build -t migration-policy-webhook:0.1.0 .
# The builder makes the project's wheel and installs it with its dependencies into a
# virtualenv; the final image is python:3.11-slim with that virtualenv only, run as a
# numeric non-root user (65532), with no pip, no build tools and no caches.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir /wheels/*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM python:3.11-slim
LABEL org.opencontainers.image.title="migration-policy-webhook" \
      org.opencontainers.image.description="Admission webhook for KubeVirt live-migration policies" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["migration-policy-webhook"]
CMD ["serve", "--state", "kube"]
