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
import signal
import subprocess
import sys
import time

import requests
from common import API_KEY_ENV, Run, concurrent, sequential, table  # noqa: I001 - bench/ is on sys.path

from tasks.config import load_config
from tasks.keys import KeyStore
from tests.harness import (
    ARTIFACTS,
    CHAT_MODEL,
    ApiServer,
    RedisServer,
    ServiceEnv,
    WorkerProcess,
    free_port,
    temp_dir,
    wait_until,
    write_models_file,
)

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
    directory = temp_dir("inferq-bench-")
    redis_server = RedisServer(directory / "redis").start()
    env = ServiceEnv(redis_server.url, write_models_file(directory))
    os.environ[API_KEY_ENV], _record = KeyStore(redis_server.client()).create(name="bench", rpm=1_000_000)
    worker = WorkerProcess(env, log_name="bench-worker.log").start()
    api = ApiServer(env, workers=args.api_workers).start()
    try:
        return measure(api.url, CHAT_MODEL, args.requests, args.tokens, args.single)
    finally:
        api.stop()
        worker.stop()
        redis_server.stop()


def run_vllm_serve(args) -> dict[str, Run]:
    spec = load_config()["MODELS"][CHAT_MODEL]
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        spec.local_path,
        "--served-model-name",
        CHAT_MODEL,
        "--dtype",
        spec.dtype,
        "--max-model-len",
        str(spec.max_model_len),
        "--max-num-seqs",
        str(spec.max_concurrency),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-log-stats",
        "--seed",
        "0",
    ]
    if spec.engine.get("enforce_eager"):
        command.append("--enforce-eager")
    if spec.engine.get("enable_chunked_prefill") is False:
        command.append("--no-enable-chunked-prefill")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "bench-vllm-serve.log", "wb")  # noqa: SIM115
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(url + "/health", timeout=2).ok, 600, "vllm serve", process=process)
        return measure(url, CHAT_MODEL, args.requests, args.tokens, args.single)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


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
