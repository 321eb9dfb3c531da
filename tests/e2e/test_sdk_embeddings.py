"""`embeddings.create` through the official SDK, sync and async, float and base64, against the embedding worker."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import openai
import pytest
from tokenizers import Tokenizer

from tests.harness import CHAT_MODEL, EMBED_MODEL

TEXTS = ["A man is eating food.", "Someone is having a meal."]


@pytest.fixture(autouse=True)
def _embedding_worker(embedding_worker):
    return embedding_worker


def embed(**kwargs):
    return lambda client: client.embeddings.create(model=EMBED_MODEL, **kwargs)


def test_float_embeddings(sdk):
    reply = sdk.call(embed(input=TEXTS, encoding_format="float"))
    assert reply.object == "list" and reply.model == EMBED_MODEL
    shapes = [(item.object, item.index, len(item.embedding)) for item in reply.data]
    assert shapes == [("embedding", 0, 384), ("embedding", 1, 384)]
    assert all(isinstance(value, float) for value in reply.data[0].embedding)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 0


def test_base64_embeddings_decode_to_the_same_floats(sdk):
    floats = sdk.call(embed(input=TEXTS, encoding_format="float"))
    decoded_by_sdk = sdk.call(embed(input=TEXTS))  # the SDK asks for base64 and decodes it itself
    raw = sdk.raw(lambda client: client.embeddings.with_raw_response.create(
        model=EMBED_MODEL, input=TEXTS, encoding_format="base64"
    ))  # fmt: skip
    assert [item.embedding for item in decoded_by_sdk.data] == [item.embedding for item in floats.data]
    for item, expected in zip(raw.parsed.data, floats.data, strict=True):
        packed = base64.b64decode(item.embedding)
        assert list(struct.unpack(f"<{len(packed) // 4}f", packed)) == expected.embedding


def test_token_array_input_equals_text_input(sdk, base_config):
    tokenizer = Tokenizer.from_file(str(Path(base_config.models[EMBED_MODEL].local_path) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    ids = tokenizer.encode(TEXTS[0]).ids  # with [CLS] ... [SEP], as the server encodes text
    text = sdk.call(embed(input=TEXTS[0], encoding_format="float"))
    tokens = sdk.call(embed(input=[ids, ids], encoding_format="float"))
    assert [item.index for item in tokens.data] == [0, 1]
    assert tokens.data[0].embedding == tokens.data[1].embedding == text.data[0].embedding
    assert tokens.usage.prompt_tokens == 2 * text.usage.prompt_tokens == 2 * len(ids)


def test_embedding_model_is_listed_and_retrieved(sdk):
    assert EMBED_MODEL in {model.id for model in sdk.call(lambda client: client.models.list())}
    assert sdk.call(lambda client: client.models.retrieve(EMBED_MODEL)).id == EMBED_MODEL


def test_chat_model_refuses_embeddings(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.call(lambda client: client.embeddings.create(model=CHAT_MODEL, input="x"))
    assert caught.value.param == "model" and caught.value.code == "model_not_supported"


def test_unsupported_dimensions_is_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.call(embed(input="x", dimensions=64))
    assert caught.value.param == "dimensions" and caught.value.code == "invalid_value"
