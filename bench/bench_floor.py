"""What one API request costs before it does anything: the CPU floor of each layer.

The performance issue asks for API + Redis CPU ≤ 1.5 ms per queued submit
and a non-engine CPU per token within 1.5× of `vllm serve`'s API process.
This program shows where the API's CPU goes, layer by layer, so the gap can
be read against what each layer costs on its own:

- through gunicorn (gevent, one process): `GET /health` (no key, no limit),
  `GET /v1/models` (key check, rate limit, worker lookup) and a queued submit,
  each `--requests` times one after another, CPU of the gunicorn process
  (psutil, before and after);
- the same three requests straight into the Flask app in this process (no
  HTTP server), with and without the rate limiter;
- one Redis round trip (HGETALL), from a plain and from a gevent-patched
  process, client and redis-server CPU.

    .venv/bin/python bench/bench_floor.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import time

import aiohttp
import psutil
from common import API_KEY_ENV, _headers, table  # bench/ is on sys.path
from stacks import inferq_stack

from devstack.processes import CHAT_MODEL, RedisServer, ServiceEnv, temp_dir, write_models_file

SUBMIT = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Write a haiku."}], "max_tokens": 8}
CASES = [("GET", "/health", None), ("GET", "/v1/models", None), ("POST", "/queue/chat/completions", SUBMIT)]
#: The jobs the submits leave queued (no worker runs): well under any key's cap.
OPEN_JOBS = "1000000"


def cpu(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


async def sequential(url: str, method: str, body: dict | None, count: int) -> None:
    async with aiohttp.ClientSession(headers=_headers()) as session:
        for _ in range(count):
            async with session.request(method, url, json=body) as response:
                await response.read()
                assert response.status < 300, response.status


def through_gunicorn(count: int) -> dict[str, float]:
    """ms of gunicorn CPU per request, by path."""
    figures = {}
    with inferq_stack(api_workers=1, with_worker=False, INFERQ_MAX_OPEN_JOBS_PER_KEY=OPEN_JOBS) as stack:
        processes = psutil.Process(stack.api.process.pid).children()
        for method, path, body in CASES:
            asyncio.run(sequential(stack.url + path, method, body, 200))
            before = cpu(processes)
            asyncio.run(sequential(stack.url + path, method, body, count))
            figures[path] = 1000 * (cpu(processes) - before) / count
    return figures


def in_process(count: int) -> dict[tuple[str, bool], float]:
    """ms of this process's CPU per request, by path and with or without the rate limiter."""
    from werkzeug.test import EnvironBuilder

    from app import create_app
    from app.auth.keys import KeyStore

    directory = temp_dir("inferq-floor-")
    server = RedisServer(directory / "redis").start()
    try:
        env = ServiceEnv(server.url, write_models_file(directory), INFERQ_MAX_OPEN_JOBS_PER_KEY=OPEN_JOBS)
        os.environ.update(env.vars)
        os.environ[API_KEY_ENV], _ = KeyStore(server.client()).create(name="floor", rpm=100_000_000)
        app = create_app()
        figures = {}
        for limited in (True, False):
            app.extensions["inferq.limiter"].enabled = limited
            for method, path, body in CASES:
                environ = EnvironBuilder(method=method, path=path, json=body, headers=_headers()).get_environ()
                raw = environ["wsgi.input"].read()

                def call(environ: dict = environ, raw: bytes = raw) -> None:
                    b"".join(app({**environ, "wsgi.input": io.BytesIO(raw)}, lambda *_: None))

                for _ in range(200):
                    call()
                started = time.process_time()
                for _ in range(count):
                    call()
                figures[(path, limited)] = 1000 * (time.process_time() - started) / count
        return figures
    finally:
        server.stop()


ROUND_TRIP = """
import sys, time, redis, psutil
if sys.argv[1] == "gevent":
    from gevent import monkey; monkey.patch_all()
client, server, n = redis.Redis(port=int(sys.argv[2])), psutil.Process(int(sys.argv[3])), int(sys.argv[4])
client.hset("floor", mapping={"a": 1, "b": 2, "c": 3})
for _ in range(1000): client.hgetall("floor")
own, theirs = time.process_time(), sum(server.cpu_times()[:2])
for _ in range(n): client.hgetall("floor")
print((time.process_time() - own) * 1e6 / n, (sum(server.cpu_times()[:2]) - theirs) * 1e6 / n)
"""


def round_trips(count: int) -> dict[str, tuple[float, float]]:
    """µs of client and redis-server CPU per HGETALL, plain and under gevent."""
    directory = temp_dir("inferq-floor-rt-")
    server = RedisServer(directory / "redis").start()
    try:
        figures = {}
        for mode in ("plain", "gevent"):
            args = [sys.executable, "-c", ROUND_TRIP, mode, str(server.port), str(server.process.pid), str(count * 5)]
            client, redis_us = subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()
            figures[mode] = (float(client), float(redis_us))
        return figures
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    began = time.time()
    served = through_gunicorn(args.requests)
    direct = in_process(args.requests)
    trips = round_trips(args.requests)
    rows = [
        (f"{method} {path}", f"{served[path]:.2f}", f"{direct[(path, True)]:.2f}", f"{direct[(path, False)]:.2f}")
        for method, path, _ in CASES
    ]
    print(f"{args.requests} sequential requests each, {os.cpu_count()} CPUs; API CPU in ms per request")
    print(table(rows, ("request", "gunicorn+gevent", "Flask only", "Flask, no rate limit")))
    print()
    trip_rows = [(mode, f"{client:.0f} µs", f"{redis_us:.0f} µs") for mode, (client, redis_us) in trips.items()]
    print(table(trip_rows, ("one Redis round trip (HGETALL)", "client CPU", "redis-server CPU")))
    print(f"(benchmark took {time.time() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
