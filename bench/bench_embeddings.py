"""Embeddings per second, inferq vs `vllm serve`: 256 inputs as one request and as 256 requests.

inferq runs the whole service (gunicorn -> Redis -> Celery worker pinned to
the embedding model -> one vLLM pooling engine); `vllm serve` runs the same
model with the same engine settings. The engine batches the inputs of one
request and the inputs of concurrent requests alike, so the gap between the
two cases is what the per-request path costs. The stacks alternate for
`--rounds` rounds (each round measures both cases on each stack); medians.

    .venv/bin/python bench/bench_embeddings.py [--inputs 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time

import aiohttp
from common import _headers, table  # bench/ is on sys.path
from stacks import inferq_stack, vllm_serve

from devstack.processes import EMBED_MODEL

SUBJECTS = ["cat", "river", "market", "violin", "glacier", "teacher", "rocket", "garden"]
VERBS = ["watches", "crosses", "sells", "plays", "melts near", "greets", "passes", "waters"]
STACKS = ("inferq", "vllm serve")


def short_inputs(count: int) -> list[str]:
    """Distinct short sentences (8-10 tokens each), as a search index would embed."""
    return [f"The {SUBJECTS[i % 8]} {VERBS[(i // 8) % 8]} item {i}." for i in range(count)]


async def post(session: aiohttp.ClientSession, url: str, inputs: str | list[str]) -> int:
    async with session.post(url + "/v1/embeddings", json={"model": EMBED_MODEL, "input": inputs}) as response:
        payload = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {payload}")
    return len(payload["data"])


async def one_request(url: str, headers: dict[str, str], inputs: list[str]) -> float:
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=600)) as session:
        started = time.perf_counter()
        assert await post(session, url, inputs) == len(inputs)
        return time.perf_counter() - started


async def concurrent_requests(url: str, headers: dict[str, str], inputs: list[str]) -> float:
    connector = aiohttp.TCPConnector(limit=len(inputs))
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        started = time.perf_counter()
        counts = await asyncio.gather(*(post(session, url, text) for text in inputs))
        assert sum(counts) == len(inputs)
        return time.perf_counter() - started


def measure(url: str, inputs: list[str]) -> dict[str, float]:
    """Seconds for all inputs as one request, and as one request each, after a warm-up of both."""
    headers = _headers()
    asyncio.run(one_request(url, headers, inputs[:32]))
    asyncio.run(concurrent_requests(url, headers, inputs[:32]))
    return {
        "batch": asyncio.run(one_request(url, headers, inputs)),
        "concurrent": asyncio.run(concurrent_requests(url, headers, inputs)),
    }


def run_stack(name: str, inputs: list[str], args) -> dict[str, float]:
    if name == "inferq":
        with inferq_stack(api_workers=args.api_workers, model=EMBED_MODEL) as stack:
            return measure(stack.url, inputs)
    with vllm_serve(EMBED_MODEL) as url:
        return measure(url, inputs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--api-workers", type=int, default=1)
    args = parser.parse_args()
    started, inputs = time.time(), short_inputs(args.inputs)
    walls: dict[str, list[dict[str, float]]] = {name: [] for name in STACKS}
    for _ in range(args.rounds):
        for name in STACKS:
            walls[name].append(run_stack(name, inputs, args))
    rate = {
        name: {case: args.inputs / statistics.median(r[case] for r in runs) for case in ("batch", "concurrent")}
        for name, runs in walls.items()
    }
    ours, theirs = rate["inferq"], rate["vllm serve"]
    rows = [
        (f"{args.inputs} inputs as 1 request, embeddings/s", f"{ours['batch']:.0f}", f"{theirs['batch']:.0f}",
         f"{ours['batch'] / theirs['batch']:.2f}x"),
        (f"{args.inputs} inputs as {args.inputs} requests, embeddings/s", f"{ours['concurrent']:.0f}",
         f"{theirs['concurrent']:.0f}", f"{ours['concurrent'] / theirs['concurrent']:.2f}x"),
    ]  # fmt: skip
    print(
        f"model {EMBED_MODEL}, medians of {args.rounds} alternating rounds, {os.cpu_count()} CPUs, {platform.machine()}"
    )
    print(table(rows, ("case", "inferq", "vllm serve", "inferq/vllm")))
    print(f"(benchmark took {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
