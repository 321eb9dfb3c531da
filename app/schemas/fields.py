"""marshmallow fields for OpenAI's union-typed parameters."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class StringOrList(fields.Field):
    """`stop`: a string or a list of strings, normalised to a list (limits: app.schemas.sampling)."""

    def __init__(self, *, max_items: int, max_length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_items = max_items
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValidationError("must be a string or a list of strings")
        if len(items) > self.max_items:
            raise ValidationError(f"at most {self.max_items} stop sequences")
        if any(item == "" for item in items):
            raise ValidationError("stop sequences must not be empty")
        if any(len(item) > self.max_length for item in items):
            raise ValidationError(f"each stop sequence must be at most {self.max_length} characters")
        return items


class Prompt(fields.Field):
    """Completion `prompt`: string, token array, or a list of either.

    Normalised to a list of prompts, each a string or a list of token ids, so
    one request can fan out to several prompts as OpenAI allows.
    """

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str | list[int]]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value and all(_is_int(item) for item in value):
            return [value]
        if isinstance(value, list) and value:
            prompts: list[str | list[int]] = []
            for item in value:
                if isinstance(item, str) or isinstance(item, list) and item and all(_is_int(token) for token in item):
                    prompts.append(item)
                else:
                    raise ValidationError("each prompt must be a string or a non-empty array of token ids")
            return prompts
        raise ValidationError("must be a string, an array of token ids, or a non-empty list of either")


class MessageContent(fields.Field):
    """Message `content`: a string, or a list of `{"type": "text", "text": ...}` parts."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            texts = []
            for part in value:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValidationError("only text content parts ({'type': 'text', 'text': ...}) are supported")
                texts.append(part["text"])
            return "".join(texts)
        raise ValidationError("must be a string or a list of text parts")
