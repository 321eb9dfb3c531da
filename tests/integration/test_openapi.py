"""The OpenAPI document and Swagger UI, then schemathesis against every documented route.

schemathesis generates requests from `/openapi.json` (valid and invalid
bodies, queries and path parameters) and calls the real app on the real
Redis with the session worker behind it; no operation may answer 5xx.
Generation is kept short so the run fits in minutes on a CPU engine: bodies
that would run a generation keep their shape but ask for at most a few
tokens (the same `max_tokens` / `n` limits apply to every caller), and half
of them are pointed at the served chat model so the engine path is hit too.
"""

from __future__ import annotations

import re
import zlib

import schemathesis
from flask_smorest.spec.plugins import FlaskPlugin
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from app.auth import is_public
from tests.harness import CHAT_MODEL, EMBED_MODEL

MAX_TOKENS = 4
MAX_EXAMPLES = 12
#: Path-level keys of an OpenAPI path item that are not operations.
PATH_ITEM_FIELDS = {"parameters", "summary", "description", "servers"}


def get_spec(app) -> dict:
    response = app.test_client().get("/openapi.json", headers={"Authorization": ""})
    assert response.status_code == 200
    return response.get_json()


def operations_of(spec: dict) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method not in PATH_ITEM_FIELDS
    }


def undocumented(app) -> set[tuple[str, str]]:
    """(path, method) of every URL rule (but Flask's static files) that the generated spec lacks."""
    routes = {
        (FlaskPlugin.flaskpath2openapi(rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    return routes - operations_of(get_spec(app))


def test_every_route_is_documented(make_app, redis_server):
    app = make_app()
    assert undocumented(app) == set()
    spec = get_spec(app)
    routes = {(FlaskPlugin.flaskpath2openapi(rule.rule), m) for rule in app.url_map.iter_rules() for m in rule.methods}
    assert operations_of(spec) <= routes, "the spec documents a route that does not exist"
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An inferq API key.",
    }
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"
    }
    assert chat["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletion"
    }
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in PATH_ITEM_FIELDS:
                continue
            assert operation["responses"], (method, path)
            assert operation.get("summary"), (method, path)
    assert spec["paths"]["/health/ready"]["get"]["security"] == []
    assert all(not name.endswith(("1", "2")) for name in spec["components"]["schemas"]), "a schema name clashed"


def test_public_operations_are_the_key_free_paths(make_app, redis_server):
    """An operation documented with `security: []` is exactly one that app.auth lets through without a key."""
    spec = get_spec(make_app())
    for path, method in operations_of(spec):
        documented_public = spec["paths"][path][method.lower()].get("security") == []
        assert documented_public == is_public(path), (method, path)


def test_an_undocumented_route_is_caught(make_app, redis_server):
    app = make_app()
    app.add_url_rule("/v1/hidden/<job_id>", "hidden", lambda job_id: "", methods=["GET", "POST"])
    assert undocumented(app) == {("/v1/hidden/{job_id}", "GET"), ("/v1/hidden/{job_id}", "POST")}


def test_every_alias_answers_like_the_canonical_route(bare_client):
    """Each prefix of a resource reaches the same view: an unknown model is the same 404 everywhere."""
    body = {"model": "nope", "messages": [{"role": "user", "content": "Hi"}]}
    answers = [
        bare_client.post(path, json=body)
        for path in ("/chat/completions", "/v1/chat/completions", "/api/v1/chat/completions")
    ] + [
        bare_client.post(f"{prefix}/nope/chat/completions", json={"messages": body["messages"]})
        for prefix in ("/engines", "/openai/deployments")
    ]
    assert {(r.status_code, r.get_json()["error"]["code"]) for r in answers} == {(404, "model_not_found")}


def test_docs_are_served_without_a_cdn(make_app, redis_server):
    client = make_app().test_client()
    page = client.get("/docs", headers={"Authorization": ""})
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "every asset must come from this service"
    for asset in re.findall(r"(?:src|href)=\"(/docs/[^\"]+)\"", html):
        response = client.get(asset, headers={"Authorization": ""})
        assert response.status_code == 200, asset
        if asset.endswith(".js"):
            assert "//unpkg.com" not in response.get_data(as_text=True)[:2000]


def bounded(case) -> None:
    """Keep any generation a generated body asks for down to a few tokens of a served model."""
    body = case.body
    if not isinstance(body, dict) or "completions" not in case.path:
        return
    for name in ("max_tokens", "max_completion_tokens", "min_tokens"):
        if isinstance(body.get(name), int) and not isinstance(body.get(name), bool):
            body[name] = min(body[name], MAX_TOKENS)
    if "max_tokens" not in body and "max_completion_tokens" not in body:
        body["max_tokens"] = MAX_TOKENS
    for name in ("n", "best_of"):
        if isinstance(body.get(name), int) and not isinstance(body.get(name), bool):
            body[name] = min(body[name], 2)
    if zlib.crc32(repr(body).encode()) % 2:  # the other half keeps its (mostly unknown, or missing) model
        if "model" in (case.path_parameters or {}):
            case.path_parameters["model"] = CHAT_MODEL
        elif body.get("model") != EMBED_MODEL:
            body["model"] = CHAT_MODEL


def test_no_route_answers_a_server_error(make_app, worker, api_key):
    """Every operation, one after the other; all failures are reported together."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", make_app())
    headers = {"Authorization": f"Bearer {api_key}"}
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def run(case) -> None:
            bounded(case)
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
