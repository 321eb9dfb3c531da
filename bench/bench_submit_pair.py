"""Before/after submit CPU, both checkouts' stacks up at once and loaded in turn, slice by slice.

CPU time per request drifts on a shared machine by more than the changes it
should judge (the same stack measured twice, a minute apart: ±20 %). Here
one stack per checkout runs side by side (no worker: submits only queue),
and one client sends `--slice` sequential queued submits to one, then to the
other, `--slices` times. Each slice's API + Redis CPU (psutil) is charged to
its stack, so both meet the same drift within seconds of each other. Prints
each stack's median CPU per job over the slices, and the median of the
per-slice-pair ratios.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/bench_submit_pair.py --before /tmp/before [--slices 20] [--slice 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import psutil
from bench_submit import fill, timed  # bench/ is on sys.path
from common import table

HERE = Path(__file__).resolve().parent
STACK = """
import asyncio, json, sys
sys.path.insert(0, {bench!r})
import psutil
from stacks import inferq_stack
from bench_submit import fill
from app.auth.keys import KeyStore
with inferq_stack(api_workers=1, with_worker=False, INFERQ_MAX_OPEN_JOBS_PER_KEY="1000000") as stack:
    key, _ = KeyStore(stack.redis.client()).create(name="pair", rpm=100_000_000)
    api = psutil.Process(stack.api.process.pid)
    pids = [api.pid, *(child.pid for child in api.children()), stack.redis.process.pid]
    print(json.dumps({{"url": stack.url, "key": key, "api": pids[:-1], "redis": pids[-1]}}), flush=True)
    sys.stdin.read()  # until the parent closes it
"""
BODY = {"messages": [{"role": "user", "content": "Write a haiku."}], "max_tokens": 8}


class Stack:
    """One checkout's stack in a process of its own; up until `close`."""

    def __init__(self, tree: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        code = STACK.format(bench=str(tree / "bench"))
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        info = json.loads(self.process.stdout.readline())
        self.url, self.key = info["url"], info["key"]
        self.api = [psutil.Process(pid) for pid in info["api"]]
        self.redis = psutil.Process(info["redis"])

    def cpu(self) -> tuple[float, float]:
        return sum(sum(p.cpu_times()[:2]) for p in self.api), sum(self.redis.cpu_times()[:2])

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def slice_cpu(stack: Stack, count: int, body: dict) -> float:
    """API + Redis CPU ms per job over `count` sequential submits."""
    api0, redis0 = stack.cpu()
    asyncio.run(timed(stack.url, stack.key, count, "POST", "/queue/chat/completions", body))
    api1, redis1 = stack.cpu()
    return 1000 * ((api1 - api0) + (redis1 - redis0)) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (a git worktree)")
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--slice", type=int, default=200)
    args = parser.parse_args()
    from devstack.processes import CHAT_MODEL

    body = {"model": CHAT_MODEL, **BODY}
    stacks = {"before": Stack(args.before.resolve()), "after": Stack(args.after.resolve())}
    try:
        for stack in stacks.values():
            asyncio.run(fill(stack.url, stack.key, 300))  # warm every code path
        costs: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.slices):
            for name, stack in stacks.items():
                costs[name].append(slice_cpu(stack, args.slice, body))
    finally:
        for stack in stacks.values():
            stack.close()
    ratios = [a / b for a, b in zip(costs["after"], costs["before"], strict=True)]
    rows = [(name, f"{statistics.median(values):.3f}", f"{min(values):.3f}", f"{max(values):.3f}")
            for name, values in costs.items()]  # fmt: skip
    print(f"before {args.before}, after {args.after}: {args.slices} slices of {args.slice} sequential submits each")
    print(table(rows, ("stack", "API+Redis CPU ms/job (median)", "min", "max")))
    print(f"after/before, median of per-slice ratios: {statistics.median(ratios):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
