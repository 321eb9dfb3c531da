"""Structured outputs and tool calls without an engine: schema checks, tool grammar, the one decision, shapes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from jsonschema import Draft202012Validator
from marshmallow import ValidationError

from app.chat_messages import template_messages
from app.errors import validation_error
from app.job_requests import constraint, tool_spec
from app.schemas.chat import ChatCompletionRequestSchema
from app.schemas.completions import CompletionRequestSchema
from tasks.models import ModelSpec
from tasks.protocol.bodies import completion_body, stream_chunk
from tasks.protocol.errors import APIError
from tasks.protocol.requests import GenerationRequest, request_from_json
from tests.openai_spec import spec_errors
from workers.outputs import Choice, Delta, PromptResult, ToolCall
from workers.sampling import Sampling
from workers.structured import InvalidSchema, canonical, check_schema
from workers.tools import AUTO, NAMED, REQUIRED, Function, Tools, decide, decided, required_schema

MESSAGES = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "days": {"type": "integer", "maximum": 7}},
    "required": ["city", "days"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Forecast", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "ping"}},
]
SPEC = ModelSpec(id="m", path="/nowhere", tool_parser="hermes")


def load_chat(**body):
    return ChatCompletionRequestSchema().load({"messages": MESSAGES, **body})


def refusal(schema, body) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        schema().load(body)
    error = validation_error(info.value)
    return error.param, error.message


# -- schemas are checked by the engine's grammar library, at submit -------------------------------


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": "foo"}, "not valid under any of the given schemas"),
        ({"type": "string", "pattern": "[a-"}, "regex"),
        ({"type": "array", "uniqueItems": True}, "Unimplemented keys"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "does not exist"),
        ([1, 2], "must be a JSON schema object"),
    ],
)
def test_a_schema_the_engine_cannot_use_is_refused_with_its_reason(schema, reason):
    with pytest.raises(InvalidSchema, match=reason):
        check_schema(schema)


def test_a_schema_is_one_canonical_text_whatever_its_key_order():
    assert check_schema(WEATHER) == canonical(dict(reversed(list(WEATHER.items()))))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "json_object", "json_schema": {"name": "x"}}}, "response_format.json_schema"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "bad name", "schema": {}}}},
            "response_format.json_schema.name",
        ),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "string", "pattern": "("}}}
                ]
            },
            "tools[0].function.parameters",
        ),
        ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0].type"),
        ({"tools": TOOLS + TOOLS[:1]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities[1]"),
        ({"no_such_field": 1}, "no_such_field"),
    ],
)
def test_bad_structured_and_tool_fields_are_400s_naming_the_field(body, param):
    assert refusal(ChatCompletionRequestSchema, {"messages": MESSAGES, **body})[0] == param


def test_openai_fields_that_change_nothing_are_accepted_and_dropped():
    loaded = load_chat(
        store=True,
        metadata={"a": "b"},
        service_tier="auto",
        user="u",
        safety_identifier="s",
        prompt_cache_key="k",
        verbosity="low",
        modalities=["text"],
        prediction={"type": "content", "content": "x"},
        audio=None,
        parallel_tool_calls=False,
    )
    for dropped in ("safety_identifier", "prompt_cache_key", "verbosity", "modalities", "prediction", "audio"):
        assert dropped not in loaded
    assert loaded["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "tool", "content": "42"}, "messages[0].tool_call_id"),
        ({"role": "assistant", "content": None}, "messages[0].content"),
        ({"role": "user", "content": "x", "tool_call_id": "c"}, "messages[0].tool_call_id"),
        (
            {"role": "user", "content": "x", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
            "messages[0].tool_calls",
        ),
    ],
)
def test_tool_messages_are_checked(message, param):
    assert refusal(ChatCompletionRequestSchema, {"messages": [message]})[0] == param


def test_a_tool_conversation_is_accepted_as_the_sdks_echo_it():
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    loaded = load_chat(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None, "annotations": []},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        tools=TOOLS,
    )
    assert loaded["messages"][1]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_text_completions_take_response_format():
    body = {"prompt": "x", "response_format": {"type": "json_object"}}
    assert CompletionRequestSchema().load(body)["response_format"] == {"type": "json_object"}


# -- the request: which constraint the engine gets ---------------------------------------------------


def test_response_format_becomes_the_samplings_constraint():
    schema_format = {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER, "strict": True}}
    assert constraint(load_chat(response_format=schema_format), None) == {"json_schema": canonical(WEATHER)}
    assert constraint(load_chat(response_format={"type": "json_object"}), None) == {"json_object": True}
    assert constraint(load_chat(response_format={"type": "text"}), None) == {}


def test_a_named_choice_decodes_against_that_functions_parameters():
    data = load_chat(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    tools = tool_spec(SPEC, data)
    assert (tools.choice, tools.name) == (NAMED, "get_weather")
    assert json.loads(constraint(data, tools)["json_schema"]) == WEATHER


def test_required_decodes_against_an_array_of_calls_and_parallel_false_caps_it_at_one():
    tools = tool_spec(SPEC, load_chat(tools=TOOLS, tool_choice="required", parallel_tool_calls=False))
    schema = tools.constraint()
    assert schema["minItems"] == 1 and schema["maxItems"] == 1
    validator = Draft202012Validator(schema)
    assert validator.is_valid([{"name": "get_weather", "parameters": {"city": "Oslo", "days": 2}}])
    assert not validator.is_valid([{"name": "get_weather", "parameters": {"city": "Oslo", "days": 9}}])
    assert not validator.is_valid([{"name": "other", "parameters": {}}])
    assert validator.is_valid([{"name": "ping", "parameters": {}}])


def test_required_moves_each_functions_defs_to_the_root():
    nested = {
        "type": "object",
        "properties": {"place": {"$ref": "#/$defs/Place"}},
        "$defs": {"Place": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    schema = required_schema((Function("go", None, canonical(nested)),), True)
    assert "Place" in schema["$defs"] and "$defs" not in schema["items"]["anyOf"][0]["properties"]["parameters"]
    check_schema(schema)  # the references resolve


def test_auto_needs_a_tool_parser_and_none_offers_nothing():
    data = load_chat(tools=TOOLS)
    assert tool_spec(SPEC, data).choice == AUTO
    with pytest.raises(APIError) as info:
        tool_spec(replace(SPEC, tool_parser=None), data)
    assert info.value.param == "tool_choice" and info.value.status == 400 and "tool-call parser" in info.value.message
    assert tool_spec(SPEC, load_chat(tools=TOOLS, tool_choice="none")) is None
    assert tool_spec(SPEC, load_chat()) is None


def test_tools_and_constraints_travel_in_the_job_record():
    tools = tool_spec(SPEC, load_chat(tools=TOOLS, tool_choice="required"))
    request = GenerationRequest(
        endpoint="chat", model="m", created=1, prompts=[[1]], sampling=Sampling(json_schema="{}"), tools=tools
    )
    again = request_from_json(json.loads(json.dumps(request.to_json())))
    assert again == request and again.tools.functions[0].schema() == WEATHER


# -- the one decision: is this output a tool call ---------------------------------------------------


def forced(choice=REQUIRED, name=None, parallel=True):
    functions = tuple(
        Function(t["function"]["name"], None, canonical(t["function"].get("parameters") or {})) for t in TOOLS
    )
    return Tools(functions, choice, name, parallel, None)


def no_tokenizer():
    raise AssertionError("only auto needs the tokenizer")


def test_a_named_output_is_the_calls_arguments():
    choice = Choice(0, '{"city":"Oslo","days":2}', [1, 2], "stop")
    decide(forced(NAMED, "get_weather"), choice, no_tokenizer)
    assert choice.finish_reason == "tool_calls" and choice.text == ""
    (call,) = choice.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo", "days": 2}
    assert call.id.startswith("call_") and len(call.id) == 29


def test_a_required_output_becomes_one_call_per_item():
    text = '[{"name":"get_weather","parameters":{"city":"Oslo","days":2}},{"name":"ping","parameters":{}}]'
    choice = Choice(0, text, [1], "stop")
    decide(forced(), choice, no_tokenizer)
    assert [(c.name, json.loads(c.arguments)) for c in choice.tool_calls] == [
        ("get_weather", {"city": "Oslo", "days": 2}),
        ("ping", {}),
    ]
    assert len({c.id for c in choice.tool_calls}) == 2


def test_a_cut_output_keeps_length():
    named = Choice(0, '{"city":"Os', [1], "length")
    decide(forced(NAMED, "get_weather"), named, no_tokenizer)
    assert named.finish_reason == "length" and named.tool_calls[0].arguments == '{"city":"Os'
    required = Choice(0, '[{"name":"ping"', [1], "length")
    decide(forced(), required, no_tokenizer)
    assert required.finish_reason == "length" and required.tool_calls is None and required.text == '[{"name":"ping"'


def test_an_aborted_output_is_left_alone():
    choice = Choice(0, "{", [1], "abort")
    decide(forced(NAMED, "ping"), choice, no_tokenizer)
    assert choice.tool_calls is None


def test_a_tool_requests_stream_is_held_until_each_sample_ends():
    engine = iter(
        [
            Delta(0, Choice(0, '{"city":', [1])),
            Delta(0, Choice(1, "{}", [5], "stop")),
            Delta(0, Choice(0, '"Oslo","days":1}', [2, 3], "stop")),
        ]
    )
    out = list(decided(forced(NAMED, "get_weather"), engine, no_tokenizer))
    assert [(d.choice.index, d.choice.finish_reason) for d in out] == [(1, "tool_calls"), (0, "tool_calls")]
    assert out[1].choice.tool_calls[0].arguments == '{"city":"Oslo","days":1}' and out[1].choice.token_ids == [1, 2, 3]


def test_a_plain_requests_stream_passes_through_and_closing_reaches_the_engine():
    closed = []

    def engine():
        try:
            yield Delta(0, Choice(0, "a", [1]))
            yield Delta(0, Choice(0, "b", [2], "stop"))
        finally:
            closed.append(True)

    stream = decided(None, engine(), no_tokenizer)
    assert next(stream).choice.text == "a"
    stream.close()
    assert closed == [True]


# -- the shapes: OpenAI's message.tool_calls and delta.tool_calls -----------------------------------


def test_a_tool_call_answer_has_null_content_and_the_calls():
    call = ToolCall("call_1", "get_weather", '{"city":"Oslo"}')
    request = GenerationRequest(endpoint="chat", model="m", created=1, prompts=[[1]], tools=forced(NAMED, "x"))
    choice = Choice(0, "", [1, 2], "tool_calls", tool_calls=[call])
    body = completion_body("job_1", request, [PromptResult(1, [choice])], 2)
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
        ],
    }
    chunk = stream_chunk("job_1", request, 0, Choice.from_json(json.loads(json.dumps(choice.to_json()))), True)
    delta = chunk["choices"][0]["delta"]
    assert delta["role"] == "assistant" and delta["content"] is None
    assert delta["tool_calls"] == [{"index": 0, **body["choices"][0]["message"]["tool_calls"][0]}]
    assert spec_errors(body, "CreateChatCompletionResponse") == []
    assert spec_errors(chunk, "CreateChatCompletionStreamResponse") == []


# -- the conversation the template sees ------------------------------------------------------------


CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
HISTORY = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


def test_a_template_that_knows_tools_gets_them_as_transformers_passes_them():
    messages, tools = template_messages(HISTORY, TOOLS, knows_tools=True, system_ok=True)
    assert tools == TOOLS
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Oslo"}  # parsed, as templates expect
    assert messages[2] == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}


def test_a_template_without_tools_gets_them_written_hermes_style():
    messages, tools = template_messages(HISTORY, TOOLS, knows_tools=False, system_ok=True)
    assert tools is None
    assert (
        messages[0]["role"] == "system"
        and "<tools>" in messages[0]["content"]
        and "get_weather" in messages[0]["content"]
    )
    assert messages[2]["content"] == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert messages[3] == {"role": "user", "content": "<tool_response>\nsunny\n</tool_response>"}
    no_system, _ = template_messages(HISTORY[:1], TOOLS, knows_tools=False, system_ok=False)
    assert no_system[0]["role"] == "user" and no_system[0]["content"].endswith("Weather in Oslo?")
    assert all(m["content"] is not None for m in template_messages(HISTORY, None, knows_tools=False, system_ok=True)[0])


def test_samples_held_when_the_engine_stops_are_left_for_billing():
    class TimedOut(Exception):
        pass

    def engine():
        yield Delta(0, Choice(0, '{"city":', [1, 2]))
        raise TimedOut

    held = {}
    with pytest.raises(TimedOut):
        list(decided(forced(NAMED, "get_weather"), engine(), no_tokenizer, held))
    assert [choice.token_ids for choice in held.values()] == [[1, 2]]
