"""Where a 1-token synchronous request's milliseconds go, hop by hop.

The job record carries three stamps from Redis's clock (`created_at` when
the submit step ran, `started_at` at the worker's claim, `completed_at` at
its end); the client reads its own clock on either side (same machine, same
clock). So each request splits into: client to accepted (HTTP, auth, limits,
tokenization, the submit step), accepted to claimed (the broker, Celery's
consumer, the task thread), claimed to ended (the engine, and the worker's
client of it), ended to the client (the event read, the record's collection,
the reply). `--requests` sequential requests after 3 to warm up; medians.

    .venv/bin/python bench/bench_hops.py [--requests 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import httpx
from common import API_KEY_ENV, table  # bench/ is on sys.path
from stacks import inferq_stack

from devstack.processes import CHAT_MODEL
from tasks.keyspace import KEYS

WARM_UP = 3
HOPS = ("client -> accepted", "accepted -> claimed", "claimed -> ended", "ended -> client", "total")


def one(client: httpx.Client, redis, seed: int) -> tuple[float, ...]:
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 1, "seed": seed}
    sent = time.time()
    response = client.post("/v1/chat/completions", json=body)
    received = time.time()
    assert response.status_code == 200, response.text
    job_id = "job_" + response.json()["id"].removeprefix("chatcmpl-")
    stamps = redis.hmget(KEYS.job(job_id), "created_at", "started_at", "completed_at")
    created, started, completed = (float(stamp) for stamp in stamps)
    return created - sent, started - created, completed - started, received - completed, received - sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with inferq_stack() as stack:
        headers = {"Authorization": f"Bearer {os.environ[API_KEY_ENV]}"}
        with httpx.Client(base_url=stack.url, headers=headers, timeout=60) as client:
            runs = [one(client, stack.redis.client(), seed) for seed in range(WARM_UP + args.requests)][WARM_UP:]
    rows = []
    for hop, values in zip(HOPS, zip(*runs, strict=True), strict=True):
        ms = [1000 * v for v in values]
        rows.append((hop, f"{statistics.median(ms):.1f}", f"{min(ms):.1f}", f"{max(ms):.1f}"))
    print(f"{args.requests} sequential 1-token chat requests, {CHAT_MODEL}; ms, median over the requests")
    print(table(rows, ("hop", "p50 ms", "min", "max")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
