"""Constrained decoding: which grammar backend the engines use, and the check a schema must pass first.

The backend is llguidance (vLLM's `guidance`), for two reasons measured here:
its grammars need no ahead-of-time compilation (token masks are computed
lazily, step by step, so a new schema costs about a millisecond, not a
compile), and the very same library validates a schema in the API process
without importing torch (xgrammar's import pulls torch in, about 5 s). So
whatever the engine would refuse is refused at submit as a 400, never as a
failed job; the API checks with the options the engines run with
(`ENGINE_CONFIG`), so the two cannot disagree.

Only `llguidance` and `jsonschema` are imported here, lazily; vLLM never.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

#: vLLM's StructuredOutputsConfig for every engine (tasks.models puts it in the engine options).
#: Compact JSON: a small model given free whitespace can emit newlines until max_tokens.
#: No additional properties unless a schema allows them, as xgrammar and OpenAI's strict mode do.
ENGINE_CONFIG: dict[str, Any] = {
    "backend": "guidance",
    "disable_any_whitespace": True,
    "disable_additional_properties": True,
}

#: Schemas are validated once per distinct text per API process.
CHECK_CACHE_SIZE = 1024


class InvalidSchema(ValueError):
    """The schema is not a JSON schema, or the grammar backend cannot compile it."""


def canonical(schema: dict[str, Any]) -> str:
    """The schema as the JSON text the engine receives (one text per schema, whatever the key order)."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _close_objects(node: Any) -> None:
    """What vLLM does with `disable_additional_properties`: objects with properties take no others."""
    if isinstance(node, dict):
        for value in node.values():
            _close_objects(value)
        if "additionalProperties" not in node and (
            isinstance(node.get("properties"), dict) or isinstance(node.get("patternProperties"), dict)
        ):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        for item in node:
            _close_objects(item)


@lru_cache(maxsize=CHECK_CACHE_SIZE)
def _check_text(text: str) -> str | None:
    """The reason the engine would refuse this schema, or None (cached: clients resend the same schema)."""
    import llguidance
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    schema = json.loads(text)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.path)
        return f"{exc.message}" + (f" (at {where})" if where else "")
    except Exception as exc:  # noqa: BLE001 - e.g. a value the metaschema's format checks choke on
        return str(exc) or type(exc).__name__
    if ENGINE_CONFIG["disable_additional_properties"]:
        schema = copy.deepcopy(schema)
        _close_objects(schema)
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            schema, defaults={"whitespace_flexible": not ENGINE_CONFIG["disable_any_whitespace"]}
        )
        return llguidance.LLMatcher.validate_grammar(grammar, None) or None
    except Exception as exc:  # noqa: BLE001 - whatever the compiler raises, the schema is what it refused
        return str(exc) or type(exc).__name__


def check_schema(schema: Any) -> str:
    """The schema's canonical text, or `InvalidSchema` saying why the engine could not constrain to it."""
    if not isinstance(schema, dict):
        raise InvalidSchema("must be a JSON schema object")
    text = canonical(schema)
    reason = _check_text(text)
    if reason:
        raise InvalidSchema(" ".join(reason.split()))
    return text
