"""Structured outputs and tool calls as real clients use them: the openai SDK's parse and tools, LangChain.

Each rate is measured over 30 prompts sent at once (the engine batches them),
at temperature 0.8 with distinct seeds, with bounded fields (maxLength,
maximum) so that a sample cannot run past max_tokens.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from tests.harness import CHAT_MODEL

RUNS = 30
SAMPLING = {"temperature": 0.8, "max_tokens": 60}


class Person(BaseModel):
    name: str = Field(max_length=20)
    age: int = Field(ge=0, le=120)


class Product(BaseModel):
    title: str = Field(max_length=30)
    price: float = Field(ge=0, le=10000)
    in_stock: bool


class Verdict(BaseModel):
    sentiment: str = Field(pattern="^(positive|negative|neutral)$")
    confidence: int = Field(ge=0, le=100)


MODELS = {
    Person: "Invent a person and give their name and age.",
    Product: "Describe a product for sale: its title, price and whether it is in stock.",
    Verdict: "Classify the sentiment of: 'I loved this film, it was wonderful.'",
}
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 20},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer", "maximum": 999}, "b": {"type": "integer", "maximum": 999}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": ADD}},
]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
CAPITAL = (
    'Give the capital of Italy as a JSON object with two keys, "city" and "country". Reply with the JSON object only.'
)
ASK = [{"role": "user", "content": "What is the weather in Paris for the next 3 days? And what is 2 + 3?"}]


def all_at_once(call: Callable[[int], Any]) -> list[Any]:
    """`call(seed)` for RUNS distinct seeds, concurrently (one engine batch)."""
    with concurrent.futures.ThreadPoolExecutor(RUNS) as pool:
        return list(pool.map(call, range(RUNS)))


def valid_calls(calls: list[tuple[str, str]]) -> bool:
    try:
        return bool(calls) and all(Draft202012Validator(SCHEMAS[n]).is_valid(json.loads(a)) for n, a in calls)
    except (KeyError, ValueError):
        return False


@pytest.mark.parametrize("model", list(MODELS), ids=lambda m: m.__name__)
def test_parse_returns_the_pydantic_object_30_of_30(openai_client, model):
    client = openai_client()

    def parse(seed: int):
        messages = [{"role": "user", "content": MODELS[model]}]
        reply = client.chat.completions.parse(
            model=CHAT_MODEL, messages=messages, response_format=model, seed=seed, **SAMPLING
        )
        return reply.choices[0].message.parsed, reply.choices[0].finish_reason

    results = all_at_once(parse)
    parsed = [value for value, reason in results if isinstance(value, model) and reason == "stop"]
    assert len(parsed) == RUNS, [reason for _value, reason in results]


def test_json_object_mode_returns_json_30_of_30(openai_client):
    client = openai_client()

    def ask(seed: int):
        # json_object bounds nothing: a prompt that names the keys keeps SmolLM2's objects short (at most 81
        # tokens over these seeds); a vaguer one lets 4 in 30 write one string until max_tokens.
        reply = client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": CAPITAL}],
            response_format={"type": "json_object"},
            seed=seed,
            **{**SAMPLING, "max_tokens": 120},
        )
        return reply.choices[0].message.content, reply.choices[0].finish_reason

    results = all_at_once(ask)
    objects = [text for text, reason in results if reason == "stop" and isinstance(json.loads(text), dict)]
    assert len(objects) == RUNS, results


def _calls_from_stream(stream) -> tuple[list[tuple[str, str]], str | None]:
    """Reassemble OpenAI's tool-call deltas by index, as the SDK's own helpers do."""
    names: dict[int, str] = {}
    arguments: dict[int, str] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        for call in choice.delta.tool_calls or []:
            if call.function and call.function.name:
                names[call.index] = call.function.name
            arguments[call.index] = arguments.get(call.index, "") + ((call.function and call.function.arguments) or "")
        finish = choice.finish_reason or finish
    return [(names[i], arguments[i]) for i in sorted(names)], finish


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("tool_choice", ["named", "required"])
def test_forced_tool_calls_validate_30_of_30(openai_client, tool_choice, stream):
    client = openai_client()
    choice = {"type": "function", "function": {"name": "get_weather"}} if tool_choice == "named" else "required"

    def ask(seed: int):
        # One call each: with parallel calls allowed SmolLM2 repeats calls until max_tokens in 6 of 30 samples.
        reply = client.chat.completions.create(
            model=CHAT_MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice=choice,
            parallel_tool_calls=False,
            seed=seed,
            stream=stream,
            **SAMPLING,
        )
        if stream:
            return _calls_from_stream(reply)
        answer = reply.choices[0]
        return [(c.function.name, c.function.arguments) for c in answer.message.tool_calls or []], answer.finish_reason

    results = all_at_once(ask)
    good = [calls for calls, finish in results if finish == "tool_calls" and valid_calls(calls)]
    assert len(good) == RUNS, results
    if tool_choice == "named":
        assert all(name == "get_weather" for calls in good for name, _args in calls)


def test_langchain_structured_output_and_a_forced_tool(api_server, api_key):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=CHAT_MODEL, base_url=api_server.url + "/v1", api_key=api_key, temperature=0.8, max_tokens=60, seed=1
    )
    person = llm.with_structured_output(Person).invoke("Invent a person and give their name and age.")
    assert isinstance(person, Person)

    @tool
    def get_weather(city: str, days: int) -> str:
        """The weather forecast for a city over some days."""
        return "sunny"

    message = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    assert isinstance(call["args"]["days"], int) and call["id"].startswith("call_")
