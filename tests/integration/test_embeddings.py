"""Embeddings through the Flask app, the real Redis, a real worker and the real vLLM pooling engine."""

import base64
import math
import struct

import pytest

from tests.harness import CHAT_MODEL, EMBED_MODEL

PARAPHRASE = ("A man is eating food.", "Someone is having a meal.")
UNRELATED = "The stock market fell sharply today."


@pytest.fixture()
def embed_client(bare_client, embedding_worker):
    """Only the embedding worker is needed here, not the chat worker behind `client`."""
    return bare_client


@pytest.fixture()
def embed(embed_client):
    def call(path="/v1/embeddings", **body):
        response = embed_client.post(path, json={"model": EMBED_MODEL, **body})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    return call


def vectors(body):
    return [item["embedding"] for item in sorted(body["data"], key=lambda item: item["index"])]


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_openai_shape_and_usage(embed, embed_client):
    body = embed(input=PARAPHRASE[0])
    assert body["object"] == "list" and body["model"] == EMBED_MODEL
    (item,) = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == 384 and all(isinstance(x, float) for x in item["embedding"])
    assert math.isclose(sum(x * x for x in item["embedding"]), 1.0, rel_tol=1e-4)  # the model normalises
    counted = embed_client.post("/utils/token_counter", json={"model": EMBED_MODEL, "prompt": PARAPHRASE[0]})
    tokens = counted.get_json()["total_tokens"]
    assert tokens == 8 and body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_same_text_same_vector_across_calls_and_batches(embed):
    first = vectors(embed(input=PARAPHRASE[0]))[0]
    assert vectors(embed(input=PARAPHRASE[0]))[0] == first
    batched = vectors(embed(input=[UNRELATED, PARAPHRASE[0], PARAPHRASE[1]]))
    assert batched[1] == first


def test_a_paraphrase_ranks_above_an_unrelated_sentence(embed):
    anchor, paraphrase, unrelated = vectors(embed(input=[*PARAPHRASE, UNRELATED]))
    assert cosine(anchor, paraphrase) > cosine(anchor, unrelated) + 0.3


def test_base64_decodes_to_the_same_floats(embed):
    floats = vectors(embed(input=PARAPHRASE[0], encoding_format="float"))[0]
    encoded = vectors(embed(input=PARAPHRASE[0], encoding_format="base64"))[0]
    raw = base64.b64decode(encoded)
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == floats


def test_token_arrays_equal_their_text(embed, embed_client):
    from app.tokenizers import ModelTokenizer
    from tasks.settings import Settings

    tokenizer = ModelTokenizer(Settings.load().models[EMBED_MODEL].tokenizer_path)
    ids = [tokenizer.encode(text) for text in PARAPHRASE]
    by_text = vectors(embed(input=list(PARAPHRASE)))
    assert vectors(embed(input=ids[0])) == by_text[:1]
    assert vectors(embed(input=ids)) == by_text


@pytest.mark.parametrize("path", ["/embeddings", f"/engines/{EMBED_MODEL}/embeddings"])
def test_every_prefix_serves(embed, path):
    assert len(vectors(embed(path=path, input="hello"))[0]) == 384


def test_deployment_path_names_the_model(embed_client):
    response = embed_client.post(f"/openai/deployments/{EMBED_MODEL}/embeddings", json={"input": "hello"})
    assert response.status_code == 200 and response.get_json()["model"] == EMBED_MODEL


def error_of(response, status=400):
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()["error"]


def test_too_long_input_names_its_index(embed_client):
    response = embed_client.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": ["short", "word " * 300]})
    error = error_of(response)
    assert error["param"] == "input[1]" and error["code"] == "context_length_exceeded"
    assert "input[1]" in error["message"] and "256" in error["message"]


def test_a_long_token_array_is_refused_too(embed_client):
    response = embed_client.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": [[101] * 257]})
    assert error_of(response)["param"] == "input[0]"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": ""}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": [[]]}, "input"),
        ({"input": 7}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 128}, "dimensions"),
        ({}, "input"),
    ],
)
def test_invalid_bodies_are_400(embed_client, body, param):
    error = error_of(embed_client.post("/v1/embeddings", json={"model": EMBED_MODEL, **body}))
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_token_ids_outside_the_vocabulary(embed_client):
    error = error_of(embed_client.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": [[101, 999999, 102]]}))
    assert error["param"] == "input[0]"


def test_wrong_model_kind_is_refused(embed_client):
    error = error_of(embed_client.post("/v1/embeddings", json={"model": CHAT_MODEL, "input": "x"}))
    assert error["code"] == "model_not_supported"
    chat = embed_client.post(
        "/v1/chat/completions", json={"model": EMBED_MODEL, "messages": [{"role": "user", "content": "x"}]}
    )
    assert error_of(chat)["code"] == "model_not_supported"
    assert error_of(embed_client.post("/v1/embeddings", json={"model": "nope", "input": "x"}), 404)["param"] == "model"


def test_models_lists_the_embedding_model_with_its_kind(embed_client):
    models = {m["id"]: m for m in embed_client.get("/v1/models").get_json()["data"]}
    assert models[EMBED_MODEL]["kind"] == "embedding" and models[EMBED_MODEL]["available"] is True
    assert models[CHAT_MODEL]["kind"] == "chat"
    assert embed_client.get(f"/v1/models/{EMBED_MODEL}").get_json()["kind"] == "embedding"
