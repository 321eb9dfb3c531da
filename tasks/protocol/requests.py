"""Typed job requests: built once in the API, stored in the job record, run by the worker.

Everything a job needs is decided before it is queued (the prompt as token
ids, the effective max_tokens, what to stream, what to echo), so the worker
never re-derives a flag and the record answers every question about a job
from one object. `to_json`/`from_json` are the record's form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from workers.sampling import Sampling
from workers.tools import Tools

CHAT, COMPLETION, EMBEDDING = "chat", "completion", "embedding"


@dataclass(frozen=True)
class GenerationRequest:
    """A chat or text completion: one or more prompts, each sampled `sampling.samples` times."""

    endpoint: Literal["chat", "completion"]
    model: str
    created: int
    prompts: list[list[int]]
    sampling: Sampling = field(default_factory=Sampling)
    stream: bool = False
    include_usage: bool = False
    #: Text completions with `echo`: each prompt's text, put before its completions.
    echo: list[str] | None = None
    #: With `echo` and `logprobs`: each prompt's first token (the engine reports no logprob for it).
    echo_first_tokens: list[str] | None = None
    #: Chat with `tools` (and a `tool_choice` other than none): how outputs become tool calls (workers.tools).
    tools: Tools | None = None

    kind = "generate"

    @property
    def sequences(self) -> int:
        """What the request costs the engine: prompts × samples (the fan-out limit's measure)."""
        return len(self.prompts) * self.sampling.samples

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "model": self.model,
            "created": self.created,
            "prompts": self.prompts,
            "sampling": self.sampling.to_json(),
            "stream": self.stream,
            "include_usage": self.include_usage,
            "echo": self.echo,
            "echo_first_tokens": self.echo_first_tokens,
            "tools": self.tools.to_json() if self.tools else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationRequest:
        tools = data.get("tools")
        return cls(
            **{
                **data,
                "sampling": Sampling.from_json(data["sampling"]),
                "tools": Tools.from_json(tools) if tools else None,
            }
        )


@dataclass(frozen=True)
class EmbeddingRequest:
    """Inputs to embed, each as token ids; `encoding_format` is `float` or `base64`."""

    model: str
    created: int
    prompts: list[list[int]]
    encoding_format: str = "float"
    stream: bool = False

    endpoint = EMBEDDING
    kind = "embed"

    @property
    def sequences(self) -> int:
        return len(self.prompts)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": EMBEDDING,
            "model": self.model,
            "created": self.created,
            "prompts": self.prompts,
            "encoding_format": self.encoding_format,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmbeddingRequest:
        return cls(**{key: value for key, value in data.items() if key != "endpoint"})


JobRequest = GenerationRequest | EmbeddingRequest


def request_from_json(data: dict[str, Any]) -> JobRequest:
    if data["endpoint"] == EMBEDDING:
        return EmbeddingRequest.from_json(data)
    return GenerationRequest.from_json(data)
