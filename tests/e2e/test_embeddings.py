"""The official openai client's `embeddings.create` against gunicorn → Redis → embedding worker → vLLM."""

import base64
import math
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.harness import EMBED_MODEL

TEXTS = ["A man is eating food.", "Someone is having a meal.", "The stock market fell sharply today."]


@pytest.fixture()
def client(openai_client, embedding_worker):
    return openai_client()


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_embeddings_create(client):
    # The client asks for base64 by default and decodes it itself.
    reply = client.embeddings.create(model=EMBED_MODEL, input=TEXTS)
    assert reply.object == "list" and reply.model == EMBED_MODEL
    assert [item.index for item in reply.data] == [0, 1, 2]
    anchor, paraphrase, unrelated = (item.embedding for item in reply.data)
    assert len(anchor) == 384
    assert cosine(anchor, paraphrase) > cosine(anchor, unrelated)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 0


def test_float_and_base64_agree(client):
    floats = client.embeddings.create(model=EMBED_MODEL, input=TEXTS[0], encoding_format="float").data[0].embedding
    raw = client.embeddings.with_raw_response.create(model=EMBED_MODEL, input=TEXTS[0], encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    decoded = base64.b64decode(encoded)
    assert list(struct.unpack(f"<{len(decoded) // 4}f", decoded)) == floats
    # Without encoding_format the client asks for base64 and decodes it to floats itself.
    assert client.embeddings.create(model=EMBED_MODEL, input=TEXTS[0]).data[0].embedding == floats


def test_concurrent_requests_match_one_batch(client):
    batch = [item.embedding for item in client.embeddings.create(model=EMBED_MODEL, input=TEXTS * 8).data]
    with ThreadPoolExecutor(max_workers=24) as pool:
        singles = list(pool.map(lambda text: client.embeddings.create(model=EMBED_MODEL, input=text), TEXTS * 8))
    assert [reply.data[0].embedding for reply in singles] == batch


def test_too_long_input_is_a_400_naming_its_index(client):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=EMBED_MODEL, input=["fine", "word " * 300])
    assert caught.value.body["param"] == "input[1]" and caught.value.body["code"] == "context_length_exceeded"


def test_models_lists_the_embedding_model(client):
    models = {model.id: model for model in client.models.list()}
    assert models[EMBED_MODEL].model_dump()["kind"] == "embedding"
