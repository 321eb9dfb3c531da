"""Worker liveness, as the API sees it.

Celery's own worker discovery (`inspect ping`) costs a broadcast round trip
per question; the API asks on every synchronous request, so each worker
instead refreshes a score in a per-model sorted set once a second, and only
once its engine is ready. "Live" = refreshed within the heartbeat TTL.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable

import redis

from tasks.keyspace import KEYS

workers_key, load_key = KEYS.workers, KEYS.worker_loads


def live_workers(client: redis.Redis, model: str, ttl: float) -> int:
    return int(client.zcount(workers_key(model), time.time() - ttl, "+inf"))


def worker_loads(client: redis.Redis, model: str) -> dict[str, dict]:
    raw = client.hgetall(load_key(model))
    return {k.decode(): json.loads(v) for k, v in raw.items()}


class Heartbeat:
    def __init__(
        self, client: redis.Redis, model: str, name: str, load: Callable[[], dict], interval: float = 1.0
    ) -> None:
        self.client, self.model, self.name, self.load, self.interval = client, model, name, load, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inferq-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def beat(self) -> None:
        pipe = self.client.pipeline()
        pipe.zadd(workers_key(self.model), {self.name: time.time()})
        pipe.hset(load_key(self.model), self.name, json.dumps(self.load()))
        pipe.execute()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # Redis may be restarting; keep trying
                self.beat()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        try:
            pipe = self.client.pipeline()
            pipe.zrem(workers_key(self.model), self.name)
            pipe.hdel(load_key(self.model), self.name)
            pipe.execute()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
