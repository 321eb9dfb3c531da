"""The official openai client against gunicorn → Redis → worker → vLLM."""

import pytest

from tests.harness import CHAT_MODEL

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
CHAT_PREFIXES = ["", "/v1", "/api/v1", f"/engines/{CHAT_MODEL}", f"/openai/deployments/{CHAT_MODEL}"]
TEXT_PREFIXES = ["", "/v1", f"/engines/{CHAT_MODEL}", f"/openai/deployments/{CHAT_MODEL}"]


def test_capital_of_france(openai_client):
    reply = openai_client().chat.completions.create(model=CHAT_MODEL, messages=FRANCE, temperature=0)
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


def shape(obj):
    """Keys all the way down, values ignored."""
    if isinstance(obj, dict):
        return {key: shape(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [shape(item) for item in obj]
    return type(obj).__name__


def test_every_chat_route_answers_the_same(openai_client):
    replies = [
        openai_client(prefix).chat.completions.create(model=CHAT_MODEL, messages=FRANCE, temperature=0, max_tokens=12)
        for prefix in CHAT_PREFIXES
    ]
    dumps = [reply.model_dump() for reply in replies]
    for dump in dumps:
        assert dump["object"] == "chat.completion"
        assert shape(dump) == shape(dumps[0])
        assert dump["choices"][0]["message"]["content"] == dumps[0]["choices"][0]["message"]["content"]
        assert dump["usage"] == dumps[0]["usage"]


def test_every_text_route_answers_the_same(openai_client):
    replies = [
        openai_client(prefix).completions.create(
            model=CHAT_MODEL, prompt="The capital of France is", temperature=0, max_tokens=6
        )
        for prefix in TEXT_PREFIXES
    ]
    dumps = [reply.model_dump() for reply in replies]
    for dump in dumps:
        assert dump["object"] == "text_completion" and shape(dump) == shape(dumps[0])
        assert dump["choices"][0]["text"] == dumps[0]["choices"][0]["text"]


def test_model_in_path_wins(openai_client):
    reply = openai_client(f"/engines/{CHAT_MODEL}").chat.completions.create(
        model="whatever-the-body-says", messages=FRANCE, temperature=0, max_tokens=4
    )
    assert reply.model == CHAT_MODEL


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_models_are_listed(openai_client, prefix):
    models = {m.id: m for m in openai_client(prefix).models.list()}
    assert CHAT_MODEL in models
    assert models[CHAT_MODEL].model_dump()["context_length"] == 2048
    assert models[CHAT_MODEL].model_dump()["available"] is True


def test_errors_reach_the_client_typed(openai_client):
    import openai

    with pytest.raises(openai.NotFoundError) as info:
        openai_client().chat.completions.create(model="no-such-model", messages=FRANCE)
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        openai_client().chat.completions.create(model=CHAT_MODEL, messages=FRANCE, max_tokens=100000)
    assert info.value.body["code"] == "context_length_exceeded"


def test_streamed_text_equals_non_streamed(openai_client):
    client = openai_client()
    whole = client.chat.completions.create(model=CHAT_MODEL, messages=FRANCE, seed=42, max_tokens=20)
    chunks = list(
        client.chat.completions.create(
            model=CHAT_MODEL,
            messages=FRANCE,
            seed=42,
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
