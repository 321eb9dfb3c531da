"""The OpenAPI document and Swagger UI, then schemathesis against every documented route.

schemathesis generates requests from `/openapi.json` (valid and invalid
bodies, queries and path parameters) and calls the real app on the real
Redis with the session worker behind it; no operation may answer 5xx.
Generation is kept short so the run fits in minutes on a CPU engine: bodies
that would run a generation keep their shape but ask for at most a few
tokens (the same `max_tokens` / `n` limits apply to every caller), and half
of them are pointed at the served chat model so the engine path is hit too.
A stateful run then follows the document's links from a queue submission to
the job it created: polled, cancelled, deleted, polled again, in any order.
"""

from __future__ import annotations

import re
import zlib

import schemathesis
from flask_smorest.spec.plugins import FlaskPlugin
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from app.auth import is_public
from app.auth.keys import KeyStore
from app.openapi import JOB_LINKS
from tasks.keyspace import KEYS
from tests.harness import CHAT_MODEL, EMBED_MODEL, GHOST_MODEL

MAX_TOKENS = 4
MAX_EXAMPLES = 12
#: Stateful scenarios over the queue routes, and calls per scenario.
SCENARIOS, STEPS = 20, 6
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
    if not isinstance(body, dict) or not case.path.endswith(("completions", "responses")):
        return
    for name in ("max_tokens", "max_completion_tokens", "min_tokens", "max_output_tokens"):
        if isinstance(body.get(name), int) and not isinstance(body.get(name), bool):
            body[name] = min(body[name], MAX_TOKENS)
    if all(body.get(name) is None for name in ("max_tokens", "max_completion_tokens", "max_output_tokens")):
        body["max_output_tokens" if case.path.endswith("responses") else "max_tokens"] = MAX_TOKENS
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


def test_a_queued_job_links_to_the_operations_on_it(make_app, redis_server):
    spec = get_spec(make_app())
    for path in ("/queue/chat/completions", "/queue/completions"):
        links = spec["paths"][path]["post"]["responses"]["202"]["links"]
        assert set(links) == set(JOB_LINKS)
        for link in links.values():
            assert link["parameters"] == {"job_id": "$response.body#/id"}
            pointer = link["operationRef"].removeprefix("#/paths/")
            target, method = pointer.rsplit("/", 1)
            assert method in spec["paths"][target.replace("~1", "/").replace("~0", "~")], link
    assert "links" in spec["paths"]["/queue/jobs/{job_id}"]["delete"]["responses"]["200"]
    assert "links" not in spec["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]


def aimed(case) -> None:
    """A submission goes to the served model or the never-served one (queued until cancelled); polls are short."""
    bounded(case)
    if isinstance(case.body, dict) and case.method == "POST" and case.body.get("model") != CHAT_MODEL:
        case.body["model"] = GHOST_MODEL
    wait = (case.query or {}).get("wait")
    if isinstance(wait, (int, float)) and not isinstance(wait, bool):
        case.query["wait"] = min(wait, 1)


def cancel_open_jobs(client, key: str, owner: str, redis) -> None:
    """Leave no ghost job queued for the tests that count positions."""
    for job_id in redis.zrange(KEYS.owner_jobs(owner), 0, -1):
        client.delete(f"/queue/jobs/{job_id.decode()}", headers={"Authorization": f"Bearer {key}"})


def test_queue_jobs_followed_through_their_links_never_answer_a_server_error(make_app, worker, redis_server):
    """Submit, then poll, cancel and poll again in any order, on the job the links name: no 5xx, ever.

    The run takes the submissions and the operations on one job (GET, DELETE, the poll aliases); the
    job list and `POST .../cancel` stay with the stateless test: schemathesis starts scenarios from
    POSTs and lists it trusts more than a submission whose body holds `*_ids` fields, so with them in
    it would never submit. The stream stays open until the job ends: a ghost job never does.
    """
    key, record = KeyStore(redis_server.client()).create(name="stateful", rpm=1_000_000)
    app = make_app()
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema = schema.include(path_regex=r"^/queue/.*(completions|\{job_id\})$")
    reached = []

    class QueueWorkflow(schema.as_state_machine()):
        def before_call(self, case) -> None:
            aimed(case)
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {key}"}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:
            if "{job_id}" in case.path and response.status_code in (200, 409):
                reached.append((case.method, case.path, response.status_code))
            case.validate_response(response, checks=[not_a_server_error])

    stateful = settings(
        max_examples=SCENARIOS,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    try:
        QueueWorkflow.run(settings=stateful)
    finally:
        cancel_open_jobs(app.test_client(), key, record["id"], redis_server.client())
    assert reached, "no link led to a job that exists: every call on a job was a 404"
