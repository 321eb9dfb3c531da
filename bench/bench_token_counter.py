"""Where should `/utils/token_counter` tokenise? Measured, not guessed.

Two candidates, timed side by side in one run on the real components:

- the API's tokenizer cache (app.tokenizers, the same files the engine loads):
  the tokenizer call alone, and the whole endpoint through the Flask app;
- a round trip through the queue to a worker (job record, Celery message,
  worker claim, terminal write, XREAD wake-up). A tokenise task would pay at
  least this; it is measured with the cheapest real job there is, a one-input
  embedding, and the time the worker spent inside the task is subtracted.

    .venv/bin/python bench/bench_token_counter.py [--count 500] [--jobs 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import table  # noqa: I001 - bench/ is on sys.path

from app.auth.keys import KeyStore
from devstack.processes import (
    CHAT_MODEL,
    EMBED_MODEL,
    RedisServer,
    ServiceEnv,
    WorkerProcess,
    temp_dir,
    write_models_file,
)

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France, and what river runs through it?"},
]


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def time_calls(call, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def measure(app, key: str, count: int, job_count: int) -> dict[str, float]:
    from app import jobs
    from app.job_requests import embedding_request
    from app.tokenizers import ModelTokenizer

    specs = app.extensions["inferq.settings"].models
    chat, embed = specs[CHAT_MODEL], specs[EMBED_MODEL]
    started = time.perf_counter()
    tokenizer = ModelTokenizer(chat.tokenizer_path)
    cold_load = time.perf_counter() - started
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": CHAT_MODEL, "messages": MESSAGES}

    def endpoint() -> None:
        response = client.post("/utils/token_counter", json=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)

    endpoint()  # loads the tokenizer into the app's cache
    figures = {
        "tokenizer_load_ms": cold_load * 1e3,
        "tokenizer_us": median_us(time_calls(lambda: tokenizer.encode_chat(MESSAGES), count)),
        "endpoint_us": median_us(time_calls(endpoint, count)),
    }
    with app.test_request_context():
        jobs.wait_for_worker(embed)
        round_trips, in_worker = [], []
        for i in range(job_count + 3):
            request = embedding_request(embed, {"input": [f"short text {i}"], "encoding_format": "float"})
            started = time.perf_counter()
            job = jobs.service().submit(owner="bench", request=request)
            jobs.wait_result(job, 60)
            elapsed = time.perf_counter() - started
            record = jobs.service().get(job.id)
            if i >= 3:  # the first jobs warm the worker up
                round_trips.append(elapsed)
                in_worker.append(record.completed_at - record.started_at)
    overheads = [total - work for total, work in zip(round_trips, in_worker, strict=True)]
    figures["queue_round_trip_us"] = median_us(round_trips)
    figures["queue_overhead_us"] = median_us(overheads)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="counts per in-API measurement")
    parser.add_argument("--jobs", type=int, default=50, help="jobs through the queue")
    args = parser.parse_args()
    directory = temp_dir("inferq-bench-")
    redis_server = RedisServer(directory / "redis").start()
    models_file = write_models_file(directory)
    env = ServiceEnv(redis_server.url, models_file)
    key, _record = KeyStore(redis_server.client()).create(name="bench", rpm=1_000_000)
    worker = WorkerProcess(env, model=EMBED_MODEL, log_name="bench-token-counter-worker.log").start()
    try:
        from app import create_app

        app = create_app({"REDIS_URL": redis_server.url, "MODELS_FILE": str(models_file)})
        figures = measure(app, key, args.count, args.jobs)
    finally:
        worker.stop()
        redis_server.stop()
    queue = figures["queue_round_trip_us"]
    tokenizer, endpoint = figures["tokenizer_us"], figures["endpoint_us"]
    rows = [
        ("tokenizer call (cached)", "API", f"{tokenizer:.0f} µs", f"{queue / tokenizer:.0f}x"),
        ("/utils/token_counter, whole request", "API", f"{endpoint:.0f} µs", f"{queue / endpoint:.0f}x"),
        ("1-input job, submit to result", "queue + worker", f"{queue / 1000:.2f} ms", "1x"),
        ("  of which outside the task", "queue", f"{figures['queue_overhead_us'] / 1000:.2f} ms", ""),
    ]
    print(f"{CHAT_MODEL}, {len(MESSAGES)} messages; medians of {args.count} counts and {args.jobs} jobs")
    print(table(rows, ("path", "where", "median", "queue job / path")))
    print(f"(cold tokenizer load, once per model and API process: {figures['tokenizer_load_ms']:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
