"""Curves, not points: inferq vs `vllm serve` from 1 to 256 concurrent requests.

At each concurrency c (1, 4, 16, 64, 128, 256) both stacks get the same load:
c concurrent non-streamed chat requests of `--tokens` output tokens
(`ignore_eos`), for output throughput and p50/p99 latency, then c concurrent
streamed requests of `--stream-tokens`, for time to first token. At c = 1 the
request is repeated `--single` times one after the other. The stacks
alternate (inferq, vllm serve, inferq, ...) for `--rounds` rounds and every
figure is the median over the rounds; the ratios are of those medians. The
plot (throughput and TTFT against concurrency, both stacks) goes to `--png`
(by default, for a run of every level only, `docs/bench-curves.png`).

    .venv/bin/python bench/bench_curves.py [--rounds 3] [--tokens 32] [--png docs/bench-curves.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from common import _headers, table  # bench/ is on sys.path
from stacks import inferq_stack, vllm_serve

from devstack.processes import CHAT_MODEL, REPO

LEVELS = (1, 4, 16, 64, 128, 256)
PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]
STACKS = ("inferq", "vllm serve")


@dataclass
class Point:
    """One stack at one concurrency in one round."""

    throughput: float  # output tokens/s, non-streamed
    p50: float  # seconds, non-streamed request latency
    p99: float
    ttft_p50: float  # seconds to the first content chunk, streamed
    ttft_p99: float


@dataclass
class Curves:
    points: dict[str, dict[int, list[Point]]] = field(default_factory=lambda: {s: {} for s in STACKS})

    def add(self, stack: str, level: int, point: Point) -> None:
        self.points[stack].setdefault(level, []).append(point)

    def median(self, stack: str, level: int, metric: str) -> float:
        return statistics.median(getattr(p, metric) for p in self.points[stack][level])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def complete(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[float, int]:
    started = time.perf_counter()
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        payload = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {payload}")
    return time.perf_counter() - started, payload["usage"]["completion_tokens"]


async def first_token(session: aiohttp.ClientSession, url: str, body: dict) -> float:
    started, ttft = time.perf_counter(), None
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {await response.text()}")
        async for raw in response.content:
            if ttft is None and raw.startswith(b"data: {"):
                chunk = json.loads(raw[6:])
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    ttft = time.perf_counter() - started
    if ttft is None:
        raise RuntimeError("a stream ended without content")
    return ttft


async def wave(url: str, level: int, repeat: int, call: Callable, body: Callable[[int], dict]) -> tuple[list, float]:
    """`level` concurrent calls, `repeat` times over; the results and the wall time."""
    connector = aiohttp.TCPConnector(limit=level)
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(connector=connector, headers=_headers(), timeout=timeout) as session:
        started, results = time.perf_counter(), []
        for r in range(repeat):
            results += await asyncio.gather(*(call(session, url, body(r * level + i)) for i in range(level)))
        return results, time.perf_counter() - started


def measure(url: str, level: int, args) -> Point:
    repeat = args.single if level == 1 else 1
    plain = {"model": CHAT_MODEL, "messages": PROMPT, "max_tokens": args.tokens, "ignore_eos": True}
    streamed = plain | {"max_tokens": args.stream_tokens, "stream": True}
    done, wall = asyncio.run(wave(url, level, repeat, complete, lambda i: plain | {"seed": i}))
    ttfts, _ = asyncio.run(wave(url, level, repeat, first_token, lambda i: streamed | {"seed": i}))
    latencies = [latency for latency, _ in done]
    return Point(
        throughput=sum(tokens for _, tokens in done) / wall,
        p50=statistics.median(latencies),
        p99=pct(latencies, 99),
        ttft_p50=statistics.median(ttfts),
        ttft_p99=pct(ttfts, 99),
    )


def run_stack(name: str, curves: Curves, args) -> None:
    stack = inferq_stack(api_workers=args.api_workers) if name == "inferq" else vllm_serve()
    with stack as handle:
        url = handle if isinstance(handle, str) else handle.url
        measure(url, 8, argparse.Namespace(**{**vars(args), "tokens": 8, "stream_tokens": 4}))  # warm up
        for level in args.levels:
            curves.add(name, level, measure(url, level, args))
            print(f"  {name:10s} c={level:<4d} {curves.points[name][level][-1]}", flush=True)


def report(curves: Curves, args) -> str:
    rows = []
    for level in args.levels:
        med = {s: {m: curves.median(s, level, m) for m in Point.__dataclass_fields__} for s in STACKS}
        ours, theirs = med["inferq"], med["vllm serve"]
        rows.append((f"c={level} output tok/s", f"{ours['throughput']:.1f}", f"{theirs['throughput']:.1f}",
                     f"{ours['throughput'] / theirs['throughput']:.2f}x"))  # fmt: skip
        for metric, label in (("p50", "latency p50"), ("p99", "latency p99")):
            rows.append((f"c={level} {label}", _seconds(ours[metric]), _seconds(theirs[metric]),
                         f"{ours[metric] / theirs[metric]:.2f}x"))  # fmt: skip
        added = (ours["ttft_p50"] - theirs["ttft_p50"]) * 1000
        rows.append((f"c={level} TTFT p50", f"{ours['ttft_p50'] * 1000:.1f} ms", f"{theirs['ttft_p50'] * 1000:.1f} ms",
                     f"{added:+.1f} ms"))  # fmt: skip
    return "\n".join(
        [
            f"model {CHAT_MODEL}, {args.tokens} output tokens per request ({args.stream_tokens} streamed), "
            f"{os.cpu_count()} CPUs, {platform.machine()}; medians of {args.rounds} alternating rounds",
            table(rows, ("concurrency / metric", "inferq", "vllm serve", "inferq/vllm")),
        ]
    )


def _seconds(value: float) -> str:
    """Short latencies in ms (a 1-token request's few ms added must show), long ones in s."""
    return f"{value * 1000:.1f} ms" if value < 10 else f"{value:.2f} s"


def plot(curves: Curves, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for stack, style in zip(STACKS, ("o-", "s--"), strict=True):
        left.plot(args.levels, [curves.median(stack, c, "throughput") for c in args.levels], style, label=stack)
        right.plot(args.levels, [1000 * curves.median(stack, c, "ttft_p50") for c in args.levels], style, label=stack)
    for axis, title, unit in ((left, "Output throughput", "tokens/s"), (right, "Time to first token, p50", "ms")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(args.levels, [str(c) for c in args.levels])
        axis.set_xlabel("concurrent requests")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"{CHAT_MODEL} on {os.cpu_count()} CPUs, medians of {args.rounds} alternating rounds")
    figure.tight_layout()
    figure.savefig(args.png, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--stream-tokens", type=int, default=8)
    parser.add_argument("--single", type=int, default=4, help="sequential requests at concurrency 1")
    parser.add_argument("--levels", type=lambda s: [int(c) for c in s.split(",")], default=list(LEVELS))
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--png", help="where the plot goes (default: docs/bench-curves.png, for the full run only)")
    args = parser.parse_args()
    if args.png is None and args.levels == list(LEVELS):
        args.png = str(REPO / "docs" / "bench-curves.png")  # a partial run must not replace the README's curves
    if args.png:
        import matplotlib  # noqa: F401 - fail now, not after half an hour of load (`make bench` installs it)
    began, curves = time.time(), Curves()
    for round_ in range(args.rounds):
        print(f"round {round_ + 1} of {args.rounds}", flush=True)
        for name in STACKS:
            run_stack(name, curves, args)
    print(report(curves, args))
    if args.png:
        plot(curves, args)
        print(f"plot: {args.png}")
    print(f"(benchmark took {time.time() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
