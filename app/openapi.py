"""The OpenAPI 3 description (`/openapi.json`) and its Swagger UI (`/docs`).

The spec is generated, not written: every URL rule of the app is looked up
in ROUTES (its endpoint's summary, body, query and replies, all marshmallow
schemas from app.schemas), so a route added without an entry here fails
`undocumented()` and the test that calls it. Swagger UI's assets come from
the `swagger-ui-bundle` package and are served by the app itself: the page
works offline and loads nothing from a CDN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response, current_app, jsonify, send_from_directory
from marshmallow import Schema

from app.schemas.chat import ChatCompletionRequestSchema, ChatCompletionSchema
from app.schemas.completions import CompletionRequestSchema, CompletionSchema
from app.schemas.embeddings import EmbeddingInput, EmbeddingListSchema, EmbeddingRequestSchema
from app.schemas.errors import ErrorSchema
from app.schemas.fields import MessageContent, Prompt, StringOrList
from app.schemas.health import HealthSchema, ReadinessSchema
from app.schemas.models import ModelListSchema, ModelSchema
from app.schemas.queue import (
    JobListQuerySchema,
    JobListSchema,
    JobSchema,
    PollQuerySchema,
    QueueChatRequestSchema,
    QueueCompletionRequestSchema,
)
from app.schemas.token_counter import TokenCounterRequestSchema, TokenCounterSchema
from app.schemas.usage import UsageQuerySchema, UsageSchema

OPENAPI_VERSION = "3.0.3"
SSE = "text/event-stream"


@dataclass(frozen=True)
class Route:
    """What one endpoint takes and answers; `errors` are the statuses it may refuse with."""

    summary: str
    tag: str
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    reply: type[Schema] | None = None
    status: int = 200
    stream: bool = False  # with `stream: true` (or always, for `reply=None`) the reply is SSE
    public: bool = False
    media: str | None = None  # a non-JSON reply (metrics, docs)
    errors: tuple[int, ...] = field(default=(400, 401, 429))


GENERATION_ERRORS = (400, 401, 404, 413, 415, 429, 503, 504)
ROUTES: dict[str, Route] = {
    "chat.create": Route(
        "Create a chat completion (waits for the worker; SSE with `stream: true`).",
        "Chat",
        ChatCompletionRequestSchema,
        reply=ChatCompletionSchema,
        stream=True,
        errors=GENERATION_ERRORS,
    ),
    "completions.create": Route(
        "Create a text completion (waits for the worker; SSE with `stream: true`).",
        "Completions",
        CompletionRequestSchema,
        reply=CompletionSchema,
        stream=True,
        errors=GENERATION_ERRORS,
    ),
    "embeddings.create": Route(
        "Embed one or more inputs.",
        "Embeddings",
        EmbeddingRequestSchema,
        reply=EmbeddingListSchema,
        errors=GENERATION_ERRORS,
    ),
    "models.list_models": Route(
        "List the models served, each with `available` (a live worker).",
        "Models",
        reply=ModelListSchema,
        errors=(401, 429),
    ),
    "models.retrieve": Route("Retrieve one model.", "Models", reply=ModelSchema, errors=(401, 404, 429)),
    "queue.submit_chat": Route(
        "Queue a chat completion; answers 202 with the job at once.",
        "Queue",
        QueueChatRequestSchema,
        reply=JobSchema,
        status=202,
        errors=(400, 401, 404, 415, 429),
    ),
    "queue.submit_completion": Route(
        "Queue a text completion; answers 202 with the job at once.",
        "Queue",
        QueueCompletionRequestSchema,
        reply=JobSchema,
        status=202,
        errors=(400, 401, 404, 415, 429),
    ),
    "queue.get_job": Route(
        "Poll a job (long-poll with `wait`).",
        "Queue",
        query=PollQuerySchema,
        reply=JobSchema,
        errors=(400, 401, 404, 429),
    ),
    "queue.cancel_job": Route("Cancel a job.", "Queue", reply=JobSchema, errors=(401, 404, 409, 429)),
    "queue.stream_job": Route(
        "Stream a job's output as server-sent events (resumable with Last-Event-ID).",
        "Queue",
        media=SSE,
        errors=(401, 404, 429),
    ),
    "queue.list_all": Route(
        "List the caller's queued jobs, newest first.", "Queue", query=JobListQuerySchema, reply=JobListSchema
    ),
    "usage.get_usage": Route(
        "The caller's tokens and cost per model over a date range.", "Usage", query=UsageQuerySchema, reply=UsageSchema
    ),
    "utils.token_counter": Route(
        "Count the tokens of a prompt or conversation on a model.",
        "Utilities",
        TokenCounterRequestSchema,
        reply=TokenCounterSchema,
        errors=(400, 401, 404, 415, 429),
    ),
    "health": Route("Liveness: the process answers.", "Operations", reply=HealthSchema, public=True, errors=()),
    "health.ready": Route(
        "Readiness: Redis answers (503 if not); per model, its live workers.",
        "Operations",
        reply=ReadinessSchema,
        public=True,
        errors=(503,),
    ),
    "metrics": Route(
        "Prometheus metrics (loopback, or Bearer METRICS_TOKEN).",
        "Operations",
        media="text/plain; version=0.0.4",
        public=True,
        errors=(403,),
    ),
    "openapi.spec": Route("This OpenAPI document.", "Operations", media="application/json", public=True, errors=()),
    "openapi.docs": Route("Swagger UI for this document.", "Operations", media="text/html", public=True, errors=()),
    "openapi.asset": Route(
        "Swagger UI's assets, served locally.",
        "Operations",
        media="application/octet-stream",
        public=True,
        errors=(404,),
    ),
}
#: Routes Flask adds on its own.
IGNORED = frozenset({"static"})
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


def _schema_name(schema: type[Schema] | Schema) -> str:
    """Class name without `Schema`; a narrowed instance (`only`/`exclude`) is a schema of its own."""
    cls = schema if isinstance(schema, type) else type(schema)
    name = cls.__name__.removesuffix("Schema")
    if not isinstance(schema, type) and (schema.only or schema.exclude):
        name += "Partial"
    return name


def _union_types(converter: Any, field_obj: Any, **_: Any) -> dict[str, Any]:
    """JSON types for the union-typed fields that marshmallow cannot describe on its own."""
    tokens = {"type": "array", "items": {"type": "integer"}, "minItems": 1}
    if isinstance(field_obj, StringOrList):
        return {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    if isinstance(field_obj, (Prompt, EmbeddingInput)):
        items = {"oneOf": [{"type": "string"}, tokens]}
        return {"oneOf": [{"type": "string"}, tokens, {"type": "array", "items": items, "minItems": 1}]}
    if isinstance(field_obj, MessageContent):
        part = {
            "type": "object",
            "required": ["type", "text"],
            "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
        }
        return {"oneOf": [{"type": "string"}, {"type": "array", "items": part}]}
    return {}


def openapi_path(rule: str) -> tuple[str, list[str]]:
    """`/engines/<path:model>/x` -> (`/engines/{model}/x`, ["model"])."""
    names = re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule), names


def _operation(route: Route, params: list[str]) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": route.summary, "tags": [route.tag], "responses": {}}
    parameters: list[Any] = [
        {"in": "path", "name": name, "required": True, "schema": {"type": "string"}} for name in params
    ]
    if route.query is not None:
        parameters.append({"in": "query", "schema": route.query})
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body}}}
    content: dict[str, Any] = {}
    if route.reply is not None:
        content["application/json"] = {"schema": route.reply}
    if route.stream or route.media == SSE:
        content[SSE] = {"schema": {"type": "string", "description": "`data: {chunk}` events, then `data: [DONE]`."}}
    if route.media and route.media != SSE:
        content[route.media] = {"schema": {"type": "string"}}
    operation["responses"][str(route.status)] = {"description": "OK", "content": content}
    for status in route.errors:
        operation["responses"][str(status)] = {
            "description": DESCRIPTIONS.get(status, "Error"),
            "content": {"application/json": {"schema": ErrorSchema}},
        }
    if route.public:
        operation["security"] = []
    return operation


def undocumented(app: Flask) -> list[str]:
    return sorted({r.endpoint for r in app.url_map.iter_rules() if r.endpoint not in ROUTES | dict.fromkeys(IGNORED)})


def build_spec(app: Flask) -> dict[str, Any]:
    marshmallow = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(
        title="inferq",
        version="0.1.0",
        openapi_version=OPENAPI_VERSION,
        plugins=[marshmallow],
        info={"description": "An OpenAI-compatible inference API in front of a Celery queue of vLLM workers."},
        security=[{"bearer": []}],
    )
    marshmallow.converter.add_attribute_function(_union_types)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "description": "An inferq API key."})
    spec.components.schema("Error", schema=ErrorSchema)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        route = ROUTES.get(rule.endpoint)
        if route is None:
            continue
        path, params = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = _operation(route, params)
            operation["operationId"] = re.sub(r"[^A-Za-z0-9]+", "_", f"{method.lower()}{path}").strip("_")
            paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def spec_json() -> Response:
    if "inferq.openapi" not in current_app.extensions:
        current_app.extensions["inferq.openapi"] = build_spec(current_app)
    return jsonify(current_app.extensions["inferq.openapi"])


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>inferq API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.onload = function () {
      window.ui = SwaggerUIBundle({
        url: "/openapi.json",
        dom_id: "#swagger-ui",
        validatorUrl: null,
        deepLinking: true,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        layout: "StandaloneLayout"
      });
    };
  </script>
</body>
</html>
"""


def docs_page() -> Response:
    return Response(PAGE, mimetype="text/html")


def docs_asset(filename: str) -> Response:
    from swagger_ui_bundle import swagger_ui_path

    return send_from_directory(swagger_ui_path, filename, max_age=3600)


def init_app(app: Flask) -> None:
    app.add_url_rule("/openapi.json", "openapi.spec", spec_json, methods=["GET"])
    app.add_url_rule("/docs", "openapi.docs", docs_page, methods=["GET"])
    app.add_url_rule("/docs/<path:filename>", "openapi.asset", docs_asset, methods=["GET"])
