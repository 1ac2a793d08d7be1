# syntax=docker/dockerfile:1
# One image for both roles (web: gunicorn; grpc: grpcrunserver) and the one-shot init job;
# scripts/docker-entrypoint picks the role from the command.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
# Dependencies in their own layer: rebuilt only when the pins change. Wheels only, no compiler.
# What serving never uses is dropped: pip and setuptools themselves, bytecode compiled while
# installing them, the packages' own test suites, C headers and Cython sources.
COPY requirements.txt /tmp/requirements.txt
RUN /venv/bin/pip install --no-compile --only-binary=:all: -r /tmp/requirements.txt \
    && /venv/bin/python -m pip uninstall --yes --quiet pip setuptools \
    && find /venv -name '*.dist-info' -prune -o \( \
         -type d \( -name __pycache__ -o -name tests -o -path '*/pyarrow/include' -o -path '*/numpy/_core/include' \) -prune \
         -o -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) \) -exec rm -rf {} +

FROM python:3.11-slim-bookworm
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=meterproject.settings \
    DJANGO_STATIC_ROOT=/app/staticfiles
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app
COPY --from=build /venv /venv
WORKDIR /app
# The code belongs to root: the app user may read it, not change it.
COPY . .
# Static files are collected at build time; WhiteNoise serves them.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input --verbosity 0
USER 10001:10001
EXPOSE 8000 50051
# ROLE (web, grpc or ingest) tells the probe what to check: HTTP /healthz, grpc.health.v1, or
# the heartbeat file of the MQTT consumer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "scripts/healthcheck.py"]
ENTRYPOINT ["scripts/docker-entrypoint"]
CMD ["web"]
