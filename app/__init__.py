"""The inferq HTTP API: an OpenAI-compatible surface in front of the Celery queue."""

from __future__ import annotations

from flask import Flask

from tasks.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API; without `settings`, from the INFERQ_* environment."""
    from app import auth, metrics, openapi, ratelimit, request_ids
    from app.api import register_blueprints
    from app.api.routing import JSONProvider
    from app.errors import register_error_handlers
    from app.tokenizers import TokenizerCache
    from tasks.celery_app import create_celery
    from tasks.dispatch import CeleryBroker
    from tasks.jobs import JobService, Policy
    from tasks.redis_client import redis_client

    settings = settings or Settings.load()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.json = JSONProvider(app)  # keys in the order written; a body too deep to decode is a 400
    app.extensions["inferq.settings"] = settings
    celery = app.extensions["celery"] = create_celery(settings)
    app.extensions["inferq.jobs"] = JobService(
        redis_client(settings.redis_url), Policy.from_settings(settings), broker=CeleryBroker(celery)
    )
    app.extensions["inferq.tokenizers"] = TokenizerCache()
    register_error_handlers(app)
    auth.init_app(app)  # first: the rate limiter counts against the key it finds
    ratelimit.init_app(app)
    metrics.init_app(app)
    request_ids.init_app(app)
    register_blueprints(openapi.init_app(app))  # /openapi.json and /docs, then every resource
    return app
