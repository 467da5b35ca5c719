# The service's image: exact dependency versions from requirements/service.txt (hash-checked), non-root.
# BASE_IMAGE is any Debian-like image with Python 3.11 or newer and its venv module; the tests build one locally
# with debootstrap (tests/image/), where no image registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/billing/bin:$PATH
WORKDIR /srv/billing

COPY requirements/service.txt ./requirements/service.txt
RUN python3 -m venv /opt/billing && pip install --require-hashes -r requirements/service.txt
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY policies ./policies
COPY migrations ./migrations
RUN pip install --no-deps . && useradd --system --uid 10001 --home-dir /srv/billing billing \
    && chown -R billing /srv/billing

USER billing
EXPOSE 8000
# Migrate, then serve; SIGTERM stops the server gracefully.
CMD ["sh", "-c", "billing migrate && exec billing serve --host 0.0.0.0 --port 8000"]
