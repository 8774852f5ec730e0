# syntax=docker/dockerfile:1
# One image for every process of both services; docker-compose.yml picks the
# command. It holds no secrets: they arrive at run time as files or variables.
# The image has no entry point: the command runs as given, and the services
# read the secret files that `*_FILE` variables name themselves.

FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY shared ./shared

# Build the project's wheel, then install it and its dependencies from wheels
# only: psycopg[binary] brings its own libpq, so the image needs no compiler,
# and a dependency without a wheel fails the build instead of compiling.
RUN python -m venv /opt/venv \
    && pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --only-binary=:all: /wheels/*.whl


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PUPIL_RECORDS_ENV=production \
    PUPIL_RECORDS_DATA_DIR=/var/lib/pupil-records

# A fixed uid and gid, so that volumes and secret files can be prepared for it.
# Compose bind-mounts each secret file into /run/secrets. runc creates a
# missing parent folder of a mount point with mode 0755, but the records
# service refuses to start in production mode when other users can list the
# master key's folder. So the image brings the folder, open to pupil's group.
RUN groupadd --system --gid 10001 pupil \
    && useradd --system --uid 10001 --gid pupil --no-create-home \
        --home-dir /var/lib/pupil-records --shell /usr/sbin/nologin pupil \
    && install -d -o pupil -g pupil -m 0750 /var/lib/pupil-records \
    && install -d -o root -g pupil -m 0750 /run/secrets

COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/pupil-records-healthcheck

USER pupil:pupil
# A new named volume mounted on the data dir starts as a copy of this folder,
# so it is owned by pupil; compose keeps the token file and lock files there.
WORKDIR /var/lib/pupil-records
EXPOSE 8000

CMD ["pupil-records", "--help"]
