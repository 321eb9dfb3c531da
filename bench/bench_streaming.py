"""Streaming: time to first token, inferq vs `vllm serve`, and idle streams one API process holds.

(1) TTFT p50/p99 of chat streams at 1 and at 32 concurrent streams, same
model, engine settings and load on both systems, one after the other.
(2) inferq alone (vllm serve has no queue): how many concurrent SSE streams
of queued jobs that are waiting (no worker serves their model) one API
instance (gunicorn, gevent workers) holds open, and its memory before and
with them.

    .venv/bin/python bench/bench_streaming.py [--idle 512]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import aiohttp
import psutil
from common import _headers, table
from stacks import inferq_stack, vllm_serve

from devstack.processes import CHAT_MODEL, GHOST_MODEL

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def first_token(session: aiohttp.ClientSession, url: str, body: dict) -> float:
    """Seconds until the first chunk that carries generated text."""
    started = time.perf_counter()
    ttft = None
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        async for raw in response.content:
            line = raw.decode().strip()
            if ttft is None and line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    ttft = time.perf_counter() - started
    return ttft


async def ttfts(url: str, concurrency: int, rounds: int) -> list[float]:
    body = {"model": CHAT_MODEL, "messages": PROMPT, "max_tokens": 16, "stream": True, "temperature": 0.8}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=_headers(), connector=connector) as session:
        await first_token(session, url, body)  # warm up
        results: list[float] = []
        for _ in range(rounds):
            results += await asyncio.gather(
                *(first_token(session, url, dict(body, seed=i)) for i in range(concurrency))
            )
        return results


def measure_ttft(url: str, single: int, rounds: int) -> dict[str, list[float]]:
    return {"1": asyncio.run(ttfts(url, 1, single)), "32": asyncio.run(ttfts(url, 32, rounds))}


async def hold_idle_streams(url: str, count: int, hold: float) -> tuple[int, int]:
    """Open `count` streams of jobs nobody runs; return (still open after `hold`, got a keep-alive)."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(headers=_headers(), connector=connector, timeout=timeout) as session:
        body = {"model": GHOST_MODEL, "messages": PROMPT, "max_tokens": 4}
        ids = []
        for _ in range(count):
            async with session.post(url + "/queue/chat/completions", json=body) as response:
                ids.append((await response.json())["id"])
        kept_alive = 0

        async def one(job_id: str) -> bool:
            nonlocal kept_alive
            async with session.get(f"{url}/queue/jobs/{job_id}/stream") as response:
                assert response.status == 200
                try:
                    async with asyncio.timeout(hold):
                        async for raw in response.content:
                            if raw.startswith(b": keep-alive"):
                                kept_alive += 1
                except TimeoutError:
                    return True  # still open when we stopped listening
                return False

        results = await asyncio.gather(*(one(job_id) for job_id in ids), return_exceptions=True)
        return sum(r is True for r in results), kept_alive


def api_rss(api) -> float:
    process = psutil.Process(api.process.pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=20, help="sequential streams for TTFT at 1")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 32 concurrent streams")
    parser.add_argument("--idle", type=int, default=512, help="idle streams to hold")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds to hold them (a keep-alive every 15 s)")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn worker processes (the default deployment)")
    args = parser.parse_args()
    started = time.time()
    with inferq_stack(api_workers=args.api_workers) as stack:
        ours = measure_ttft(stack.url, args.single, args.rounds)
        baseline = api_rss(stack.api)
        rss_during: list[float] = []

        async def idle() -> tuple[int, int]:
            task = asyncio.create_task(hold_idle_streams(stack.url, args.idle, args.hold))
            await asyncio.sleep(args.hold * 0.75)
            rss_during.append(api_rss(stack.api))
            return await task

        held, kept_alive = asyncio.run(idle())
    with vllm_serve() as url:
        theirs = measure_ttft(url, args.single, args.rounds)

    rows = []
    for level in ("1", "32"):
        for q in (50, 99):
            a, b = pct(ours[level], q), pct(theirs[level], q)
            rows.append((f"TTFT p{q}, {level} concurrent", f"{a * 1000:.1f} ms", f"{b * 1000:.1f} ms", f"{a / b:.2f}x"))
    print(f"model {CHAT_MODEL}, 16-token streams, {os.cpu_count()} CPUs")
    print(table(rows, ("metric", "inferq", "vllm serve", "inferq/vllm")))
    for level in ("1", "32"):
        added = (pct(ours[level], 50) - pct(theirs[level], 50)) * 1000
        print(f"inferq added TTFT p50 at {level} concurrent: {added:+.1f} ms")
    per_stream = (rss_during[0] - baseline) * 1024 / max(held, 1)
    print(
        f"idle streams held by one API instance ({args.api_workers} gevent workers): "
        f"{held}/{args.idle} open after {args.hold:.0f} s, "
        f"{kept_alive} keep-alives received; API memory {baseline:.0f} MiB -> {rss_during[0]:.0f} MiB "
        f"({per_stream:.0f} KiB per stream)"
    )
    print(f"(benchmark took {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
