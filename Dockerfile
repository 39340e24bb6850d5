# dataset-migrator: one image for the one-shot migrate step, the Celery worker, beat and the CLI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The package goes to site-packages; alembic.ini and migrations/ stay in /app.
    ALEMBIC_CONFIG=/app/alembic.ini \
    VECTOR_DB_URL=/data/vector

WORKDIR /app

RUN groupadd --system migrator \
    && useradd --system --gid migrator --home-dir /app --shell /usr/sbin/nologin migrator \
    && mkdir -p /data \
    && chown migrator:migrator /data

# Dependencies in their own layer: a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY alembic.ini ./
COPY migrations ./migrations
COPY migrator ./migrator
COPY worker ./worker
COPY tasks ./tasks
# The worked example (not installed, inert): APP_ALEMBIC_CONFIG, VECTOR_MIGRATIONS,
# DATASET_SOURCE and PYTHONPATH pointed at /app/examples/notes_app run it (see the README).
COPY examples ./examples
RUN pip install --no-deps . \
    && migrator --help >/dev/null

USER migrator
VOLUME ["/data"]

CMD ["migrator", "--help"]
