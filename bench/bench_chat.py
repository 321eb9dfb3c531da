"""inferq vs `vllm serve`: same model, same engine settings, same load, one run.

Measures (1) single-client latency of a 1-token chat request, p50/p99, and
(2) 64 concurrent chat requests of 64 output tokens: throughput and latency
p50/p99, plus one stream alone for the batching ratio. inferq runs first
(Redis + gunicorn + Celery worker), then `vllm serve` on the same port range,
never both at once: the machine has two cores.

    .venv/bin/python bench/bench_chat.py [--requests 64] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time

from common import Run, concurrent, sequential, table  # bench/ is on sys.path
from stacks import inferq_stack, vllm_serve

from devstack.processes import CHAT_MODEL

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


def measure(url: str, model: str, requests_: int, tokens: int, single: int) -> dict[str, Run]:
    one_token = {"model": model, "messages": PROMPT, "max_tokens": 1, "temperature": 0}
    long = {"model": model, "messages": PROMPT, "max_tokens": tokens, "ignore_eos": True, "temperature": 0.8}
    asyncio.run(sequential(url, one_token, 5))  # warm up both paths
    asyncio.run(concurrent(url, [dict(long, seed=i) for i in range(8)]))
    return {
        "latency_1tok": asyncio.run(sequential(url, one_token, single)),
        "single_stream": asyncio.run(sequential(url, long, 3)),
        "concurrent": asyncio.run(concurrent(url, [dict(long, seed=i) for i in range(requests_)])),
    }


def run_inferq(args) -> dict[str, Run]:
    with inferq_stack(api_workers=args.api_workers) as stack:
        return measure(stack.url, CHAT_MODEL, args.requests, args.tokens, args.single)


def run_vllm_serve(args) -> dict[str, Run]:
    with vllm_serve() as url:
        return measure(url, CHAT_MODEL, args.requests, args.tokens, args.single)


def report(ours: dict[str, Run], theirs: dict[str, Run], args) -> str:
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    rows = []
    for label, key, attr, fmt in [
        ("1-token request, p50", "latency_1tok", "p50", ms),
        ("1-token request, p99", "latency_1tok", "p99", ms),
        ("1 stream, output tok/s", "single_stream", "throughput", lambda v: f"{v:.1f}"),
        (f"{args.requests} concurrent, output tok/s", "concurrent", "throughput", lambda v: f"{v:.1f}"),
        (f"{args.requests} concurrent, p50 latency", "concurrent", "p50", lambda s: f"{s:.2f} s"),
        (f"{args.requests} concurrent, p99 latency", "concurrent", "p99", lambda s: f"{s:.2f} s"),
    ]:
        a, b = getattr(ours[key], attr), getattr(theirs[key], attr)
        rows.append((label, fmt(a), fmt(b), f"{a / b:.2f}x"))
    added = (ours["latency_1tok"].p50 - theirs["latency_1tok"].p50) * 1000
    batching = ours["concurrent"].throughput / ours["single_stream"].throughput
    lines = [
        f"model {CHAT_MODEL}, {args.tokens} output tokens per request, {os.cpu_count()} CPUs, {platform.machine()}",
        table(rows, ("metric", "inferq", "vllm serve", "inferq/vllm")),
        "",
        f"inferq added p50 latency on a 1-token request: {added:+.1f} ms",
        f"inferq batching gain ({args.requests} concurrent vs 1 stream): {batching:.1f}x",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--single", type=int, default=50, help="sequential 1-token requests")
    parser.add_argument("--api-workers", type=int, default=1)
    args = parser.parse_args()
    started = time.time()
    ours = run_inferq(args)
    theirs = run_vllm_serve(args)
    print(report(ours, theirs, args))
    print(f"(benchmark took {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
