"""The batch queue: how fast inferq accepts jobs, and how fast it drains them vs the engine alone.

(1) Submit rate: POST /queue/chat/completions from concurrent clients while
no worker consumes (the accept path alone: validate, tokenise, write the
record, send the message): jobs/s and submit latency p50/p99.
(2) Drain: 500 queued jobs through the worker, output tokens/s from the first
start to the last completion (from the job records), against vLLM's offline
`LLM.generate` on the same token prompts and settings, in the same run.

    .venv/bin/python bench/bench_queue.py [--submit 2000] [--jobs 500] [--tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from common import _headers, table
from stacks import inferq_stack

from devstack.processes import CHAT_MODEL, REPO
from tasks.settings import Settings

TOPICS = ["the sea", "a lighthouse", "autumn", "a city at night", "bread", "mountains", "a cat", "rain"]


def body(i: int, tokens: int) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    return {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"Write a short poem about {topic} #{i}."}],
            "max_tokens": tokens, "ignore_eos": True, "seed": i}  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def submit_many(url: str, count: int, concurrency: int, tokens: int) -> tuple[list[str], list[float], float]:
    latencies: list[float] = []
    ids: list[str] = [""] * count
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=_headers(), connector=connector) as session:

        async def client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                started = time.perf_counter()
                async with session.post(url + "/queue/chat/completions", json=body(i, tokens)) as response:
                    payload = await response.json()
                    assert response.status == 202, payload
                latencies.append(time.perf_counter() - started)
                ids[i] = payload["id"]

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return ids, latencies, wall


def drain(stack, ids: list[str], timeout: float = 1800) -> tuple[int, float]:
    from tasks.jobs import JobService, Policy

    store = JobService(stack.redis.client(), Policy(retention=3600))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [store.get(job_id).status for job_id in ids]
        if all(s == "completed" for s in statuses):
            break
        assert not any(s in ("failed", "cancelled", "expired") for s in statuses), statuses
        time.sleep(1)
    records = [store.get(job_id) for job_id in ids]
    tokens = sum(r.usage["completion_tokens"] for r in records)
    return tokens, max(r.completed_at for r in records) - min(r.started_at for r in records)


def offline(prompts: list[list[int]], tokens: int) -> tuple[int, float]:
    job = {"repo": str(REPO), "model": CHAT_MODEL, "prompts": prompts, "max_tokens": tokens,
           "seeds": list(range(len(prompts)))}  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    script = Path(__file__).with_name("offline_generate.py")
    done = subprocess.run([sys.executable, str(script)], input=json.dumps(job), capture_output=True, text=True,
                          env=env, check=True)  # fmt: skip
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    return result["tokens"], result["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submit", type=int, default=2000, help="jobs for the submit-rate run")
    parser.add_argument("--levels", default="4,8,16,32", help="concurrent submitting clients to try")
    parser.add_argument("--jobs", type=int, default=500, help="jobs for the drain run")
    parser.add_argument("--tokens", type=int, default=32, help="output tokens per drained job")
    parser.add_argument("--api-workers", type=int, default=2)
    args = parser.parse_args()
    started = time.time()

    levels = [int(level) for level in args.levels.split(",")]
    submit_rows = []
    with inferq_stack(api_workers=args.api_workers, with_worker=False) as stack:
        asyncio.run(submit_many(stack.url, 100, 8, args.tokens))  # warm up tokenizers and pools
        for level in levels:
            _, latencies, wall = asyncio.run(submit_many(stack.url, args.submit, level, args.tokens))
            submit_rows.append((f"{level} clients", f"{args.submit / wall:.0f}", f"{pct(latencies, 50) * 1000:.1f} ms",
                                f"{pct(latencies, 99) * 1000:.1f} ms"))  # fmt: skip

    with inferq_stack(api_workers=args.api_workers) as stack:
        ids, _, _ = asyncio.run(submit_many(stack.url, args.jobs, 16, args.tokens))
        ours_tokens, ours_seconds = drain(stack, ids)
        from app.tokenizers import ModelTokenizer

        tokenizer = ModelTokenizer(Settings.load().models[CHAT_MODEL].local_path)
        prompts = [tokenizer.encode_chat(body(i, args.tokens)["messages"]) for i in range(args.jobs)]
    theirs_tokens, theirs_seconds = offline(prompts, args.tokens)

    ours, theirs = ours_tokens / ours_seconds, theirs_tokens / theirs_seconds
    print(f"model {CHAT_MODEL}, {os.cpu_count()} CPUs (client, API, Redis share them); submit: {args.submit} jobs "
          f"per level, {args.api_workers} gunicorn workers, no worker consuming")  # fmt: skip
    print(table(submit_rows, ("submitting", "jobs/s", "p50", "p99")))
    print()
    rows = [
        (f"drain {args.jobs} jobs x {args.tokens} tokens", f"{ours:.1f} tok/s", f"{theirs:.1f} tok/s",
         f"{ours / theirs:.2f}x"),
        ("wall", f"{ours_seconds:.1f} s", f"{theirs_seconds:.1f} s", ""),
    ]  # fmt: skip
    print(table(rows, ("metric", "inferq queue", "offline generate", "inferq/offline")))
    print(f"(benchmark took {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
