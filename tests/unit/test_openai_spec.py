"""The spec validator itself: OpenAI's own documented bodies pass, known deviations fail.

The e2e conformance tests trust `tests/openai_spec.py`; these show it can
both accept what OpenAI sends and catch what a server gets wrong.
"""

import copy

import pytest

from tests.openai_spec import SPEC_EXCEPTIONS, source, spec_errors

# Bodies copied from the examples in OpenAI's openapi.json (x-oaiMeta), trimmed of nothing that matters.
OPENAI_CHAT = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The image shows...", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163},
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}
OPENAI_CHUNKS = [
    {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
    }
    for delta, reason in (({"role": "assistant", "content": ""}, None), ({"content": "Hello"}, None), ({}, "stop"))
]
OPENAI_COMPLETION = {
    "id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7",
    "object": "text_completion",
    "created": 1589478378,
    "model": "gpt-4-turbo",
    "choices": [{"text": "\n\nThis is indeed a test", "index": 0, "logprobs": None, "finish_reason": "length"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}
OPENAI_MODEL = {"id": "gpt-4o", "object": "model", "created": 1686935002, "owned_by": "openai"}
ERROR = {
    "error": {
        "message": "Incorrect API key provided.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}


def test_fixture_names_its_source():
    origin = source()
    assert origin["repository"].endswith("openai/openai-openapi") and len(origin["commit"]) == 40


@pytest.mark.parametrize(
    ("body", "component"),
    [
        (OPENAI_CHAT, "CreateChatCompletionResponse"),
        *((chunk, "CreateChatCompletionStreamResponse") for chunk in OPENAI_CHUNKS),
        (OPENAI_COMPLETION, "CreateCompletionResponse"),
        (OPENAI_MODEL, "Model"),
        ({"object": "list", "data": [OPENAI_MODEL]}, "ListModelsResponse"),
        (ERROR, "ErrorResponse"),
    ],
)
def test_openai_documented_bodies_conform(body, component):
    assert spec_errors(body, component) == []


def broken(body, path, value):
    """A copy of `body` with the value at `path` replaced (or removed when `value` is ...)."""
    body = copy.deepcopy(body)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "component", "expected"),
    [
        (broken(OPENAI_CHAT, ("choices", 0, "message", "refusal"), ...), "CreateChatCompletionResponse", "refusal"),
        (broken(OPENAI_CHAT, ("system_fingerprint",), None), "CreateChatCompletionResponse", "system_fingerprint"),
        (
            broken(OPENAI_CHAT, ("choices", 0, "logprobs"), {"content": []}),
            "CreateChatCompletionResponse",
            "choices/0/logprobs",
        ),
        (broken(OPENAI_CHUNKS[1], ("object",), "chat.completion"), "CreateChatCompletionStreamResponse", "object"),
        (broken(OPENAI_COMPLETION, ("choices", 0, "text"), ...), "CreateCompletionResponse", "text"),
        (broken(OPENAI_MODEL, ("created",), "today"), "Model", "created"),
        (broken(ERROR, ("error", "param"), ...), "ErrorResponse", "param"),
    ],
)
def test_deviations_are_reported_with_their_place(body, component, expected):
    errors = spec_errors(body, component)
    assert errors and any(expected in line for line in errors), errors


def _logprobs(token_logprobs, top_logprobs):
    return {"tokens": ["a", "b"], "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": [0, 1]}


EMBEDDINGS = {
    "object": "list",
    "model": "m",
    "data": [{"object": "embedding", "index": 0, "embedding": "AACAPw=="}],
    "usage": {"prompt_tokens": 1, "total_tokens": 1},
}
# One body per entry of SPEC_EXCEPTIONS, in order: what OpenAI sends that the raw description refuses.
NEEDS_EXCEPTION = [
    (EMBEDDINGS, "CreateEmbeddingResponse"),
    (broken(OPENAI_COMPLETION, ("choices", 0, "finish_reason"), None), "CreateCompletionResponse"),
    (broken(OPENAI_COMPLETION, ("usage",), None), "CreateCompletionResponse"),
    (
        broken(OPENAI_COMPLETION, ("choices", 0, "logprobs"), _logprobs([None, -0.5], [{"a": -1.0}, {"b": -0.5}])),
        "CreateCompletionResponse",
    ),
    (
        broken(OPENAI_COMPLETION, ("choices", 0, "logprobs"), _logprobs([-1.0, -0.5], [None, {"b": -0.5}])),
        "CreateCompletionResponse",
    ),
]


@pytest.mark.parametrize("index", range(len(SPEC_EXCEPTIONS)))
def test_each_exception_is_needed_and_enough(index):
    assert len(NEEDS_EXCEPTION) == len(SPEC_EXCEPTIONS)
    body, component = NEEDS_EXCEPTION[index]
    assert spec_errors(body, component) == []
    assert spec_errors(body, component, with_exceptions=False), "the raw description already accepts this"


def test_exceptions_widen_only_their_spot():
    """A number is still not a finish reason, a dict still not an embedding, a string still not a logprob."""
    completion = NEEDS_EXCEPTION[1][0]
    assert spec_errors(broken(completion, ("choices", 0, "finish_reason"), 3), "CreateCompletionResponse")
    assert spec_errors(broken(EMBEDDINGS, ("data", 0, "embedding"), {}), "CreateEmbeddingResponse")
    bad = broken(OPENAI_COMPLETION, ("choices", 0, "logprobs"), _logprobs(["x", -0.5], [None, None]))
    assert spec_errors(bad, "CreateCompletionResponse")


def test_unknown_component_is_an_error():
    with pytest.raises(KeyError):
        spec_errors({}, "NoSuchComponent")
