"""Every response shape, as it comes off the wire, validated against OpenAI's published OpenAPI description.

Bodies are read with plain httpx (no SDK in between: SDKs are lenient and
would hide a missing field) and checked by `tests/openai_spec.py` against
the component OpenAI documents for that response.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.harness import CHAT_MODEL, EMBED_MODEL, GHOST_MODEL
from tests.openai_spec import assert_conforms

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
CHAT = "CreateChatCompletionResponse"
CHUNK = "CreateChatCompletionStreamResponse"
TEXT = "CreateCompletionResponse"


def post(http: httpx.Client, path: str, body: dict) -> dict:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def sse_chunks(http: httpx.Client, path: str, body: dict) -> list[dict]:
    """The JSON of every `data:` event before `[DONE]` (other SSE fields skipped: the wire test checks them)."""
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200
        data = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


def test_chat_completion(http):
    body = {"model": CHAT_MODEL, "messages": FRANCE, "max_tokens": 4}
    assert_conforms(post(http, "/v1/chat/completions", body), CHAT)


def test_chat_completion_with_logprobs(http):
    body = {"model": CHAT_MODEL, "messages": FRANCE, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}
    assert_conforms(post(http, "/v1/chat/completions", body), CHAT)


def test_chat_completion_n_2(http):
    body = post(http, "/v1/chat/completions", {"model": CHAT_MODEL, "messages": FRANCE, "max_tokens": 3, "n": 2})
    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    assert_conforms(body, CHAT)


def test_chat_stream_chunks(http):
    body = {"model": CHAT_MODEL, "messages": FRANCE, "max_tokens": 4, "stream_options": {"include_usage": True}}
    chunks = sse_chunks(http, "/v1/chat/completions", body)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    for chunk in chunks:
        assert_conforms(chunk, CHUNK)


def test_chat_stream_chunks_with_logprobs(http):
    body = {"model": CHAT_MODEL, "messages": FRANCE, "max_tokens": 3, "logprobs": True, "top_logprobs": 1, "n": 2}
    for chunk in sse_chunks(http, "/v1/chat/completions", body):
        assert_conforms(chunk, CHUNK)


def test_text_completion(http):
    assert_conforms(post(http, "/v1/completions", {"model": CHAT_MODEL, "prompt": "Hello", "max_tokens": 3}), TEXT)


def test_text_completion_with_logprobs(http):
    body = {"model": CHAT_MODEL, "prompt": "Hello", "max_tokens": 3, "logprobs": 2}
    assert_conforms(post(http, "/v1/completions", body), TEXT)


def test_text_completion_with_echo_and_logprobs(http):
    body = {"model": CHAT_MODEL, "prompt": "The capital of France is", "max_tokens": 1, "logprobs": 1, "echo": True}
    reply = post(http, "/v1/completions", body)
    assert reply["choices"][0]["logprobs"]["token_logprobs"][0] is None
    assert_conforms(reply, TEXT)


def test_text_stream_chunks(http):
    body = {"model": CHAT_MODEL, "prompt": "Hello", "max_tokens": 3, "logprobs": 1}
    body["stream_options"] = {"include_usage": True}
    chunks = sse_chunks(http, "/v1/completions", body)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    for chunk in chunks:
        assert_conforms(chunk, TEXT)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_embeddings(http, embedding_worker, encoding_format):
    body = {"model": EMBED_MODEL, "input": ["a cat", "a dog"], "encoding_format": encoding_format}
    reply = post(http, "/v1/embeddings", body)
    assert isinstance(reply["data"][0]["embedding"], list if encoding_format == "float" else str)
    assert_conforms(reply, "CreateEmbeddingResponse")


def test_model_list_and_model(http):
    listed = http.get("/v1/models").json()
    assert_conforms(listed, "ListModelsResponse")
    assert CHAT_MODEL in {model["id"] for model in listed["data"]}
    assert_conforms(http.get(f"/v1/models/{CHAT_MODEL}").json(), "Model")


@pytest.mark.parametrize(
    ("status", "request_args"),
    [
        (400, ("POST", "/v1/chat/completions", {"model": CHAT_MODEL, "messages": FRANCE, "temperature": 5})),
        (400, ("POST", "/v1/completions", {"model": CHAT_MODEL, "prompt": "x", "no_such_field": 1})),
        (404, ("POST", "/v1/chat/completions", {"model": "no-such-model", "messages": FRANCE})),
        (404, ("GET", "/v1/models/no-such-model", None)),
        (404, ("GET", "/v1/no-such-route", None)),
        (503, ("POST", "/v1/chat/completions", {"model": GHOST_MODEL, "messages": FRANCE})),
    ],
)
def test_errors(http, status, request_args):
    method, path, body = request_args
    response = http.request(method, path, json=body)
    assert response.status_code == status
    assert_conforms(response.json(), "ErrorResponse")


def test_error_401(api_server):
    response = httpx.get(api_server.url + "/v1/models", headers={"Authorization": "Bearer sk-wrong"})
    assert response.status_code == 401
    assert_conforms(response.json(), "ErrorResponse")


def test_error_429(api_server, key_with_rpm):
    key = key_with_rpm(1)
    statuses = []
    for _ in range(2):
        response = httpx.get(api_server.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        statuses.append(response.status_code)
    assert statuses == [200, 429]
    assert_conforms(response.json(), "ErrorResponse")
