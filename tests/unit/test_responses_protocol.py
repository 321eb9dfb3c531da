"""The Responses API's protocol: a Responses body translated to chat, a job record rendered as OpenAI's
Response object (checked against the openai SDK's own types, strictly), and the stream's numbered events."""

from __future__ import annotations

import json

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from app.response_events import EventWriter
from tasks.jobs import Job
from tasks.protocol.errors import InvalidRequest
from tasks.protocol.response_objects import ResponseRecord, render
from tasks.protocol.responses import ResponseParams, job_id, response_id, translate

CHAT_BODY = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}
CALLS = [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
]
TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": True}
events_adapter = TypeAdapter(ResponseStreamEvent)


def body(**extra):
    return {"model": "m", "input": "Hi", "stream": False, "background": False, "priority": 5, **extra}


def record(status="completed", result=CHAT_BODY, error=None) -> ResponseRecord:
    return ResponseRecord("job_abc", "m", status, 100.0, ResponseParams(), 101.0, result, error, CHAT_BODY["usage"])


def with_message(content, reason="stop", calls=None):
    message = {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}
    return {**CHAT_BODY, "choices": [{"index": 0, "message": message, "finish_reason": reason}]}


def test_ids_map_one_to_one_to_jobs():
    assert response_id("job_0f") == "resp_0f" and job_id("resp_0f") == "job_0f"
    assert job_id("job_0f") is None and job_id("chatcmpl-0f") is None


def test_a_string_input_with_instructions_is_a_system_and_a_user_message():
    translation = translate(body(instructions="Be brief.", max_output_tokens=5, temperature=0.2, seed=3))
    assert translation.chat == {
        "model": "m",
        "temperature": 0.2,
        "stream": False,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "seed": 3,
        "max_tokens": 5,
    }
    assert translation.origins == ["instructions", "input"]
    assert translation.params.instructions == "Be brief." and translation.params.max_output_tokens == 5


def test_input_items_become_messages_and_function_calls_tool_messages():
    items = [
        {"role": "developer", "content": "Use tools."},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Weather "}, {"type": "input_text", "text": "and time?"}],
        },
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Sunny."}]},
    ]
    translation = translate(body(input=items))
    messages = translation.chat["messages"]
    assert [m["role"] for m in messages] == ["developer", "user", "assistant", "tool", "assistant"]
    assert messages[1]["content"] == "Weather and time?"
    assert [call["id"] for call in messages[2]["tool_calls"]] == ["c1", "c2"]  # parallel calls: one turn
    assert messages[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": "{}"}
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    # A chat error's param names the input item the message came from.
    assert translation.param("messages[2].tool_calls") == "input[2]"
    assert translation.param("messages[4].content") == "input[5]"
    assert translation.param("max_tokens") == "max_output_tokens"
    assert translation.param("response_format.json_schema") == "text.format"


def test_text_format_and_tools_take_chat_shapes():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    translation = translate(
        body(text={"format": fmt}, tools=[TOOL], tool_choice={"type": "function", "name": "get_weather"}, stream=True)
    )
    chat = translation.chat
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    assert chat["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}, "strict": True}}
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["stream"] is False  # tool calls are parsed from the whole answer
    assert translate(body(text={"format": {"type": "json_object"}}, tool_choice="required")).chat[
        "response_format"
    ] == {"type": "json_object"}
    assert "response_format" not in translate(body(text={"format": {"type": "text"}})).chat
    assert translation.params.tools == [TOOL] and translation.params.text["format"] == fmt  # echoed as sent


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0]"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments"),
        ({"input": ["text"]}, "input[0]"),
        ({"tools": [{"type": "file_search"}]}, "tools[0].type"),
    ],
)
def test_what_cannot_be_served_is_refused_by_its_parameter(extra, param):
    with pytest.raises(InvalidRequest) as caught:
        translate(body(**extra))
    assert caught.value.param == param


def test_params_round_trip_and_fill_openai_defaults():
    params = ResponseParams.of(
        {"metadata": {"a": "b"}, "temperature": None, "text": {"verbosity": "low"}, "model": "m"}
    )
    assert params.temperature == 1.0 and params.metadata == {"a": "b"} and params.store is True
    assert params.text == {"format": {"type": "text"}, "verbosity": "low"}
    assert ResponseParams.from_json(json.loads(json.dumps(params.to_json()))) == params


def test_a_completed_record_is_the_sdks_response_with_its_output_text():
    obj = render(record())
    sdk = Response.model_validate(obj, strict=True)
    assert sdk.output_text == "Paris." and sdk.status == "completed"  # output_text: the SDK's own property
    assert obj["id"] == "resp_abc" and obj["output"][0]["id"] == "msg_abc"
    assert obj["usage"] == {
        "input_tokens": 7,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10,
    }
    assert "output_text" not in obj


def test_a_length_cut_is_incomplete():
    obj = render(record(result=with_message("Par", "length")))
    Response.model_validate(obj, strict=True)
    assert obj["status"] == "incomplete" and obj["incomplete_details"] == {"reason": "max_output_tokens"}
    assert obj["output"][0]["status"] == "incomplete"


def test_tool_calls_are_function_call_items():
    obj = render(record(result=with_message(None, "tool_calls", CALLS)))
    Response.model_validate(obj, strict=True)
    assert [item["type"] for item in obj["output"]] == ["function_call", "function_call"]
    assert obj["output"][0] | {"id": None} == {
        "id": None,
        "type": "function_call",
        "status": "completed",
        "arguments": '{"city":"Paris"}',
        "call_id": "call_1",
        "name": "get_weather",
    }


@pytest.mark.parametrize(
    ("status", "error", "shown", "code"),
    [
        ("failed", {"error": {"message": "Stopped.", "code": "time_limit_exceeded"}}, "failed", "server_error"),
        ("failed", {"error": {"message": "Busy.", "code": "rate_limit_exceeded"}}, "failed", "rate_limit_exceeded"),
        ("expired", None, "failed", "server_error"),
        ("cancelled", None, "cancelled", None),
        ("queued", None, "queued", None),
        ("in_progress", None, "in_progress", None),
    ],
)
def test_every_job_status_is_a_response_status(status, error, shown, code):
    obj = render(record(status, result=None, error=error))
    Response.model_validate(obj, strict=True)
    assert obj["status"] == shown and obj["output"] == []
    assert (obj["error"] or {}).get("code") == code
    assert obj["usage"] is None if status in ("queued", "in_progress") else obj["usage"]["total_tokens"] == 10


def job(status="completed", result=CHAT_BODY, meta=None) -> Job:
    return Job(
        "job_abc", "owner", "m", status, None, created_at=100.0, result=result, usage=CHAT_BODY["usage"], meta=meta
    )


def parse(text: str) -> list[dict]:
    events = []
    for block in filter(None, text.split("\n\n")):
        kind, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {event['type']}"
        events_adapter.validate_python(event)  # one of the SDK's stream event types
        events.append(event)
    return events


def stream(writer: EventWriter, deltas: list[str], ended: Job) -> list[dict]:
    text = "".join(writer.opening())
    for delta in deltas:
        text += "".join(writer.delta(delta))
    return parse(text + "".join(writer.ending(ended)))


def test_stream_events_are_numbered_and_a_resumed_reader_gets_the_same_tail():
    full = stream(EventWriter(job("in_progress"), None), ["Par", "is."], job(result=with_message("Paris.")))
    assert [e["sequence_number"] for e in full] == list(range(len(full)))
    assert [e["type"] for e in full][4:7] == ["response.output_text.delta"] * 2 + ["response.output_text.done"]
    assert full[6]["text"] == "Paris." and full[-1]["type"] == "response.completed"
    resumed = stream(EventWriter(job("in_progress"), 4), ["Par", "is."], job(result=with_message("Paris.")))
    assert resumed == full[5:]


def test_a_job_that_streamed_nothing_sends_its_text_as_one_delta_then_its_calls():
    events = stream(
        EventWriter(job("queued", meta={"background": True}), None),
        [],
        job(result=with_message("On it.", "tool_calls", CALLS)),
    )
    kinds = [e["type"] for e in events]
    assert events[0]["response"]["status"] == "queued"
    assert kinds[2:9] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    assert kinds[9:12] == [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert events[10]["arguments"] == '{"city":"Paris"}' and events[10]["output_index"] == 1
    assert events[-1]["type"] == "response.completed" and len(events[-1]["response"]["output"]) == 3


def test_a_failed_or_cancelled_job_ends_with_response_failed():
    failed = job("failed", result=None)
    failed.error = {"error": {"message": "boom", "code": "engine_failed"}}
    events = stream(EventWriter(job("in_progress"), None), ["a"], failed)
    assert (
        events[-1]["type"] == "response.failed" and events[-1]["response"]["error"]["message"] == "engine_failed: boom"
    )
    cancelled = stream(EventWriter(job("in_progress"), None), [], job("cancelled", result=None))
    assert cancelled[-1]["type"] == "response.failed" and cancelled[-1]["response"]["status"] == "cancelled"


def test_a_stream_that_breaks_ends_with_a_numbered_error_event():
    from tasks.protocol.errors import ServerError

    writer = EventWriter(job("in_progress"), None)
    text = "".join(writer.opening()) + "".join(writer.error(ServerError("The stream failed.")))
    error = parse(text)[-1]
    assert error == {
        "type": "error",
        "code": "server_error",
        "message": "The stream failed.",
        "param": None,
        "sequence_number": 2,
    }
