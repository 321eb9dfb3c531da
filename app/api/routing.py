"""How a resource blueprint is declared: its URL prefixes, its body parser and its documented replies.

Every resource is one `Blueprint` that names the prefixes it answers under;
`app.openapi.Api.register_resource` registers it once per prefix (the only
place aliases are made). Views declare what they take and answer with
flask-smorest's decorators, so `/openapi.json` is generated from them.

Bodies are read the way clients have always been answered: not JSON is 415,
unparseable JSON or a JSON value that is not an object is 400 `invalid_json`,
and a schema's refusal is a marshmallow `ValidationError`, which the app's one
error handler (app.errors) turns into a 400 in OpenAI's error shape.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask_smorest
from flask import Request
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app.errors import InvalidRequest
from app.schemas.errors import ErrorSchema

#: Prefix name -> URL prefix. A resource's endpoints are `<blueprint>_<prefix name>.<view>`.
PLAIN = {"": "", "v1": "/v1", "api_v1": "/api/v1"}
BY_MODEL = {"engines": "/engines/<path:model>", "deployments": "/openai/deployments/<path:model>"}
#: The generation resources also answer under the provider's model-in-path prefixes.
GENERATION = {**PLAIN, **BY_MODEL}

SSE = "text/event-stream"
SSE_SCHEMA = {"type": "string", "description": "`data: {chunk}` events, then `data: [DONE]`."}
DESCRIPTIONS = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    415: "Not JSON",
    429: "Rate limit reached",
    503: "No live worker for the model (or Redis down)",
    504: "The result did not come in time",
}
GENERATION_ERRORS = (400, 401, 404, 413, 415, 429, 503, 504)


class BodyParser(FlaskParser):
    """webargs' Flask parser, answering bad bodies as inferq always has."""

    DEFAULT_VALIDATION_STATUS = 400

    def load_json(self, req: Request, schema: Schema) -> dict[str, Any]:
        if not req.is_json:
            raise UnsupportedMediaType("Content-Type must be application/json.")
        try:
            body = req.get_json()
        except BadRequest as exc:
            raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
        return body

    def handle_error(self, error: ValidationError, req: Request, schema: Schema, **kwargs: Any):
        """Re-raise the schema's own messages (webargs nests them under the location) for app.errors."""
        raise ValidationError(next(iter(error.messages.values())))


class Blueprint(flask_smorest.Blueprint):
    """A resource: its operations are tagged `tag` and answer under every prefix of `prefixes`."""

    # unknown=None: each schema's own `unknown` applies, query strings included (they refuse unknown keys).
    ARGUMENTS_PARSER = BodyParser(unknown=None)

    def __init__(self, name: str, import_name: str, *, tag: str, prefixes: dict[str, str], **kwargs: Any) -> None:
        super().__init__(name, import_name, **kwargs)
        self.tag = tag
        self.prefixes = prefixes

    def route(self, rule: str, *, parameters: list | None = None, tags: list[str] | None = None, **options: Any):
        return super().route(rule, parameters=parameters, tags=tags or [self.tag], **options)

    def errors(self, *statuses: int) -> Callable:
        """Document the statuses a view may refuse with, each in the OpenAI error envelope."""

        def decorator(view: Callable) -> Callable:
            for status in statuses:
                view = self.alt_response(status, schema=ErrorSchema, description=DESCRIPTIONS[status])(view)
            return view

        return decorator

    def streams(self, view: Callable) -> Callable:
        """Document the SSE reply a view gives with `stream: true`."""
        return self.alt_response(200, schema=SSE_SCHEMA, content_type=SSE, success=True)(view)

    @staticmethod
    def public(view: Callable) -> Callable:
        """Document that a view needs no API key (app.auth.PUBLIC_PATHS decides)."""
        return flask_smorest.Blueprint.doc(security=[])(view)
