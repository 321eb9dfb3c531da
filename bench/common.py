"""Load generation and statistics shared by the benchmarks (no third-party client quirks:
plain aiohttp requests, identical for inferq and `vllm serve`)."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: The Bearer key sent with every request (inferq requires one; `vllm serve` ignores it).
API_KEY_ENV = "INFERQ_BENCH_API_KEY"


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {os.environ.get(API_KEY_ENV, '')}"}


@dataclass
class Run:
    latencies: list[float]
    tokens: int
    wall: float

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies)

    @property
    def p99(self) -> float:
        return self.pct(99)

    @property
    def throughput(self) -> float:
        return self.tokens / self.wall


async def chat_once(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[float, int]:
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        payload = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {payload}")
    return time.perf_counter() - started, payload["usage"]["completion_tokens"]


async def sequential(url: str, body: dict, count: int) -> Run:
    async with aiohttp.ClientSession(headers=_headers(), timeout=aiohttp.ClientTimeout(total=600)) as session:
        latencies, tokens = [], 0
        started = time.perf_counter()
        for _ in range(count):
            latency, produced = await chat_once(session, url, body)
            latencies.append(latency)
            tokens += produced
        return Run(latencies, tokens, time.perf_counter() - started)


async def concurrent(url: str, bodies: list[dict]) -> Run:
    connector = aiohttp.TCPConnector(limit=len(bodies))
    async with aiohttp.ClientSession(
        connector=connector, headers=_headers(), timeout=aiohttp.ClientTimeout(total=900)
    ) as session:
        started = time.perf_counter()
        results = await asyncio.gather(*(chat_once(session, url, body) for body in bodies))
        wall = time.perf_counter() - started
    return Run([r[0] for r in results], sum(r[1] for r in results), wall)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r):
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])
