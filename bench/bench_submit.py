"""Does accepting a job get slower or dearer as the queue, or a key's history, grows?

No worker runs, so the queue only grows. For each backlog (0, 10 000,
100 000 jobs already queued, under a filler key) one client submits
`--submit` queued chat jobs one after another under a fresh key: submit
latency p50/p99, and the CPU the API (every gunicorn process) and
redis-server spent per accepted job (psutil, before and after). Then the
list route: a key with `--history` ended (cancelled) jobs lists its newest
page, p50/p99, against a key with a handful.

    .venv/bin/python bench/bench_submit.py [--backlogs 0,10000,100000] [--submit 1000] [--history 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

import aiohttp
import psutil
from common import table  # bench/ is on sys.path
from stacks import inferq_stack

from app.auth.keys import KeyStore
from devstack.processes import CHAT_MODEL

BODY = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Write a haiku."}], "max_tokens": 8}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def cpu(processes: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


async def fill(url: str, key: str, count: int, concurrency: int = 32) -> list[str]:
    """Queue `count` jobs under `key` as fast as the API takes them; their ids."""
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

        async def client(share: int) -> None:
            for _ in range(share):
                async with session.post(url + "/queue/chat/completions", json=BODY) as response:
                    payload = await response.json()
                    assert response.status == 202, payload
                    ids.append(payload["id"])

        await asyncio.gather(*(client(count // concurrency + (i < count % concurrency)) for i in range(concurrency)))
    return ids


async def timed(url: str, key: str, count: int, method: str, path: str, body: dict | None = None) -> list[float]:
    """`count` requests one after another; each one's seconds."""
    latencies = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.request(method, url + path, json=body) as response:
                await response.read()
                assert response.status in (200, 202), response.status
            latencies.append(time.perf_counter() - started)
    return latencies


async def cancel(url: str, key: str, ids: list[str], concurrency: int = 32) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}, connector=connector) as session:

        async def one(job_id: str) -> None:
            async with session.post(f"{url}/queue/jobs/{job_id}/cancel") as response:
                assert response.status == 200, await response.text()

        for start in range(0, len(ids), 512):
            await asyncio.gather(*(one(job_id) for job_id in ids[start : start + 512]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlogs", type=lambda s: [int(b) for b in s.split(",")], default=[0, 10_000, 100_000])
    parser.add_argument("--submit", type=int, default=1000)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--api-workers", type=int, default=2)
    args = parser.parse_args()
    began, rows = time.time(), []
    # The filler key holds the warm-up's 200 and the largest backlog; no key may reach its cap.
    limits = {"INFERQ_MAX_OPEN_JOBS_PER_KEY": str(max(args.backlogs) + 200 + args.history + args.submit)}
    with inferq_stack(api_workers=args.api_workers, with_worker=False, **limits) as stack:
        keys = KeyStore(stack.redis.client())
        filler, _ = keys.create(name="filler", rpm=10_000_000)
        api = [psutil.Process(stack.api.process.pid), *psutil.Process(stack.api.process.pid).children()]
        redis_server = [psutil.Process(stack.redis.process.pid)]
        queued = 0
        asyncio.run(fill(stack.url, filler, 200))  # warm up every API process
        queued += 200
        baseline = None
        for backlog in args.backlogs:
            if backlog > queued:
                asyncio.run(fill(stack.url, filler, backlog - queued))
                queued = backlog
            measured, _ = keys.create(name=f"measured-{backlog}", rpm=10_000_000)
            before_api, before_redis = cpu(api), cpu(redis_server)
            latencies = asyncio.run(timed(stack.url, measured, args.submit, "POST", "/queue/chat/completions", BODY))
            api_ms = 1000 * (cpu(api) - before_api) / args.submit
            redis_ms = 1000 * (cpu(redis_server) - before_redis) / args.submit
            p50, p99 = pct(latencies, 50) * 1000, pct(latencies, 99) * 1000
            baseline = baseline or p99
            rows.append((f"{backlog:,} queued", f"{p50:.1f} / {p99:.1f} ms", f"{api_ms:.2f} + {redis_ms:.2f} ms",
                         f"{p99 / baseline:.2f}x"))  # fmt: skip
            queued += args.submit
        print(f"model {CHAT_MODEL}, {os.cpu_count()} CPUs, {args.api_workers} API workers, no worker consuming; "
              f"{args.submit} sequential submits per backlog")  # fmt: skip
        print(table(rows, ("backlog", "submit p50 / p99", "CPU/job API + Redis", "p99 vs first")))

        few, _ = keys.create(name="few", rpm=10_000_000)
        many, _ = keys.create(name="history", rpm=10_000_000)
        asyncio.run(cancel(stack.url, few, asyncio.run(fill(stack.url, few, 20))))
        asyncio.run(cancel(stack.url, many, asyncio.run(fill(stack.url, many, args.history))))
        lists = {}
        for name, key in (("20 ended jobs", few), (f"{args.history:,} ended jobs", many)):
            lists[name] = asyncio.run(timed(stack.url, key, 200, "GET", "/queue/jobs?limit=20"))
        list_rows = [(name, f"{pct(v, 50) * 1000:.1f} ms", f"{pct(v, 99) * 1000:.1f} ms",
                      f"{statistics.median(v) / statistics.median(next(iter(lists.values()))):.2f}x")
                     for name, v in lists.items()]  # fmt: skip
        print()
        print(table(list_rows, ("GET /queue/jobs?limit=20, key with", "p50", "p99", "p50 vs few")))
    print(f"(benchmark took {time.time() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
