"""The inferq HTTP API: an OpenAI-compatible surface in front of the Celery queue."""

from __future__ import annotations

from typing import Any

from flask import Flask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the API. `config` overrides the defaults and INFERQ_* variables."""
    from app import auth, metrics, openapi, ratelimit
    from app.api import register_blueprints
    from app.errors import register_error_handlers
    from app.tokenizers import TokenizerCache
    from tasks.celery_app import create_celery
    from tasks.config import load_config
    from tasks.jobstore import JobStore
    from tasks.redis_client import redis_client

    settings = load_config(config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_CONTENT_LENGTH"]
    app.json.sort_keys = False
    app.extensions["inferq.config"] = settings
    app.extensions["inferq.jobstore"] = JobStore(redis_client(settings["REDIS_URL"]), settings["JOB_RETENTION_SECONDS"])
    app.extensions["inferq.tokenizers"] = TokenizerCache()
    app.extensions["celery"] = create_celery(settings)
    register_error_handlers(app)
    auth.init_app(app)  # first: the rate limiter counts against the key it finds
    ratelimit.init_app(app)
    metrics.init_app(app)
    register_blueprints(openapi.init_app(app))  # /openapi.json and /docs, then every resource
    return app
