"""Bad input gets a clear 4xx in OpenAI's error shape, never a 500 and never a hang."""

import time

from tests.harness import CHAT_MODEL, GHOST_MODEL

MESSAGES = [{"role": "user", "content": "Hi"}]


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unknown_model_is_404(bare_client):
    error = error_of(bare_client.post("/v1/chat/completions", json={"model": "nope", "messages": MESSAGES}), 404)
    assert error["code"] == "model_not_found" and "nope" in error["message"]


def test_unknown_model_in_path_is_404(bare_client):
    response = bare_client.post("/engines/nope/completions", json={"prompt": "x"})
    assert error_of(response, 404)["code"] == "model_not_found"


def test_invalid_field_names_param(bare_client):
    error = error_of(
        bare_client.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": MESSAGES, "top_p": 7}), 400
    )
    assert error["param"] == "top_p" and error["type"] == "invalid_request_error"


def test_context_length_exceeded_gives_the_numbers(bare_client):
    error = error_of(
        bare_client.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 4000}),
        400,
    )
    assert error["code"] == "context_length_exceeded"
    assert "2048" in error["message"] and "4000" in error["message"]


def test_prompt_longer_than_context(bare_client):
    error = error_of(bare_client.post("/v1/completions", json={"model": CHAT_MODEL, "prompt": "word " * 3000}), 400)
    assert error["code"] == "context_length_exceeded" and error["param"] == "prompt"


def test_system_message_to_model_without_system_role(bare_client):
    body = {"model": GHOST_MODEL, "messages": [{"role": "system", "content": "x"}, *MESSAGES]}
    error = error_of(bare_client.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == "messages" and error["code"] == "system_message_not_supported"


def test_malformed_json_is_400(bare_client):
    response = bare_client.post("/v1/chat/completions", data="{nope", content_type="application/json")
    assert error_of(response, 400)["code"] == "invalid_json"


def test_json_that_is_not_an_object_is_400(bare_client):
    assert error_of(bare_client.post("/v1/chat/completions", json=[1, 2]), 400)["code"] == "invalid_json"


def test_wrong_content_type_is_415(bare_client):
    response = bare_client.post("/v1/chat/completions", data="model=x", content_type="text/plain")
    assert error_of(response, 415)["code"] == "unsupported_media_type"


def test_body_over_limit_is_413(make_app, redis_server):
    client = make_app(max_content_length=1000).test_client()
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x" * 5000}]}
    assert error_of(client.post("/v1/chat/completions", json=body), 413)["code"] == "request_too_large"


def test_unknown_route_and_method(bare_client):
    assert error_of(bare_client.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert error_of(bare_client.get("/v1/chat/completions"), 405)["code"] == "method_not_allowed"


def test_no_live_worker_is_503_after_the_configured_wait(make_app, redis_server):
    client = make_app(worker_wait_seconds=0.5).test_client()
    started = time.monotonic()
    response = client.post("/v1/chat/completions", json={"model": GHOST_MODEL, "messages": MESSAGES})
    elapsed = time.monotonic() - started
    error = error_of(response, 503)
    assert GHOST_MODEL in error["message"] and response.headers["Retry-After"]
    assert 0.5 <= elapsed < 5


def test_embedding_model_refuses_completions(bare_client):
    body = {"model": "all-minilm-l6-v2", "messages": MESSAGES}
    assert error_of(bare_client.post("/v1/chat/completions", json=body), 400)["param"] == "model"


def test_bad_query_string_is_400_naming_the_parameter(bare_client):
    for path, param in (
        ("/queue/jobs?limit=0", "limit"),
        ("/queue/jobs?status=weird", "status"),
        ("/queue/jobs?unknown=1", "unknown"),
        ("/queue/jobs/any-id?wait=soon", "wait"),
        ("/v1/usage?start=not-a-date", "start"),
    ):
        error = error_of(bare_client.get(path), 400)
        assert (error["param"], error["code"], error["type"]) == (param, "invalid_value", "invalid_request_error"), path


def test_reused_idempotency_key_is_409_before_the_body_is_validated(bare_client):
    body = {"model": GHOST_MODEL, "messages": MESSAGES, "max_tokens": 1}
    headers = {"Idempotency-Key": "errors-reused-key"}
    first = bare_client.post("/queue/chat/completions", json=body, headers=headers)
    again = bare_client.post("/queue/chat/completions", json=body, headers=headers)
    assert first.status_code == again.status_code == 202 and first.get_json()["id"] == again.get_json()["id"]
    reused = bare_client.post("/queue/chat/completions", json={**body, "top_p": 9}, headers=headers)
    assert error_of(reused, 409)["code"] == "idempotency_key_reused"
    bare_client.delete(f"/queue/jobs/{first.get_json()['id']}")
