"""What the engine hands back, as typed objects that also travel as JSON.

A streamed job's deltas go through a Redis Stream to the API, so each object
has a compact JSON form; the worker merges deltas into final choices with the
same objects. vLLM's own output objects never leave this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TokenLogprob:
    """One token position: the chosen token, its log-probability, the most likely alternatives."""

    token: str
    logprob: float | None
    top: list[tuple[str, float]] = field(default_factory=list)

    def to_json(self) -> list[Any]:
        return [self.token, self.logprob, self.top]

    @classmethod
    def from_json(cls, data: list[Any]) -> TokenLogprob:
        return cls(data[0], data[1], [(token, value) for token, value in data[2]])


@dataclass(frozen=True)
class ToolCall:
    """One function call the model made: `arguments` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str

    def to_json(self) -> list[str]:
        return [self.id, self.name, self.arguments]

    @classmethod
    def from_json(cls, data: list[str]) -> ToolCall:
        return cls(*data)

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def from_openai(cls, data: dict[str, Any]) -> ToolCall:
        return cls(data["id"], data["function"]["name"], data["function"]["arguments"])


@dataclass
class Choice:
    """One sample of one prompt: all of it (final) or what came since the last delta.

    `tool_calls` is set once, on the sample's last delta, by workers.tools (the
    one place that decides whether an output is a tool call); `text` then holds
    only the content beside the calls.
    """

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    cumulative_logprob: float | None = None
    logprobs: list[TokenLogprob] | None = None
    tool_calls: list[ToolCall] | None = None

    def extend(self, delta: Choice) -> None:
        """Append a streamed delta of the same sample."""
        self.text += delta.text
        self.token_ids += delta.token_ids
        if delta.logprobs is not None:
            self.logprobs = (self.logprobs or []) + delta.logprobs
        self.finish_reason = delta.finish_reason
        self.cumulative_logprob = delta.cumulative_logprob
        if delta.tool_calls is not None:
            self.tool_calls = delta.tool_calls

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"i": self.index, "t": self.text, "f": self.finish_reason}
        if self.logprobs is not None:
            body["l"] = [entry.to_json() for entry in self.logprobs]
        if self.tool_calls is not None:
            body["c"] = [call.to_json() for call in self.tool_calls]
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Choice:
        logprobs = [TokenLogprob.from_json(entry) for entry in data["l"]] if "l" in data else None
        calls = [ToolCall.from_json(call) for call in data["c"]] if "c" in data else None
        # Token ids stay in the worker: a stream reader needs the text, and usage comes with the end.
        return cls(data["i"], data["t"], [], data["f"], None, logprobs, calls)


@dataclass
class Delta:
    """New output of one sample of one prompt of a request.

    `prompt_logprobs` comes once per prompt, on its first delta, when asked for.
    """

    prompt_index: int
    choice: Choice
    prompt_logprobs: list[TokenLogprob] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"p": self.prompt_index, **self.choice.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Delta:
        return cls(data["p"], Choice.from_json(data))


@dataclass
class PromptResult:
    """Everything the engine produced for one prompt of a request."""

    prompt_tokens: int
    choices: list[Choice] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob] | None = None


def select_best(choices: list[Choice], n: int) -> list[Choice]:
    """Keep the `n` samples with the highest cumulative log-probability, re-indexed (emulated best_of)."""
    ranked = sorted(choices, key=lambda c: c.cumulative_logprob or float("-inf"), reverse=True)[:n]
    for index, choice in enumerate(ranked):
        choice.index = index
    return ranked


def _entry(token_id: int, position: dict[int, Any] | None) -> TokenLogprob:
    if position is None:  # the first prompt token has nothing before it to be predicted from
        return TokenLogprob("", None)
    chosen = position.get(token_id)
    ranked = sorted(position.values(), key=lambda lp: lp.logprob, reverse=True)
    top = [(lp.decoded_token or "", float(lp.logprob)) for lp in ranked]
    if chosen is None:
        return TokenLogprob("", 0.0, top)
    return TokenLogprob(chosen.decoded_token or "", float(chosen.logprob), top)


def convert_logprobs(token_ids: list[int], positions: list[Any] | None) -> list[TokenLogprob] | None:
    """vLLM's per-position {token id: Logprob} maps as TokenLogprob entries, in token order."""
    if positions is None:
        return None
    return [_entry(token_id, position) for token_id, position in zip(token_ids, positions, strict=False)]


def convert_choice(completion: Any) -> Choice:
    """A vLLM CompletionOutput as a Choice."""
    token_ids = list(completion.token_ids)
    return Choice(
        index=completion.index,
        text=completion.text,
        token_ids=token_ids,
        finish_reason=completion.finish_reason,
        cumulative_logprob=completion.cumulative_logprob,
        logprobs=convert_logprobs(token_ids, completion.logprobs),
    )
