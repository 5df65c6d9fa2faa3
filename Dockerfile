# The openai-files server. On its own it keeps files in /data (SQLite and a folder: mount a
# volume there); with OPENAI_FILES_DATABASE and OPENAI_FILES_STORAGE set it is one stateless
# replica of a scale-out deployment (see compose.yaml and docs/deploy.md).
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir '.[server,postgres,s3]' \
    && useradd --system --uid 10001 --no-create-home files \
    && mkdir /data && chown files /data
COPY deploy/healthcheck.py ./healthcheck.py

USER files
# Inside a container the server must listen on all of the container's interfaces: the
# default, 127.0.0.1, is the container's own loopback, which a published port cannot reach.
# Which host addresses reach the port is decided when it is published (compose.yaml: loopback).
ENV OPENAI_FILES_HOST=0.0.0.0 \
    OPENAI_FILES_PORT=8000 \
    OPENAI_FILES_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    # `batch-worker` touches it while it runs, for the HEALTHCHECK below.
    OPENAI_FILES_HEARTBEAT_FILE=/tmp/openai-files-heartbeat \
    # Two malloc arenas instead of eight per core: under 32 clients on PostgreSQL + S3 the
    # server's RSS levelled off at ~150 MiB instead of ~230 MiB (docs/reliability.md).
    MALLOC_ARENA_MAX=2
EXPOSE 8000

# Liveness, not readiness: the container is unhealthy when its process no longer runs, not
# when its PostgreSQL or S3 is down (/readyz, which the load balancer asks): restarting a
# replica would not bring those back (docs/deploy.md). healthcheck.py asks `serve`'s /healthz
# (with no proxy: Docker may set HTTP_PROXY) or reads `batch-worker`'s heartbeat file, which
# only the worker writes; it fails by itself within --timeout (exit status 1).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]

# `docker run IMAGE` serves; `docker run IMAGE migrate` or `... keys create` run the others.
ENTRYPOINT ["openai-files"]
CMD ["serve"]
