"""Service-wide job and token counters in Redis, for the Prometheus scrape.

Every API process and worker updates the same hash, so one scrape of any API
instance sees the whole service (the per-process HTTP metrics live in
prometheus-client instead). Fields: `submitted:<model>`, `ended:<model>:<status>`
(each job counted once, when its terminal state is written) and
`tokens:<model>:prompt|completion`. Counters only grow; Prometheus's rate()
turns them into throughput.
"""

from __future__ import annotations

from typing import Any

import redis

KEY = "inferq:stats"


def count_submitted(pipe: redis.client.Pipeline | redis.Redis, model: str) -> None:
    pipe.hincrby(KEY, f"submitted:{model}", 1)


def count_ended(client: redis.Redis, model: str, status: str, usage: dict[str, Any] | None = None) -> None:
    """Called once per job, by whoever won the compare-and-set that ended it."""
    pipe = client.pipeline(transaction=False)
    pipe.hincrby(KEY, f"ended:{model}:{status}", 1)
    if usage:
        pipe.hincrby(KEY, f"tokens:{model}:prompt", int(usage.get("prompt_tokens") or 0))
        pipe.hincrby(KEY, f"tokens:{model}:completion", int(usage.get("completion_tokens") or 0))
    pipe.execute()


def read(client: redis.Redis) -> dict[str, int]:
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in client.hgetall(KEY).items()}
