"""Where a burst of requests waits: in the API, in the broker, or in the engine.

`--requests` concurrent one-input embedding requests (or chat requests with
`--chat`) against a fresh inferq stack. While they run, the broker's backlog
(messages no worker has taken) is sampled every 50 ms; afterwards each job's
record gives when it was accepted, claimed by the worker, and ended. Printed:
how long the API took to accept the burst, each job's wait in the queue and
run on the engine (p50/p90), the broker backlog over time, and how many jobs
ran at once. A backlog that grows while few jobs run means the worker's
intake, not the engine, is the bottleneck; a long accept spread means the API.

    .venv/bin/python bench/bench_flow.py [--requests 256] [--chat]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time

import aiohttp
import redis
from bench_embeddings import short_inputs
from common import _headers, table  # bench/ is on sys.path
from stacks import inferq_stack

from devstack.processes import CHAT_MODEL, EMBED_MODEL
from tasks.dispatch import queue_name
from tasks.keyspace import Keyspace

SAMPLE_SECONDS = 0.05


async def burst(url: str, count: int, chat: bool) -> None:
    connector = aiohttp.TCPConnector(limit=count)
    async with aiohttp.ClientSession(headers=_headers(), connector=connector) as session:

        async def one(text: str) -> None:
            if chat:
                path, body = "/v1/chat/completions", {"model": CHAT_MODEL, "max_tokens": 16, "ignore_eos": True,
                                                      "messages": [{"role": "user", "content": text}]}  # fmt: skip
            else:
                path, body = "/v1/embeddings", {"model": EMBED_MODEL, "input": text}
            async with session.post(url + path, json=body) as response:
                assert response.status == 200, await response.text()
                await response.read()

        await asyncio.gather(*(one(text) for text in short_inputs(count)))


def backlog_sampler(client: redis.Redis, model: str, samples: list[tuple[float, int]], stop: threading.Event) -> None:
    """Messages waiting in the model's broker lists (every priority step), every SAMPLE_SECONDS."""
    while not stop.is_set():
        lists = [key for key in client.scan_iter(f"{queue_name(model)}*") if client.type(key) == b"list"]
        samples.append((time.time(), sum(client.llen(key) for key in lists)))
        stop.wait(SAMPLE_SECONDS)


def job_times(client: redis.Redis) -> list[tuple[float, float, float]]:
    """(accepted, claimed, ended) of every job a delivered reply left behind (its audit fields)."""
    times = []
    for key in client.scan_iter(f"{Keyspace().job('*')}"):
        if client.type(key) != b"hash":
            continue
        record = client.hmget(key, "created_at", "started_at", "completed_at")
        if all(record):
            times.append(tuple(float(value) for value in record))
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(began: float, times: list[tuple[float, float, float]], samples: list[tuple[float, int]]) -> str:
    accepted, claimed, ended = zip(*times, strict=True)
    wait = [c - a for a, c, _ in times]
    run = [e - c for _, c, e in times]
    rows = [
        ("accepting the burst (first to last)", f"{(max(accepted) - min(accepted)) * 1000:.0f} ms"),
        ("queue wait, accepted → claimed, p50 / p90", f"{pct(wait, 0.5) * 1000:.0f} / {pct(wait, 0.9) * 1000:.0f} ms"),
        ("on the engine, claimed → ended, p50 / p90", f"{pct(run, 0.5) * 1000:.0f} / {pct(run, 0.9) * 1000:.0f} ms"),
        ("broker backlog, peak", f"{max(n for _, n in samples)} messages"),
        ("burst, first accepted → last ended", f"{(max(ended) - min(accepted)) * 1000:.0f} ms"),
    ]
    lines = [table(rows, ("", "")), "", "t (ms)   broker backlog   jobs running   accepted, not claimed"]
    step = max(1, len(samples) // 16)
    for at, waiting in samples[::step]:
        running = sum(1 for _, c, e in times if c <= at < e)
        queued = sum(1 for a, c, _ in times if a <= at < c)
        lines.append(f"{(at - began) * 1000:6.0f}   {waiting:14d}   {running:12d}   {queued:21d}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--chat", action="store_true", help="16-token chat requests instead of embeddings")
    args = parser.parse_args()
    model = CHAT_MODEL if args.chat else EMBED_MODEL
    with inferq_stack(api_workers=1, model=model) as stack:
        client = stack.redis.client()
        asyncio.run(burst(stack.url, 64, args.chat))  # warm every pool
        for key in client.scan_iter(Keyspace().job("*")):
            client.delete(key)
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        sampler = threading.Thread(target=backlog_sampler, args=(stack.redis.client(), model, samples, stop))
        sampler.start()
        began = time.time()
        asyncio.run(burst(stack.url, args.requests, args.chat))
        stop.set()
        sampler.join()
        times = job_times(client)
    kind = "16-token chat" if args.chat else "one-input embedding"
    print(f"{args.requests} concurrent {kind} requests, {model}, {os.cpu_count()} CPUs, 1 API worker; one run")
    print(report(began, times, samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
