"""The Responses API with the official openai SDK against gunicorn → Redis → worker → vLLM:
background create → queued → retrieve until completed; cancel frees the engine slot; the stream's
documented events (and the SDK's own stream helper); a resumed stream; another key's 404."""

from __future__ import annotations

import json
import time

import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

from app.auth.keys import KeyStore
from app.schemas.chat import ChatCompletionRequestSchema
from tasks.heartbeat import worker_loads
from tests.harness import CHAT_MODEL, wait_until

QUESTION = "What is the capital of France?"
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture()
def client(openai_client) -> OpenAI:
    return openai_client()


def engine_load(redis_server) -> int:
    return sum(load["requests"] for load in worker_loads(redis_server.client(), CHAT_MODEL).values())


def test_background_create_is_queued_then_retrieved_until_completed(client):
    created = client.responses.create(
        model=CHAT_MODEL, input=QUESTION, background=True, max_output_tokens=16, temperature=0
    )
    assert created.status == "queued" and created.background is True and created.id.startswith("resp_")
    assert created.output_text == ""
    seen = {created.status}

    def finished():
        response = client.responses.retrieve(created.id)
        seen.add(response.status)
        return response if response.status not in ("queued", "in_progress") else None

    done = wait_until(finished, 60, "the background response to complete", interval=0.05)
    assert done.status == "completed" and "Paris" in done.output_text
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    assert seen <= {"queued", "in_progress", "completed"}


def test_cancel_frees_the_engine_slot(client, redis_server):
    stream = client.responses.create(
        model=CHAT_MODEL,
        input="Tell me a long story.",
        background=True,
        stream=True,
        max_output_tokens=1500,
        extra_body={"ignore_eos": True, "seed": 1},
    )
    events = iter(stream)
    response_id = next(events).response.id
    next(event for event in events if event.type == "response.output_text.delta")  # generating
    stream.close()  # a background response runs on without its reader
    assert client.responses.retrieve(response_id).status == "in_progress"
    wait_until(lambda: engine_load(redis_server) >= 1, 10, "the worker's heartbeat to report the running request")
    cancelled_at = time.monotonic()
    cancelled = client.responses.cancel(response_id)
    assert cancelled.status == "cancelled"
    wait_until(lambda: engine_load(redis_server) == 0, 10, "the engine to drop the cancelled request", interval=0.1)
    assert time.monotonic() - cancelled_at < 10
    final = wait_until(lambda: (r := client.responses.retrieve(response_id)).usage and r, 30, "the billed usage")
    assert final.status == "cancelled" and 0 < final.usage.output_tokens < 1500


def test_stream_yields_the_documented_event_sequence(client):
    events = list(
        client.responses.create(model=CHAT_MODEL, input=QUESTION, stream=True, max_output_tokens=16, temperature=0)
    )
    kinds = [event.type for event in events]
    deduplicated = [kind for i, kind in enumerate(kinds) if i == 0 or kind != kinds[i - 1]]
    assert deduplicated == TEXT_EVENTS and kinds.count("response.output_text.delta") >= 2
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert events[-1].response.output_text == text and "Paris" in text
    # The SDK's stream helper rebuilds the response from the events and agrees.
    with client.responses.stream(model=CHAT_MODEL, input=QUESTION, max_output_tokens=16, temperature=0) as stream:
        for _event in stream:
            pass
        assert stream.get_final_response().output_text == text


def test_a_background_stream_resumes_with_starting_after(client):
    events = list(
        client.responses.create(model=CHAT_MODEL, input=QUESTION, stream=True, background=True, max_output_tokens=16)
    )
    response_id = events[0].response.id
    resumed = list(client.responses.retrieve(response_id, stream=True, starting_after=3))
    assert [e.sequence_number for e in resumed] == [e.sequence_number for e in events[4:]]
    assert [e.model_dump() for e in resumed[:-1]] == [e.model_dump() for e in events[4:-1]]
    assert resumed[-1].response.output_text == events[-1].response.output_text


def test_another_key_gets_404(client, api_server, redis_server):
    created = client.responses.create(model=CHAT_MODEL, input=QUESTION, background=True, max_output_tokens=4)
    other_key, _ = KeyStore(redis_server.client()).create(name="responses-e2e-other", rpm=1_000_000)
    other = OpenAI(base_url=api_server.url + "/v1", api_key=other_key, max_retries=0)
    for call in (other.responses.retrieve, other.responses.cancel, other.responses.delete):
        with pytest.raises(openai.NotFoundError):
            call(created.id)
    assert client.responses.retrieve(created.id).id == created.id  # still there for its owner
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


chat_fields = ChatCompletionRequestSchema().fields
needs_structured_chat = pytest.mark.skipif(
    "response_format" not in chat_fields or "ignored" in chat_fields["response_format"].metadata,
    reason="chat completions do not honour response_format yet",
)
needs_chat_tools = pytest.mark.skipif(
    "tools" not in chat_fields or "ignored" in chat_fields["tools"].metadata,
    reason="chat completions do not honour tools yet",
)


class Capital(BaseModel):
    country: str = Field(max_length=20)
    city: str = Field(max_length=20)


@needs_structured_chat
def test_parse_with_a_pydantic_text_format(client):
    parsed = client.responses.parse(
        model=CHAT_MODEL, input="The capital of France, as JSON.", text_format=Capital, max_output_tokens=60
    )
    assert parsed.status == "completed" and isinstance(parsed.output_parsed, Capital)


@needs_chat_tools
def test_a_named_function_tool_returns_a_function_call(client):
    tool = {
        "type": "function",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
    response = client.responses.create(
        model=CHAT_MODEL,
        input="What is the weather in Paris?",
        tools=[tool],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=60,
    )
    [call] = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id and set(json.loads(call.arguments)) == {"city"}
