"""One error type, one body: OpenAI's `{"error": {"message", "type", "param", "code"}}`.

Raised in the API, stored in a job record by the worker, and rebuilt from the
record when a waiter reads it, so every path renders the same envelope.
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.code
        self.status = status or self.status
        self.type = type or self.type
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    @classmethod
    def from_dict(cls, body: dict[str, Any], status: int) -> APIError:
        """Rebuild an error a worker stored in a job record."""
        error = body.get("error", body)
        return cls(
            error.get("message", "error"),
            param=error.get("param"),
            code=error.get("code"),
            type=error.get("type"),
            status=status,
        )


class InvalidRequest(APIError):
    status = 400


class NotFound(APIError):
    status = 404
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model `{model}` does not exist.", param="model")


class ServiceUnavailable(APIError):
    status = 503
    type = "service_unavailable"
    code = "no_worker"


class GatewayTimeout(APIError):
    status = 504
    type = "timeout"
    code = "timeout"


class ServerError(APIError):
    status = 500
    type = "server_error"
