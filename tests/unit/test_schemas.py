import math

import pytest
from marshmallow import ValidationError

from app.errors import validation_error
from app.job_requests import sampling
from app.schemas.chat import ChatCompletionRequestSchema
from app.schemas.completions import CompletionRequestSchema
from app.schemas.sampling import (
    MAX_BAD_WORDS,
    MAX_ENGINE_INT,
    MAX_LOGIT_BIAS,
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_STOP_TOKEN_IDS,
)

CHAT = ChatCompletionRequestSchema()
TEXT = CompletionRequestSchema()
MESSAGES = [{"role": "user", "content": "hi"}]


def param_of(schema, body):
    with pytest.raises(ValidationError) as info:
        schema.load(body)
    return validation_error(info.value).param


def test_chat_defaults_follow_openai():
    data = CHAT.load({"model": "m", "messages": MESSAGES})
    params = sampling(data)
    assert params.n == 1 and params.temperature == 1.0 and params.top_p == 1.0
    assert params.top_k == -1 and params.max_tokens is None and params.seed is None
    assert data["stream"] is False and data["logprobs"] is False


def test_null_means_default():
    params = sampling(CHAT.load({"model": "m", "messages": MESSAGES, "temperature": None, "top_p": None}))
    assert params.temperature == 1.0 and params.top_p == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("temperature", math.nan),  # Python's json reads `NaN` and `Infinity`: the job record's JSON may not
        ("top_p", math.inf),
        ("top_p", 0),
        ("top_p", 1.5),
        ("top_k", -2),
        ("min_p", 1.5),
        ("presence_penalty", 3),
        ("frequency_penalty", -3),
        ("repetition_penalty", 0),
        ("n", 0),
        ("n", 500),
        ("max_tokens", 0),
        ("min_tokens", -1),
        ("stop", 5),
        ("stop", ["a", 1]),
        ("seed", "x"),
        ("top_logprobs", 50),
        ("stop_token_ids", ["a"]),
        ("logit_bias", {"x": 1}),
        ("unknown_field", 1),
    ],
)
def test_invalid_field_is_named(field, value):
    body = {"model": "m", "messages": MESSAGES, field: value}
    if field == "top_logprobs":
        body["logprobs"] = True
    assert param_of(CHAT, body).split("[")[0].split(".")[0] == field


def test_messages_are_validated():
    assert param_of(CHAT, {"model": "m", "messages": []}) == "messages"
    assert param_of(CHAT, {"model": "m", "messages": [{"role": "wizard", "content": "x"}]}).startswith("messages")
    assert param_of(CHAT, {"model": "m"}) == "messages"


def test_content_parts_are_joined():
    data = CHAT.load(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
        }
    )
    assert data["messages"][0]["content"] == "ab"


def test_stop_string_becomes_list():
    assert CHAT.load({"model": "m", "messages": MESSAGES, "stop": "x"})["stop"] == ["x"]


def test_combinations():
    assert param_of(CHAT, {"model": "m", "messages": MESSAGES, "n": 3, "best_of": 2}) == "best_of"
    assert param_of(CHAT, {"model": "m", "messages": MESSAGES, "n": 2, "temperature": 0}) == "n"
    assert param_of(CHAT, {"model": "m", "messages": MESSAGES, "stop": ["x"], "detokenize": False}) == "stop"
    assert param_of(CHAT, {"model": "m", "messages": MESSAGES, "top_logprobs": 2}) == "top_logprobs"
    assert param_of(CHAT, {"model": "m", "messages": MESSAGES, "stream_options": {"include_usage": True}}) == (
        "stream_options"
    )


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("hi", ["hi"]), ([1, 2], [[1, 2]]), (["a", "b"], ["a", "b"]), ([[1], [2, 3]], [[1], [2, 3]])],
)
def test_prompt_forms(prompt, expected):
    assert TEXT.load({"model": "m", "prompt": prompt})["prompt"] == expected


@pytest.mark.parametrize("prompt", [[], 5, [[]], [["a"]], None])
def test_bad_prompts(prompt):
    assert param_of(TEXT, {"model": "m", "prompt": prompt}) == "prompt"


def test_min_tokens_against_max_tokens_is_left_to_the_job_request():
    """Only app.job_requests knows the effective max_tokens (a default, or what the context leaves)."""
    assert CHAT.load({"model": "m", "messages": MESSAGES, "max_tokens": 2, "min_tokens": 3})["min_tokens"] == 3


@pytest.mark.parametrize(
    ("field", "at_limit", "over_limit"),
    [
        ("stop", ["s"] * MAX_STOP_SEQUENCES, ["s"] * (MAX_STOP_SEQUENCES + 1)),
        ("stop", "x" * MAX_STOP_CHARS, "x" * (MAX_STOP_CHARS + 1)),
        ("stop", ["a", "x" * MAX_STOP_CHARS], ["a", "x" * (MAX_STOP_CHARS + 1)]),
        ("stop_token_ids", [1] * MAX_STOP_TOKEN_IDS, [1] * (MAX_STOP_TOKEN_IDS + 1)),
        ("logit_bias", {str(i): 1 for i in range(MAX_LOGIT_BIAS)}, {str(i): 1 for i in range(MAX_LOGIT_BIAS + 1)}),
        ("bad_words", ["w"] * MAX_BAD_WORDS, ["w"] * (MAX_BAD_WORDS + 1)),
        ("bad_words", ["x" * MAX_STOP_CHARS], ["x" * (MAX_STOP_CHARS + 1)]),
        ("top_k", MAX_ENGINE_INT, MAX_ENGINE_INT + 1),
        ("stream_interval", MAX_ENGINE_INT, MAX_ENGINE_INT + 1),
    ],
)
def test_sizes_are_bounded(field, at_limit, over_limit):
    for schema, body in ((CHAT, {"messages": MESSAGES}), (TEXT, {"prompt": "p"})):
        schema.load({"model": "m", **body, field: at_limit})
        assert param_of(schema, {"model": "m", **body, field: over_limit}).split("[")[0] == field


@pytest.mark.parametrize(
    ("field", "value"),
    [("logit_bias", {"-1": 1}), ("logit_bias", {"²": 1}), ("stop_token_ids", [-1]), ("allowed_token_ids", [-5])],
)
def test_negative_or_non_ascii_token_ids_are_refused(field, value):
    assert param_of(TEXT, {"model": "m", "prompt": "p", field: value}).split("[")[0] == field
