FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/billing

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY policies ./policies
COPY migrations ./migrations
RUN pip install . && useradd --system --uid 10001 --home-dir /srv/billing billing && chown -R billing /srv/billing

USER billing
EXPOSE 8000
# Migrate, then serve; uvicorn stops gracefully on SIGTERM.
CMD ["sh", "-c", "billing migrate && exec billing serve --host 0.0.0.0 --port 8000"]
