"""Bearer-key authentication for every route but health checks and API docs.

The hook runs before everything else (the rate limiter keys on what it sets):
it puts the key's record in `g.api_key` and its public id in `g.owner`, so
jobs belong to the key id, never to the key. Every failure - no header, not
Bearer, unknown, revoked, expired - gets the same 401 body, so a caller cannot
probe which keys exist. Nothing here logs the presented key.

The keys themselves (format, hashing, storage in Redis) are in `app.auth.keys`:
only the API, this hook and `inferq keys` use them, so they live in the API's
package, not in the queue layer.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, request

from app.auth.keys import KeyStore, allows_model
from app.errors import APIError
from tasks.redis_client import redis_client

# /metrics and /metrics/backlog check their own access (loopback or METRICS_TOKEN, see app.metrics).
PUBLIC_PATHS = frozenset({"/health", "/health/ready", "/openapi.json", "/metrics"})
PUBLIC_PREFIXES = ("/docs", "/metrics/")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def invalid_api_key() -> APIError:
    return APIError(
        "Incorrect API key provided. Send a valid key as `Authorization: Bearer <key>`.",
        status=401,
        code="invalid_api_key",
        headers={"WWW-Authenticate": 'Bearer realm="inferq"'},
    )


def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _authenticate() -> None:
    if is_public(request.path):
        return
    record = current_app.extensions["inferq.keys"].authenticate(_bearer_token())
    if record is None:
        raise invalid_api_key()
    g.api_key = record
    g.owner = record["id"]


def current_key() -> dict[str, Any] | None:
    return g.get("api_key")


def model_allowed(model: str) -> bool:
    """Whether the caller's key may use `model` (unknown models are answered elsewhere)."""
    record = current_key()
    return record is None or allows_model(record, model)


def init_app(app: Flask) -> None:
    """Register before the rate limiter: its key function reads `g.api_key`."""
    app.extensions["inferq.keys"] = KeyStore(redis_client(app.extensions["inferq.settings"].redis_url))
    app.before_request(_authenticate)
