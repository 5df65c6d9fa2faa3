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

USER files
# Inside a container the server must listen on all of the container's interfaces: the
# default, 127.0.0.1, is the container's own loopback, which a published port cannot reach.
# Which host addresses reach the port is decided when it is published (compose.yaml: loopback).
ENV OPENAI_FILES_HOST=0.0.0.0 \
    OPENAI_FILES_PORT=8000 \
    OPENAI_FILES_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    # Two malloc arenas instead of eight per core: under 32 clients on PostgreSQL + S3 the
    # server's RSS levelled off at ~150 MiB instead of ~230 MiB (docs/reliability.md).
    MALLOC_ARENA_MAX=2
EXPOSE 8000

# Liveness, not readiness: the container is unhealthy when the server no longer answers
# /healthz, not when its PostgreSQL or S3 is down (/readyz, which the load balancer asks):
# restarting a replica would not bring those back (docs/deploy.md). Python's own urllib,
# since the slim image has no curl; the port is the server's (urlopen raises on no answer
# or a status that is not 2xx, and the exit status is then 1).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('OPENAI_FILES_PORT', '8000') + '/healthz', timeout=3)"]

# `docker run IMAGE` serves; `docker run IMAGE migrate` or `... keys create` run the others.
ENTRYPOINT ["openai-files"]
CMD ["serve"]
