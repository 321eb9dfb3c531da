# The inferq API: gunicorn + Flask, no torch, no vLLM (the API never loads them).
# Build from the repository root:  docker build -f docker/api.Dockerfile -t inferq-api .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    INFERQ_BIND=0.0.0.0:8000 \
    INFERQ_MODEL_CACHE=/models \
    HF_HOME=/models/hf

WORKDIR /srv/inferq
COPY setup.cfg pyproject.toml README.md ./
COPY app ./app
COPY tasks ./tasks
COPY workers ./workers
COPY config ./config
COPY gunicorn.conf.py Procfile ./
# var/ (INFERQ_VAR_DIR) and files/ (INFERQ_FILES_DIR) belong to the service user: compose mounts volumes
# there, which take this ownership.
RUN pip install . && useradd --system --uid 10001 inferq && mkdir var files && chown inferq var files
USER inferq

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready')"
CMD ["gunicorn", "--config", "gunicorn.conf.py", "app.wsgi:app"]
