"""Drive the official openai SDK the same way in its sync and async flavours.

A conformance test is written once against `Sdk.call(lambda client: ...)`;
the `sdk` fixture runs it with `OpenAI` and again with `AsyncOpenAI`, so both
clients' parsing (streams and pages included) meets the real server.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openai import AsyncOpenAI, AsyncStream, OpenAI, Stream
from openai.pagination import AsyncPage, SyncPage


@dataclass
class RawReply:
    """A `with_raw_response` call: the HTTP status and headers, and the parsed body (a stream drained)."""

    status_code: int
    headers: Any
    parsed: Any


class Sdk:
    def __init__(self, mode: str, base_url: str, api_key: str) -> None:
        self.mode, self.base_url, self.api_key = mode, base_url, api_key

    def __repr__(self) -> str:
        return f"Sdk({self.mode})"

    def _options(self, api_key: str | None) -> dict[str, Any]:
        return {"base_url": self.base_url, "api_key": api_key or self.api_key, "max_retries": 0, "timeout": 300}

    def call(self, request: Callable[[Any], Any], *, api_key: str | None = None) -> Any:
        """Run `request(client)`; streams come back as a list of chunks and pages as their items."""
        if self.mode == "sync":
            with OpenAI(**self._options(api_key)) as client:
                return _drain_sync(request(client))
        return asyncio.run(self._call_async(request, api_key))

    def raw(self, request: Callable[[Any], Any], *, api_key: str | None = None) -> RawReply:
        """Run a `with_raw_response` request and parse it while the client is open (a stream is read whole)."""
        if self.mode == "sync":
            with OpenAI(**self._options(api_key)) as client:
                response = request(client)
                return RawReply(response.status_code, response.headers, _drain_sync(response.parse()))
        return asyncio.run(self._raw_async(request, api_key))

    async def _raw_async(self, request: Callable[[Any], Any], api_key: str | None) -> RawReply:
        async with AsyncOpenAI(**self._options(api_key)) as client:
            response = await request(client)
            parsed = response.parse()
            if inspect.isawaitable(parsed):
                parsed = await parsed
            return RawReply(response.status_code, response.headers, await _drain_async(parsed))

    async def _call_async(self, request: Callable[[Any], Any], api_key: str | None) -> Any:
        async with AsyncOpenAI(**self._options(api_key)) as client:
            result = request(client)
            if inspect.isawaitable(result):
                result = await result
            return await _drain_async(result)


def _drain_sync(result: Any) -> Any:
    if isinstance(result, Stream):
        return list(result)
    if isinstance(result, SyncPage):
        return list(result)
    return result


async def _drain_async(result: Any) -> Any:
    if isinstance(result, AsyncStream):
        return [chunk async for chunk in result]
    if isinstance(result, AsyncPage):
        return [item async for item in result]
    return result
