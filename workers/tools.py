"""Tool calls: what a request offers, the grammar that forces a call, and the one decision "is this a call".

`Tools` is built once in the API from `tools`/`tool_choice`/`parallel_tool_calls`
and travels in the job's request. `required` and a named function are
guaranteed by constrained decoding: `constraint()` is the JSON schema the
engine decodes against (an array of `{name, parameters}` for `required`, the
function's own parameter schema for a named one), so their output is a call
by construction. `auto` leaves the model free and asks the model's tool-call
parser (vLLM's, named by `tool_parser` in the models file) whether it called.

`decide` is the only place an output becomes tool calls, for non-streamed and
streamed jobs alike (`decided` holds a tool request's deltas until each sample
ends, then emits it whole, calls included). It runs in the worker; vLLM is
imported only for `auto`, lazily.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from workers.outputs import Choice, Delta, ToolCall

NONE, AUTO, REQUIRED, NAMED = "none", "auto", "required", "named"
CHOICES = (NONE, AUTO, REQUIRED, NAMED)
#: A function with no parameters still takes a JSON object.
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def call_id() -> str:
    """An id like OpenAI's (`call_` and 24 characters), unique per call."""
    return "call_" + secrets.token_hex(12)


@dataclass(frozen=True)
class Function:
    """One function the model may call; `parameters` is its JSON schema as JSON text (None: no parameters)."""

    name: str
    description: str | None = None
    parameters: str | None = None

    def schema(self) -> dict[str, Any]:
        return json.loads(self.parameters) if self.parameters else dict(EMPTY_PARAMETERS)

    def to_openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            function["description"] = self.description
        function["parameters"] = self.schema()
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class Tools:
    """The functions a chat request offers and how the model must use them."""

    functions: tuple[Function, ...]
    choice: str = AUTO
    #: The function a `named` choice forces.
    name: str | None = None
    #: False: at most one call (`required` is then an array of one).
    parallel: bool = True
    #: The model's tool-call parser for `auto` (tasks.models.ModelSpec.tool_parser).
    parser: str | None = None

    def function(self, name: str) -> Function | None:
        return next((f for f in self.functions if f.name == name), None)

    def constraint(self) -> dict[str, Any] | None:
        """The JSON schema the output must match, or None when the model is free (`auto`, `none`)."""
        if self.choice == NAMED:
            function = self.function(self.name or "")
            return function.schema() if function else None
        if self.choice == REQUIRED:
            return required_schema(self.functions, self.parallel)
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "functions": [[f.name, f.description, f.parameters] for f in self.functions],
            "choice": self.choice,
            "name": self.name,
            "parallel": self.parallel,
            "parser": self.parser,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tools:
        functions = tuple(Function(*entry) for entry in data["functions"])
        return cls(functions, data["choice"], data["name"], data["parallel"], data["parser"])


def required_schema(functions: tuple[Function, ...], parallel: bool) -> dict[str, Any]:
    """`[{"name": ..., "parameters": {...}}, ...]`, one item per call, as vLLM builds it.

    Each function's `$defs` move to the root, where their `#/$defs/...` references point.
    """
    defs: dict[str, Any] = {}
    items = []
    for function in functions:
        params = copy.deepcopy(function.schema())
        for key, value in (params.pop("$defs", None) or {}).items():
            if key in defs and defs[key] != value:
                raise ValueError(f"two functions define `$defs/{key}` differently")
            defs[key] = value
        items.append(
            {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": [function.name]}, "parameters": params},
                "required": ["name", "parameters"],
            }
        )
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": items}}
    if not parallel:
        schema["maxItems"] = 1
    if defs:
        schema["$defs"] = defs
    return schema


def _required_calls(text: str) -> list[ToolCall] | None:
    try:
        items = json.loads(text)
        return [
            ToolCall(call_id(), item["name"], json.dumps(item["parameters"], ensure_ascii=False, separators=(",", ":")))
            for item in items
        ]
    except (ValueError, TypeError, KeyError):
        return None  # cut by max_tokens: not a whole call


def _auto_calls(tools: Tools, text: str, tokenizer: Any) -> tuple[str | None, list[ToolCall]] | None:
    """vLLM's parser for this model: the content beside the calls and the calls, or None if it made none."""
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.tool_parsers.abstract_tool_parser import ToolParserManager

    request = ChatCompletionRequest(
        model="inferq",
        messages=[{"role": "user", "content": ""}],
        tools=[function.to_openai() for function in tools.functions],
        tool_choice="auto",
    )
    parser = ToolParserManager.get_tool_parser(tools.parser or "")(tokenizer, request.tools)
    info = parser.extract_tool_calls(text, request)
    if not info.tools_called or not info.tool_calls:
        return None
    calls = [ToolCall(call_id(), call.function.name, call.function.arguments) for call in info.tool_calls]
    return info.content, calls


def decide(tools: Tools | None, choice: Choice, tokenizer: Callable[[], Any]) -> None:
    """Turn a finished sample into tool calls where it is one; `finish_reason` becomes `tool_calls`.

    A sample cut by max_tokens keeps `length`: a named call carries its cut
    arguments (as OpenAI's does); a cut `required` array, being no call yet,
    stays text. An aborted sample is left alone.
    """
    if tools is None or tools.choice == NONE or choice.finish_reason not in ("stop", "length"):
        return
    cut = choice.finish_reason == "length"
    content: str | None = None
    if tools.choice == NAMED:
        calls: list[ToolCall] | None = [ToolCall(call_id(), tools.name or "", choice.text)]
    elif tools.choice == REQUIRED:
        calls = _required_calls(choice.text)
    else:
        found = _auto_calls(tools, choice.text, tokenizer())
        content, calls = found if found else (None, None)
    if not calls:
        return
    choice.text = content or ""
    choice.tool_calls = calls
    if not cut:
        choice.finish_reason = "tool_calls"


def decided(
    tools: Tools | None,
    deltas: Iterator[Delta],
    tokenizer: Callable[[], Any],
    held: dict[tuple[int, int], Choice] | None = None,
) -> Iterator[Delta]:
    """The engine's deltas, with every sample of a tool request held back and emitted once, decided.

    A plain request's deltas pass through. `held` (the caller's, if given) holds
    the unfinished samples, so a job stopped by its time limit bills them too.
    Closing this closes `deltas` (which aborts the engine's requests).
    """
    held = {} if held is None else held
    try:
        if tools is None or tools.choice == NONE:
            yield from deltas
            return
        for delta in deltas:
            key = (delta.prompt_index, delta.choice.index)
            whole = held.setdefault(key, Choice(delta.choice.index))
            whole.extend(delta.choice)
            if delta.choice.finish_reason is not None:
                decide(tools, whole, tokenizer)
                yield Delta(delta.prompt_index, held.pop(key))
    finally:
        close = getattr(deltas, "close", None)
        if close is not None:
            close()
