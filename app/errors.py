"""The one error handler: every failure a client can see leaves in OpenAI's envelope.

The error type itself is tasks.protocol.errors.APIError (the worker stores
the same errors in job records); here marshmallow's and werkzeug's errors are
turned into it, and it into a response.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from tasks.protocol.errors import APIError, InvalidRequest, ModelNotFound, NotFound, ServiceUnavailable

__all__ = ["APIError", "InvalidRequest", "ModelNotFound", "NotFound", "ServiceUnavailable", "register_error_handlers"]

log = logging.getLogger(__name__)


def _first_error(messages: Any, path: str = "") -> tuple[str, str]:
    """Flatten marshmallow's nested messages into (param, message) of the first error."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        if key == "_schema":
            return _first_error(value, path)
        name = f"{path}.{key}" if path and not isinstance(key, int) else (f"{path}[{key}]" if path else str(key))
        return _first_error(value, name)
    if isinstance(messages, list) and messages:
        return _first_error(messages[0], path) if not isinstance(messages[0], str) else (path, messages[0])
    return path, str(messages)


def validation_error(err: ValidationError) -> APIError:
    param, message = _first_error(err.messages)
    param = param or None
    text = f"{param}: {message}" if param else message
    return InvalidRequest(text, param=param, code="invalid_value")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(err: APIError):
        response = jsonify(err.to_dict())
        response.status_code = err.status
        response.headers.update(err.headers)
        return response

    @app.errorhandler(ValidationError)
    def _validation(err: ValidationError):
        return _api_error(validation_error(err))

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type"}
        status = err.code or 500
        error = APIError(
            err.description or err.name,
            status=status,
            code=codes.get(status, err.name.lower().replace(" ", "_")),
            type="invalid_request_error" if status < 500 else "server_error",
        )
        response = _api_error(error)
        if status == 405 and hasattr(err, "valid_methods") and err.valid_methods:
            response.headers["Allow"] = ", ".join(err.valid_methods)
        return response

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    def _store_unavailable(err: redis.RedisError):
        # Redis restarting or unreachable: a retry soon will work, and nothing was half-accepted
        # (every submission is one atomic step).
        log.warning("redis unavailable: %s", err)
        return _api_error(
            ServiceUnavailable(
                "The job store is briefly unavailable; retry shortly.",
                code="store_unavailable",
                headers={"Retry-After": "2"},
            )
        )

    @app.errorhandler(redis.ResponseError)
    def _store_refused(err: redis.ResponseError):
        if not str(err).startswith("OOM"):
            return _unexpected(err)
        return _api_error(
            ServiceUnavailable(
                "The job store is full; new work is refused until running jobs finish. Retry later.",
                code="server_busy",
                headers={"Retry-After": "5"},
            )
        )

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error")
        return _api_error(
            APIError(
                "The server had an error while processing your request.",
                status=500,
                type="server_error",
                code="internal_error",
            )
        )
