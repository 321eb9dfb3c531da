"""Per-key rate limits: requests per minute (Flask-Limiter) and tokens per minute.

Requests: Flask-Limiter with its counters in the service's Redis, so a key's
limit holds across gunicorn workers and API hosts. The strategy is the
sliding window counter: this and the previous minute's counts, weighted by
how much of the previous minute is still in the window. No burst of 2x the
limit at a window edge, as a fixed window allows, and O(1) in Redis. The
exact moving window keeps a timestamp per request and scans them all for the
headers of every response: measured at 500 requests/s, that scan stalled
Redis for everyone (submit p99 over 200 ms). Each key has its own limit
(`rpm` on its record), one bucket across all endpoints; health checks and
docs are exempt.

Tokens: a key may also carry `tpm`. Tokens are only known once a job ends, so
the check is made before a POST is accepted, against the tokens billed in the
last minute (tasks.billing keeps a per-minute counter, read as a sliding-window
estimate). A request is refused once the key is at or over its budget; a
request that was accepted may still take the key past it. That is the honest
limit of counting tokens after the fact.

Both answer 429 in the OpenAI error shape with `Retry-After`; request limits
also send `X-RateLimit-Limit`, `-Remaining` and `-Reset` on every response.
"""

from __future__ import annotations

import math
import time

from flask import Flask, jsonify, request
from flask_limiter import HeaderNames, Limiter, RateLimitExceeded

from app.auth import current_key, is_public
from app.errors import APIError
from app.ratelimit_storage import SCHEME_PREFIX
from tasks.billing import tokens_last_minute
from tasks.redis_client import limiter_storage

STRATEGY = "sliding-window-counter"
RESET_AFTER_HEADER = "X-RateLimit-Reset-After"


def _key_id() -> str:
    record = current_key()
    return record["id"] if record else ""


def _requests_per_minute() -> str:
    record = current_key()
    return f"{record['rpm']}/minute" if record else ""


def _exempt() -> bool:
    return is_public(request.path) or current_key() is None


def rate_limited(message: str, *, headers: dict[str, str] | None = None) -> APIError:
    return APIError(message, status=429, type="requests", code="rate_limit_exceeded", headers=headers)


def _check_tokens() -> None:
    record = current_key()
    if record is None or not record["tpm"] or request.method != "POST":
        return
    from app.jobs import service

    used = tokens_last_minute(service().redis, record["id"])
    if used >= record["tpm"]:
        retry_after = str(60 - int(time.time()) % 60)
        raise rate_limited(
            f"Rate limit reached: {used} of {record['tpm']} tokens per minute used. Retry after {retry_after} s.",
            headers={
                "Retry-After": retry_after,
                "X-RateLimit-Limit-Tokens": str(record["tpm"]),
                "X-RateLimit-Remaining-Tokens": "0",
            },
        )


def init_app(app: Flask) -> Limiter:
    """Register after app.auth, whose hook sets the key these limits count against."""
    settings = app.extensions["inferq.settings"]
    storage_uri, storage_options = limiter_storage(settings.redis_url)
    limiter = Limiter(
        key_func=_key_id,
        application_limits=[_requests_per_minute],
        # The same Redis as everything else, Sentinel included; as many connections as
        # the API itself may hold (see tasks.redis_client).
        # Counted and read for the headers in one script (app.ratelimit_storage).
        storage_uri=SCHEME_PREFIX + storage_uri,
        storage_options=storage_options,
        strategy=STRATEGY,
        headers_enabled=True,
        # Flask-Limiter would stamp Retry-After (the window reset) on every
        # response; queue polls use Retry-After to say when to poll again, so
        # the limiter's value travels under its own name, and only a 429
        # carries it as Retry-After (set below).
        header_name_mapping={HeaderNames.RETRY_AFTER: RESET_AFTER_HEADER},
        key_prefix="inferq",
    )
    limiter.request_filter(_exempt)
    limiter.init_app(app)
    app.before_request(_check_tokens)

    @app.errorhandler(RateLimitExceeded)
    def _too_many_requests(err: RateLimitExceeded):
        # The limiter's after_request hook adds Retry-After and the X-RateLimit-* headers.
        error = rate_limited(f"Rate limit reached: {err.description} for this API key.")
        response = jsonify(error.to_dict())
        response.status_code = error.status
        current = limiter.current_limit
        wait = min(60, max(1, math.ceil(current.reset_at - time.time()))) if current is not None else 60
        response.headers["Retry-After"] = str(wait)
        return response

    app.extensions["inferq.limiter"] = limiter
    return limiter
