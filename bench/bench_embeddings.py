"""Embeddings per second: 256 short inputs as one request vs as 256 concurrent requests.

Both go through the whole service (gunicorn → Redis → Celery worker pinned to
the embedding model → one vLLM pooling engine). The engine batches the inputs
of one request and the inputs of concurrent requests alike, so the ratio shows
what the per-request path (HTTP, job record, queue, result) costs on top.

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
from common import table  # noqa: I001 - bench/ is on sys.path

from app.auth.keys import KeyStore
from devstack.processes import (
    EMBED_MODEL,
    ApiServer,
    RedisServer,
    ServiceEnv,
    WorkerProcess,
    temp_dir,
    write_models_file,
)

SUBJECTS = ["cat", "river", "market", "violin", "glacier", "teacher", "rocket", "garden"]
VERBS = ["watches", "crosses", "sells", "plays", "melts near", "greets", "passes", "waters"]


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


def measure(url: str, headers: dict[str, str], inputs: list[str], rounds: int) -> dict[str, list[float]]:
    asyncio.run(one_request(url, headers, inputs[:32]))  # warm up both paths
    asyncio.run(concurrent_requests(url, headers, inputs[:32]))
    walls: dict[str, list[float]] = {"batch": [], "concurrent": []}
    for _ in range(rounds):  # interleaved, so drift hits both alike
        walls["batch"].append(asyncio.run(one_request(url, headers, inputs)))
        walls["concurrent"].append(asyncio.run(concurrent_requests(url, headers, inputs)))
    return walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--api-workers", type=int, default=1)
    args = parser.parse_args()
    started = time.time()
    directory = temp_dir("inferq-bench-")
    redis_server = RedisServer(directory / "redis").start()
    env = ServiceEnv(redis_server.url, write_models_file(directory))
    key, _record = KeyStore(redis_server.client()).create(name="bench", rpm=1_000_000)
    headers = {"Authorization": f"Bearer {key}"}
    worker = WorkerProcess(env, model=EMBED_MODEL, log_name="bench-embed-worker.log").start()
    api = ApiServer(env, workers=args.api_workers).start()
    try:
        walls = measure(api.url, headers, short_inputs(args.inputs), args.rounds)
    finally:
        api.stop()
        worker.stop()
        redis_server.stop()
    rate = {name: args.inputs / statistics.median(values) for name, values in walls.items()}
    wall = {name: f"{statistics.median(values):.2f} s" for name, values in walls.items()}
    rows = [
        (f"{args.inputs} inputs as 1 request", "1", wall["batch"], f"{rate['batch']:.0f}"),
        (
            f"{args.inputs} inputs as {args.inputs} requests",
            str(args.inputs),
            wall["concurrent"],
            f"{rate['concurrent']:.0f}",
        ),
    ]
    print(f"model {EMBED_MODEL}, median of {args.rounds} rounds, {os.cpu_count()} CPUs, {platform.machine()}")
    print(table(rows, ("case", "requests", "wall", "embeddings/s")))
    print(
        f"embeddings/s: {rate['batch']:.0f} as one request, {rate['concurrent']:.0f} as {args.inputs} concurrent "
        f"requests (one request is {rate['batch'] / rate['concurrent']:.1f}x faster)"
    )
    print(f"(benchmark took {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
