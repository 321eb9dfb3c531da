"""How a resource blueprint is declared: its URL prefixes, its body parser and its documented replies.

Every resource is one `Blueprint` that names the prefixes it answers under;
`app.openapi.Api.register_resource` registers it once per prefix (the only
place aliases are made). Views declare what they take and answer with
flask-smorest's decorators, so `/openapi.json` is generated from them.

Bodies are read the way clients have always been answered: not JSON is 415,
unparseable JSON or a JSON value that is not an object is 400 `invalid_json`,
and a schema's refusal is a marshmallow `ValidationError`, which the app's one
error handler (app.errors) turns into a 400 in OpenAI's error shape.

Every body is decoded here and only here (`read_json`), so what no schema can
see is refused once, for every route: nesting deeper than any request needs
(it would otherwise reach Python's recursion limit, a 500) and lone UTF-16
surrogates (`"\\ud800"`), which decode to a `str` that no tokenizer, Redis
client or UTF-8 encoder accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import flask_smorest
from flask import Request
from flask.json.provider import DefaultJSONProvider
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import UnsupportedMediaType

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

#: Deepest nesting a body may have. OpenAI's bodies need 5 (messages, content parts); vLLM caps a
#: structured-output schema at 64 levels too. Python's decoder would go to ~1000, then raise.
MAX_JSON_DEPTH = 64
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_TOO_DEEP = f"The request body is nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and objects."


def _child(path: str, key: str | int) -> str:
    """The path of a member, written as app.errors names params: `messages[0].content`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _refuse_surrogate(param: str | None, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{what} holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not Unicode text.",
        param=param,
        code="invalid_value",
    )


def check_json(body: Any) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH and any key or string holding a lone surrogate.

    Iterative, so a value that Python's decoder did accept cannot exhaust the
    stack here either. A bad string is named by its path (`messages[0].content`);
    a bad key by the object that holds it, so the param never echoes the surrogate.
    """
    stack: list[tuple[Any, int, str]] = [(body, 1, "")] if isinstance(body, (dict, list)) else []
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidRequest(_TOO_DEEP, param=re.split(r"[.\[]", path)[0], code="invalid_json")
        if isinstance(value, dict) and any(_has_surrogate(key) for key in value):
            raise _refuse_surrogate(path or None, f"A key of {path or 'the body'}")
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(item, (dict, list)):
                stack.append((item, depth + 1, _child(path, key)))
            elif isinstance(item, str) and _has_surrogate(item):
                raise _refuse_surrogate(_child(path, key), _child(path, key))


def read_json(data: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 `invalid_json` saying why it cannot be one."""
    try:
        body = json.loads(data)
    except RecursionError as exc:
        raise InvalidRequest(_TOO_DEEP, code="invalid_json") from exc
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of more than 4300 digits
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    check_json(body)
    return body


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a document too deep to decode answered as bad JSON (a 400), not a RecursionError.

    BodyParser reads bodies itself; this covers anything else that calls `request.get_json()`.
    """

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError as exc:
            raise ValueError(_TOO_DEEP) from exc


class BodyParser(FlaskParser):
    """webargs' Flask parser, answering bad bodies as inferq always has."""

    DEFAULT_VALIDATION_STATUS = 400

    def load_json(self, req: Request, schema: Schema) -> dict[str, Any]:
        if not req.is_json:
            raise UnsupportedMediaType("Content-Type must be application/json.")
        return read_json(req.get_data(cache=True))

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

    def arguments(self, schema: type[Schema] | Schema, **kwargs: Any) -> Callable:
        """One schema instance per route: webargs instantiates a schema class on every request.

        Building ChatCompletionRequestSchema (its fields deep-copied, nested
        schemas rebuilt) costs more than loading a body with it, about 0.6 ms
        a request (bench/bench_cpu.py). Loading keeps no state on the instance.
        """
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)

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
