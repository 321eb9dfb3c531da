"""Validate a response body against OpenAI's own published OpenAPI description.

The component schemas live in tests/fixtures/openai_spec_components.json,
extracted from github.com/openai/openai-openapi (the commit is in its
`_source`). "OpenAI-compatible" then means "valid by OpenAI's description",
not "looks like what we wrote last time".

Where the description and OpenAI's documented behaviour disagree, the
behaviour wins: each such place is one entry of `SPEC_EXCEPTIONS`, with the
reason, and widens the schema only at that spot.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

FIXTURE = Path(__file__).parent / "fixtures" / "openai_spec_components.json"
NULL = {"type": "null"}


@dataclass(frozen=True)
class SpecException:
    """One place where the schema also accepts `allow`, because OpenAI itself sends it."""

    component: str
    path: tuple[str | int, ...]  # keys from the component down to the widened subschema
    allow: dict[str, Any]
    reason: str


_CHOICE = ("properties", "choices", "items", "properties")
_COMPLETION_LOGPROBS = (*_CHOICE, "logprobs", "anyOf", 0, "properties")

SPEC_EXCEPTIONS: tuple[SpecException, ...] = (
    SpecException(
        "Embedding",
        ("properties", "embedding"),
        {"type": "string", "contentEncoding": "base64"},
        "With `encoding_format: base64` OpenAI returns the vector as a base64 string of little-endian "
        "float32s (the openai SDK asks for base64 by default); the description only lists the float array.",
    ),
    SpecException(
        "CreateCompletionResponse",
        (*_CHOICE, "finish_reason"),
        NULL,
        "Streamed text completion chunks share this schema (its own description says so) and carry "
        "`finish_reason: null` until a choice ends, as OpenAI's stream does.",
    ),
    SpecException(
        "CreateCompletionResponse",
        ("properties", "usage"),
        NULL,
        "With `stream_options.include_usage`, every streamed chunk but the last has `usage: null` "
        "(OpenAI's documentation of stream_options); the description does not mark it nullable here.",
    ),
    SpecException(
        "CreateCompletionResponse",
        (*_COMPLETION_LOGPROBS, "token_logprobs", "items"),
        NULL,
        "With `echo` and `logprobs`, the first prompt token has no logprob: OpenAI's legacy API (and "
        "vLLM) send null there.",
    ),
    SpecException(
        "CreateCompletionResponse",
        (*_COMPLETION_LOGPROBS, "top_logprobs", "items"),
        NULL,
        "Same first echoed token: its `top_logprobs` entry is null in OpenAI's legacy API and vLLM.",
    ),
)


def _nullable_to_any_of(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` (still used in places of the 3.1 document) as JSON Schema."""
    if isinstance(node, list):
        return [_nullable_to_any_of(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _nullable_to_any_of(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [converted, NULL]}
    return converted


def _widen(schemas: dict[str, Any], exception: SpecException) -> None:
    parent: Any = schemas[exception.component]
    *head, last = exception.path
    for key in head:
        parent = parent[key]
    parent[last] = {"anyOf": [parent[last], exception.allow]}


@cache
def _document(with_exceptions: bool) -> dict[str, Any]:
    document = json.loads(FIXTURE.read_text())
    schemas = copy.deepcopy(document["components"]["schemas"])
    for exception in SPEC_EXCEPTIONS if with_exceptions else ():
        _widen(schemas, exception)
    return {"components": {"schemas": _nullable_to_any_of(schemas)}}


@cache
def _validator(component: str, with_exceptions: bool) -> Draft202012Validator:
    document = _document(with_exceptions)
    if component not in document["components"]["schemas"]:
        raise KeyError(f"{component} is not in {FIXTURE.name}")
    # `#/components/schemas/...` refs resolve against this root, which carries the components.
    return Draft202012Validator({"$ref": f"#/components/schemas/{component}", **document})


def spec_errors(body: Any, component: str, *, with_exceptions: bool = True) -> list[str]:
    """Every violation of `component`, one readable line each (empty when the body conforms).

    `with_exceptions=False` validates against the description exactly as published.
    """
    errors = sorted(_validator(component, with_exceptions).iter_errors(body), key=lambda e: list(e.absolute_path))
    return [_line(_cause(error)) for error in errors]


def _cause(error: ValidationError) -> ValidationError:
    """For "not valid under any of the given schemas", the failure inside the non-null alternative.

    A nullable object that is present but wrong says which key is wrong, not the whole instance.
    """
    inner = [sub for sub in error.context or () if not (sub.validator == "type" and sub.validator_value == "null")]
    return _cause(inner[0]) if inner else error


def _line(error: ValidationError) -> str:
    return f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"


def assert_conforms(body: Any, component: str) -> None:
    """Fail with every violation listed, so one run shows everything a server fix must cover."""
    errors = spec_errors(body, component)
    assert not errors, f"not a valid {component}:\n  " + "\n  ".join(errors)


def source() -> dict[str, Any]:
    """Where the fixture came from (repository, path, commit)."""
    return json.loads(FIXTURE.read_text())["_source"]
