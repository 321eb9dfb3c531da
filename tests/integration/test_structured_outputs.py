"""Structured outputs and tool calls through the API, the queue and the real engine's constrained decoding.

Fields are bounded (maxLength, maximum) so a sample cannot run past
max_tokens: an unbounded integer on SmolLM2 runs to tens of digits.
"""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from tests.harness import CHAT_MODEL

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "age"],
}
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast", "parameters": WEATHER}},
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer", "maximum": 999}, "b": {"type": "integer", "maximum": 999}},
                "required": ["a", "b"],
            },
        },
    },
]
ASK = [{"role": "user", "content": "What is the weather in Paris for the next 3 days?"}]


def post(client, path="/v1/chat/completions", **body):
    return client.post(path, json={"model": CHAT_MODEL, **body})


def ok(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def schema_format(schema: dict, name: str = "answer") -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def chunks(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    lines = response.get_data(as_text=True).split("\n")  # the queue's route puts an `id:` line before each
    return [json.loads(line[6:]) for line in lines if line.startswith("data: {")]


def test_json_schema_output_matches_the_schema(client):
    messages = [{"role": "user", "content": "Invent a person. Reply in JSON with name and age."}]
    body = ok(
        post(
            client,
            messages=messages,
            response_format=schema_format(PERSON),
            temperature=0.8,
            seed=7,
            n=3,
            max_tokens=40,
        )
    )
    for choice in body["choices"]:
        assert choice["finish_reason"] == "stop"
        Draft202012Validator(PERSON).validate(json.loads(choice["message"]["content"]))


def test_json_object_output_is_a_json_object(client):
    messages = [{"role": "user", "content": "Give a JSON object describing a cat."}]
    body = ok(post(client, messages=messages, response_format={"type": "json_object"}, temperature=0, max_tokens=60))
    choice = body["choices"][0]
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"]), dict)
    assert choice["message"]["content"].startswith("{")


def test_text_completions_are_constrained_too(client):
    body = ok(
        post(
            client,
            "/v1/completions",
            prompt="A person:",
            response_format=schema_format(PERSON),
            temperature=0,
            max_tokens=40,
        )
    )
    Draft202012Validator(PERSON).validate(json.loads(body["choices"][0]["text"]))


def test_a_json_output_cut_by_max_tokens_says_length(client):
    unbounded = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    messages = [{"role": "user", "content": "Write a very large number."}]
    body = ok(post(client, messages=messages, response_format=schema_format(unbounded), max_tokens=4, temperature=0))
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 4


def test_an_invalid_schema_is_a_400_at_submit(client):
    bad = {"type": "object", "properties": {"code": {"type": "string", "pattern": "[A-Z"}}}
    response = post(client, messages=ASK, response_format=schema_format(bad))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["param"] == "response_format.json_schema.schema" and "regex" in error["message"]


def test_a_named_tool_choice_returns_that_call(client):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    body = ok(post(client, messages=ASK, tools=TOOLS, tool_choice=choice, temperature=0.8, seed=3, max_tokens=40))
    answer = body["choices"][0]
    assert answer["finish_reason"] == "tool_calls" and answer["message"]["content"] is None
    (call,) = answer["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_") and call["function"]["name"] == "get_weather"
    Draft202012Validator(WEATHER).validate(json.loads(call["function"]["arguments"]))


def test_required_returns_calls_of_the_offered_functions(client):
    messages = [{"role": "user", "content": "Add 2 and 3."}]
    body = ok(
        post(
            client,
            messages=messages,
            tools=TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            temperature=0,
            max_tokens=60,
        )
    )
    answer = body["choices"][0]
    assert answer["finish_reason"] == "tool_calls"
    (call,) = answer["message"]["tool_calls"]
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}
    Draft202012Validator(schemas[call["function"]["name"]]).validate(json.loads(call["function"]["arguments"]))


def test_a_streamed_tool_call_arrives_as_openais_tool_call_deltas(client):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    events = chunks(
        post(client, messages=ASK, tools=TOOLS, tool_choice=choice, stream=True, temperature=0, max_tokens=40)
    )
    deltas = [event["choices"][0]["delta"] for event in events]
    assert deltas[0]["role"] == "assistant"
    calls = [call for delta in deltas for call in delta.get("tool_calls") or []]
    assert calls and all(call["index"] == 0 for call in calls)
    assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(call["function"]["arguments"] for call in calls)
    Draft202012Validator(WEATHER).validate(json.loads(arguments))
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any(delta.get("content") for delta in deltas)


def test_a_queued_tool_job_replays_its_calls_on_the_stream(client):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    submitted = post(
        client, "/queue/chat/completions", messages=ASK, tools=TOOLS, tool_choice=choice, temperature=0, max_tokens=40
    )
    assert submitted.status_code == 202, submitted.get_data(as_text=True)
    job_id = submitted.get_json()["id"]
    events = chunks(client.get(f"/queue/jobs/{job_id}/stream"))
    result = client.get(f"/queue/jobs/{job_id}").get_json()["result"]
    streamed = events[0]["choices"][0]["delta"]["tool_calls"]
    assert [{k: v for k, v in call.items() if k != "index"} for call in streamed] == (
        result["choices"][0]["message"]["tool_calls"]
    )


def test_a_conversation_with_tool_results_renders_and_continues(client):
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 3}'},
    }
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"forecast": "sunny, 24 C"}'},
    ]
    body = ok(post(client, messages=history, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=20))
    assert body["choices"][0]["message"]["content"] and "tool_calls" not in body["choices"][0]["message"]
    counted = ok(client.post("/v1/utils/token_counter", json={"model": CHAT_MODEL, "messages": history}))
    assert counted["total_tokens"] == body["usage"]["prompt_tokens"]


def test_auto_runs_the_models_tool_parser(client):
    body = ok(post(client, messages=ASK, tools=TOOLS, temperature=0, max_tokens=40))
    answer = body["choices"][0]
    if answer["finish_reason"] == "tool_calls":  # SmolLM2 seldom calls on its own; either answer is well-formed
        assert answer["message"]["tool_calls"][0]["function"]["name"] in {"get_weather", "add"}
    else:
        assert isinstance(answer["message"]["content"], str) and "tool_calls" not in answer["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_constrained_and_free_requests_batch_together(client, stream):
    """A constrained request beside free ones: each gets its own grammar (or none) in the same engine."""
    import concurrent.futures

    def one(i: int):
        body = {"messages": ASK, "max_tokens": 30, "temperature": 0.8, "seed": i, "stream": stream}
        if i % 2:
            body["response_format"] = schema_format(WEATHER)
        response = post(client, **body)
        if stream:
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks(response) if c["choices"])
        else:
            text = ok(response)["choices"][0]["message"]["content"]
        return i, text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for i, text in pool.map(one, range(8)):
            if i % 2:
                Draft202012Validator(WEATHER).validate(json.loads(text))


def test_auto_reads_calls_with_the_models_vllm_parser():
    """The decision under `auto`, on vLLM's own hermes parser and the model's tokenizer (no engine needed)."""
    pytest.importorskip("vllm")
    from transformers import AutoTokenizer

    from tasks.settings import Settings
    from workers.outputs import Choice
    from workers.structured import canonical
    from workers.tools import AUTO, Function, Tools, decide

    tokenizer = AutoTokenizer.from_pretrained(Settings.load().models[CHAT_MODEL].tokenizer_path)
    tools = Tools((Function("get_weather", None, canonical(WEATHER)),), AUTO, None, True, "hermes")
    text = 'Let me check.<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}\n</tool_call>'
    called = Choice(0, text, [1, 2], "stop")
    decide(tools, called, lambda: tokenizer)
    assert called.finish_reason == "tool_calls" and called.text == "Let me check."
    (call,) = called.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris", "days": 3}
    plain = Choice(0, "It will be sunny.", [1], "stop")
    decide(tools, plain, lambda: tokenizer)
    assert plain.tool_calls is None and plain.finish_reason == "stop" and plain.text == "It will be sunny."
