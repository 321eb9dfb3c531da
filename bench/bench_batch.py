"""The Batch API: a batch drains as fast as the engine alone, interactive requests still overtake it,
and a 200 MB upload does not grow the API's memory.

(1) Upload: peak RSS of the API's gunicorn workers during a 200 MB upload, over their idle RSS.
(2) Drain: an N-line chat batch (default 2 000) through the Batch API and the worker, output tokens/s
    from the first line's start to the last line's end (from the job records), against vLLM's
    offline `LLM.generate` on the same token prompts and settings, in the same run.
(3) Overtaking: 1-token chat requests, one after the other, idle and while the batch runs: p50.

    .venv/bin/python bench/bench_batch.py [--lines 2000] [--tokens 32] [--upload-mb 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time

import httpx
import psutil
from bench_queue import body, offline
from common import _headers, sequential, table
from stacks import inferq_stack

from devstack.processes import CHAT_MODEL
from tasks.batches.record import line_job_id
from tasks.settings import Settings

ONE_TOKEN = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}


def api_rss(stack) -> int:
    """Largest resident set among the API's gunicorn workers (each holds its own uploads)."""
    master = psutil.Process(stack.api.process.pid)
    return max((child.memory_info().rss for child in master.children(recursive=True)), default=0)


def upload_peak(stack, megabytes: int) -> tuple[int, int]:
    """(idle RSS, peak RSS) of the busiest API worker while a file of `megabytes` MB is uploaded."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as handle:
        line = json.dumps({"custom_id": "x" * 20, "method": "POST", "url": "/v1/chat/completions", "body": ONE_TOKEN})
        block = ((line + "\n") * 1000).encode()
        while handle.tell() < megabytes * 1_000_000:
            handle.write(block)
        handle.flush()
        idle, peak, done = api_rss(stack), 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, api_rss(stack))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with open(handle.name, "rb") as source, httpx.Client(headers=_headers(), timeout=600) as client:
            reply = client.post(
                stack.url + "/v1/files", data={"purpose": "batch"}, files={"file": ("big.jsonl", source)}
            )
        done.set()
        sampler.join()
        assert reply.status_code == 200, reply.text
    return idle, peak


def run_batch(stack, lines: int, tokens: int) -> tuple[str, dict]:
    requests = b"".join(
        json.dumps(
            {"custom_id": f"b-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body(i, tokens)}
        ).encode()
        + b"\n"
        for i in range(lines)
    )
    with httpx.Client(base_url=stack.url, headers=_headers(), timeout=600) as client:
        uploaded = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("b.jsonl", requests)}).json()
        batch = client.post(
            "/v1/batches",
            json={"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        ).json()
        while batch["status"] not in ("completed", "failed", "cancelled", "expired"):
            time.sleep(1)
            batch = client.get(f"/v1/batches/{batch['id']}").json()
    return batch["id"], batch


def drain_rate(stack, batch_id: str, lines: int) -> tuple[int, float]:
    from tasks.jobs import JobService

    store = JobService(stack.redis.client())
    records = [store.get(line_job_id(batch_id, i)) for i in range(lines)]
    tokens = sum(r.usage["completion_tokens"] for r in records)
    return tokens, max(r.completed_at for r in records) - min(r.started_at for r in records)


def interactive_while(stack, running: threading.Event) -> list[float]:
    """1-token requests, one after the other, for as long as `running` is set."""
    latencies: list[float] = []
    while running.is_set():
        latencies += asyncio.run(sequential(stack.url, ONE_TOKEN, 5)).latencies
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--upload-mb", type=int, default=200)
    args = parser.parse_args()
    started = time.time()
    files_dir = tempfile.mkdtemp(prefix="inferq-bench-files-")
    with inferq_stack(api_workers=2, INFERQ_FILES_DIR=files_dir) as stack:
        idle_rss, peak_rss = upload_peak(stack, args.upload_mb)
        asyncio.run(sequential(stack.url, ONE_TOKEN, 10))  # warm up
        idle = asyncio.run(sequential(stack.url, ONE_TOKEN, 40)).latencies
        running, busy = threading.Event(), []
        running.set()
        prober = threading.Thread(target=lambda: busy.extend(interactive_while(stack, running)), daemon=True)
        prober.start()
        batch_id, batch = run_batch(stack, args.lines, args.tokens)
        running.clear()
        prober.join()
        assert batch["status"] == "completed", batch
        ours_tokens, ours_seconds = drain_rate(stack, batch_id, args.lines)
        from app.tokenizers import ModelTokenizer

        tokenizer = ModelTokenizer(Settings.load().models[CHAT_MODEL].local_path)
        prompts = [tokenizer.encode_chat(body(i, args.tokens)["messages"]) for i in range(args.lines)]
    theirs_tokens, theirs_seconds = offline(prompts, args.tokens)
    ours, theirs = ours_tokens / ours_seconds, theirs_tokens / theirs_seconds
    p50_idle, p50_busy = statistics.median(idle), statistics.median(busy)
    print(f"model {CHAT_MODEL}, {os.cpu_count()} CPUs; batch of {args.lines} chat lines x {args.tokens} tokens")
    rows = [
        ("drain, output tok/s", f"{ours:.1f}", f"{theirs:.1f}", f"{ours / theirs:.2f}x"),
        ("wall", f"{ours_seconds:.1f} s", f"{theirs_seconds:.1f} s", ""),
    ]
    print(table(rows, ("metric", "inferq batch", "offline generate", "batch/offline")))
    print()
    rows = [
        ("1-token request p50", f"{p50_idle * 1000:.1f} ms", f"{p50_busy * 1000:.1f} ms", f"{p50_busy / p50_idle:.2f}x")
    ]
    print(table(rows, ("metric", "idle", f"during the batch (n={len(busy)})", "busy/idle")))
    print()
    print(f"API worker RSS during a {args.upload_mb} MB upload: idle {idle_rss / 2**20:.0f} MiB, "
          f"peak {peak_rss / 2**20:.0f} MiB (+{(peak_rss - idle_rss) / 2**20:.0f} MiB)")  # fmt: skip
    print(f"(benchmark took {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
