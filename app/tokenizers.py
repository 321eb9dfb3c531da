"""Tokenise prompts in the API process, from the same files the engine loads.

Why here and not in the worker: the API must reject a prompt that does not fit
the model's context *at submit time* (a queued job must not fail an hour
later), and the count it reports must be the count the engine bills. So the
API renders the chat template and tokenises once, and sends token ids to the
worker, which never tokenises again. Only `tokenizers` and `jinja2` are used:
importing transformers here would drag torch into every API process.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from tasks.models import ModelSpec


class TemplateError(ValueError):
    """The chat template refused the conversation (e.g. a role it does not know)."""


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **kwargs: Any) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, **kwargs)


def _environment() -> ImmutableSandboxedEnvironment:
    # The same environment transformers' apply_chat_template uses, so templates
    # render byte-for-byte as they do inside vLLM.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _resolve_file(source: str, name: str) -> Path | None:
    local = Path(source)
    if local.is_dir():
        candidate = local / name
        return candidate if candidate.exists() else None
    # A Hugging Face id on a GPU host: fetch only the small tokenizer files.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(source, name))
    except EntryNotFoundError:
        return None


class ModelTokenizer:
    def __init__(self, source: str) -> None:
        tokenizer_file = _resolve_file(source, "tokenizer.json")
        if tokenizer_file is None:
            raise FileNotFoundError(f"{source}: no tokenizer.json")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # Some tokenizer.json files (MiniLM's) pin truncation and padding to 128;
        # transformers ignores them unless asked, and so must a count.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        config_file = _resolve_file(source, "tokenizer_config.json")
        config = json.loads(config_file.read_text()) if config_file else {}
        template_file = _resolve_file(source, "chat_template.jinja")
        template = template_file.read_text() if template_file else config.get("chat_template")
        if isinstance(template, list):  # named templates: take the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        self.special_tokens = {
            name: _token_text(config.get(name)) for name in ("bos_token", "eos_token", "pad_token", "unk_token")
        }
        self.template = _environment().from_string(template) if template else None
        #: Does the template render `tools` and tool calls itself? (If not, app.chat_messages writes them as text.)
        self.knows_tools = bool(template) and "tool" in template

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def render_chat(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, tools: list[dict] | None = None
    ) -> str:
        if self.template is None:
            raise TemplateError("this model has no chat template; use /completions")
        extra = {"tools": tools} if tools else {}
        try:
            return self.template.render(
                messages=messages, add_generation_prompt=add_generation_prompt, **extra, **self.special_tokens
            )
        except TypeError as exc:  # a template that cannot take this message shape (e.g. null content)
            raise TemplateError(str(exc)) from exc

    def encode_chat(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, tools: list[dict] | None = None
    ) -> list[int]:
        # Like apply_chat_template(tokenize=True): the template already holds
        # the special tokens, so the tokenizer must not add its own.
        return self.encode(self.render_chat(messages, add_generation_prompt, tools), add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


class TokenizerCache:
    """One tokenizer per model, loaded on first use and shared by all threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokenizers: dict[str, ModelTokenizer] = {}

    def get(self, spec: ModelSpec) -> ModelTokenizer:
        tokenizer = self._tokenizers.get(spec.id)
        if tokenizer is None:
            with self._lock:
                tokenizer = self._tokenizers.get(spec.id)
                if tokenizer is None:
                    tokenizer = self._tokenizers[spec.id] = ModelTokenizer(spec.tokenizer_path)
        return tokenizer
