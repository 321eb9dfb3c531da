"""Where the CPU goes: inferq's queue vs `vllm serve`'s API process, per request and per output token.

On two cores every CPU-millisecond the API, Redis and the worker's own Python
spend is taken from the engine core, and CPU time can be counted exactly where
wall time is noisy. Each process's user + system time is read (psutil, from
/proc) before and after the same load, and split into:

- inferq: the gunicorn master and its workers (API), redis-server, the Celery
  worker's main process (tasks, the vLLM client, detokenization), and the
  engine (every process below the worker: vLLM's engine core and its model
  worker);
- vllm serve: its API process (HTTP, the vLLM client, detokenization) and the
  engine (every process below it).

Everything that is not the engine is the cost of the service around it. The
load is `--requests` concurrent chat completions of `--tokens` output tokens
(`ignore_eos`, so both stacks produce the same tokens), non-streamed unless
`--stream`; the two stacks alternate for `--rounds` rounds and medians are
printed. With `--embeddings` the load is `--requests` concurrent embedding
requests of `--inputs` inputs each (default one) on the embedding model
instead, counted per request (`--requests 1 --inputs 256`: one large request).

The engine's CPU is not a measure of its work: vLLM's model worker spins on
its shared-memory queue for a second after every step (`sched_yield`), so it
reads close to one core for as long as the load lasts, on either stack.

    .venv/bin/python bench/bench_cpu.py [--requests 64] [--tokens 64] [--rounds 3] [--stream]
                                        [--embeddings [--inputs 1]]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
import psutil
from bench_embeddings import short_inputs
from common import API_KEY_ENV, table  # bench/ is on sys.path
from stacks import inferq_stack, vllm_serve

from devstack.processes import CHAT_MODEL, EMBED_MODEL

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


def cpu_seconds(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


@dataclass
class Parts:
    """The processes of one stack, by role; found again at each sample, so one started mid-run is counted."""

    roles: dict[str, Callable[[], list[psutil.Process]]]

    def sample(self) -> dict[str, dict[int, float]]:
        return {role: {p.pid: cpu_seconds(p) for p in find()} for role, find in self.roles.items()}


def spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per role between two samples (a process that appeared counts from zero)."""
    return {role: sum(cpu - before[role].get(pid, 0.0) for pid, cpu in after[role].items()) for role in after}


async def chat(session: aiohttp.ClientSession, url: str, body: dict) -> int:
    async with session.post(url + "/v1/chat/completions", json=body) as response:
        if not body.get("stream"):
            payload = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {payload}")
            return payload["usage"]["completion_tokens"]
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {await response.text()}")
        produced = 0
        async for line in response.content:  # the last chunk before [DONE] carries the usage
            if line.startswith(b"data: {") and b'"usage":{' in line:
                produced = json.loads(line[6:])["usage"]["completion_tokens"]
        return produced


async def load(url: str, requests_: int, tokens: int, stream: bool) -> int:
    bodies = [
        {"model": CHAT_MODEL, "messages": PROMPT, "max_tokens": tokens, "ignore_eos": True, "seed": i}
        | ({"stream": True, "stream_options": {"include_usage": True}} if stream else {})
        for i in range(requests_)
    ]
    headers = {"Authorization": f"Bearer {os.environ.get(API_KEY_ENV, '')}"}
    connector = aiohttp.TCPConnector(limit=requests_)
    timeout = aiohttp.ClientTimeout(total=900)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
        return sum(await asyncio.gather(*(chat(session, url, body) for body in bodies)))


async def embed(url: str, requests_: int, inputs: int) -> int:
    texts = short_inputs(requests_ * inputs)
    bodies = [texts[i] if inputs == 1 else texts[i * inputs : (i + 1) * inputs] for i in range(requests_)]
    headers = {"Authorization": f"Bearer {os.environ.get(API_KEY_ENV, '')}"}
    connector = aiohttp.TCPConnector(limit=requests_)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        return sum(await asyncio.gather(*(one_embedding(session, url, body) for body in bodies)))


async def one_embedding(session: aiohttp.ClientSession, url: str, inputs: str | list[str]) -> int:
    async with session.post(url + "/v1/embeddings", json={"model": EMBED_MODEL, "input": inputs}) as response:
        payload = await response.json()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {payload}")
        return len(payload["data"])


def run_load(url: str, args, tokens: int) -> int:
    if args.embeddings:
        return asyncio.run(embed(url, args.requests, getattr(args, "inputs", 1)))
    return asyncio.run(load(url, args.requests, tokens, args.stream))


def measure(url: str, parts: Parts, args) -> dict[str, float]:
    """CPU-ms per role for one load, per request and per output unit, after a warm-up of the same shape."""
    run_load(url, args, 8)  # as many at once: every pool grows before counting
    before, started = parts.sample(), time.monotonic()
    produced = run_load(url, args, args.tokens)
    wall = time.monotonic() - started
    used = spent(before, parts.sample())
    used["not engine"] = sum(v for role, v in used.items() if role != "engine")
    result = {f"{role} ms/token": 1000 * v / produced for role, v in used.items()}
    result |= {f"{role} ms/request": 1000 * v / args.requests for role, v in used.items()}
    result["tok/s"] = produced / wall
    return result


@contextmanager
def inferq_parts(args) -> Iterator[tuple[str, Parts]]:
    with inferq_stack(api_workers=args.api_workers, model=model_of(args)) as stack:
        worker = stack.worker.process.pid
        parts = Parts(
            {
                "API": lambda: tree(stack.api.process.pid),
                "Redis": lambda: tree(stack.redis.process.pid),
                "worker": lambda: [psutil.Process(worker)],
                "engine": lambda: tree(worker)[1:],
            }
        )
        yield stack.url, parts


@contextmanager
def vllm_parts(args) -> Iterator[tuple[str, Parts]]:
    with vllm_serve(model_of(args)) as url:
        server = next(p for p in psutil.process_iter(["cmdline"]) if _is_vllm_api(p, url))
        parts = Parts({"API": lambda: [server], "engine": lambda: server.children(recursive=True)})
        yield url, parts


def model_of(args) -> str:
    return EMBED_MODEL if args.embeddings else CHAT_MODEL


def _is_vllm_api(process: psutil.Process, url: str) -> bool:
    command = process.info.get("cmdline") or []
    return "vllm.entrypoints.openai.api_server" in command and url.rsplit(":", 1)[1] in command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating inferq / vllm serve runs")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--embeddings", action="store_true", help="embedding requests instead of chat")
    parser.add_argument("--inputs", type=int, default=1, help="with --embeddings: inputs per request")
    parser.add_argument("--api-workers", type=int, default=1)
    args = parser.parse_args()
    began = time.time()
    runs: dict[str, list[dict[str, float]]] = {"inferq": [], "vllm serve": []}
    for _ in range(args.rounds):
        for name, stack in (("inferq", inferq_parts), ("vllm serve", vllm_parts)):
            with stack(args) as (url, parts):
                runs[name].append(measure(url, parts, args))
    print(report(runs, args))
    print(f"(benchmark took {time.time() - began:.0f} s)")
    return 0


def report(runs: dict[str, list[dict[str, float]]], args) -> str:
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    ours, theirs = med["inferq"], med["vllm serve"]
    rate = "embeddings/s" if args.embeddings else "output tok/s"
    rows = [(rate, f"{ours['tok/s']:.1f}", f"{theirs['tok/s']:.1f}", f"{ours['tok/s'] / theirs['tok/s']:.2f}x")]
    units = ("ms/request",) if args.embeddings else ("ms/token", "ms/request")  # one embedding per request
    for unit in units:
        for role in ("API", "Redis", "worker", "not engine", "engine"):
            a, b = ours.get(f"{role} {unit}"), theirs.get(f"{role} {unit}")
            ratio = f"{a / b:.2f}x" if a is not None and b else ""
            rows.append((f"CPU {unit}, {role}", _ms(a), _ms(b), ratio))
    if args.embeddings:
        load = f"{args.requests} concurrent embedding requests of {args.inputs} input(s), {EMBED_MODEL}"
        per = "embedding"
    else:
        kind = "streamed" if args.stream else "non-streamed"
        load = f"{args.requests} concurrent {kind} chat requests x {args.tokens} tokens, {CHAT_MODEL}"
        per = "output token"
    ratio = ours["not engine ms/token"] / theirs["API ms/token"]
    return "\n".join(
        [
            f"{load}, {os.cpu_count()} CPUs, {args.api_workers} API worker(s); "
            f"medians of {args.rounds} alternating rounds",
            table(rows, ("metric", "inferq", "vllm serve", "inferq/vllm")),
            "",
            f"non-engine CPU per {per}, inferq (API + Redis + worker) / vllm serve (API process): {ratio:.2f}x",
        ]
    )


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
