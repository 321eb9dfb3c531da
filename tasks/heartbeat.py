"""Worker liveness, as the API sees it.

Celery's own worker discovery (`inspect ping`) costs a broadcast round trip
per question; the API asks on every synchronous request, so each worker
instead refreshes a score in a per-model sorted set once a second, and only
once its engine is ready. "Live" = refreshed within the heartbeat TTL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis

from tasks.keyspace import KEYS

#: Seconds between beats: well inside the API's TTL (INFERQ_WORKER_HEARTBEAT_TTL).
INTERVAL = 1.0

workers_key, load_key = KEYS.workers, KEYS.worker_loads


def live_workers(client: redis.Redis, model: str, ttl: float) -> int:
    return int(client.zcount(workers_key(model), time.time() - ttl, "+inf"))


def worker_loads(client: redis.Redis, model: str) -> dict[str, dict]:
    raw = client.hgetall(load_key(model))
    return {k.decode(): json.loads(v) for k, v in raw.items()}


class Heartbeat:
    """This worker's entry in its model's live set, with the load it reports.

    The worker runs `beat` on a `tasks.background.BackgroundLoop` and `leave`
    when that loop stops, so the API stops counting a cleanly stopped worker
    at once instead of after the TTL.
    """

    def __init__(self, client: redis.Redis, model: str, name: str, load: Callable[[], dict]) -> None:
        self.client, self.model, self.name, self.load = client, model, name, load

    def beat(self) -> None:
        pipe = self.client.pipeline()
        pipe.zadd(workers_key(self.model), {self.name: time.time()})
        pipe.hset(load_key(self.model), self.name, json.dumps(self.load()))
        pipe.execute()

    def leave(self) -> None:
        pipe = self.client.pipeline()
        pipe.zrem(workers_key(self.model), self.name)
        pipe.hdel(load_key(self.model), self.name)
        pipe.execute()
