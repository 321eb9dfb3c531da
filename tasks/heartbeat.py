"""Worker liveness, as the API sees it.

Celery's own worker discovery (`inspect ping`) costs a broadcast round trip
per question; the API asks on every synchronous request, so each worker
instead refreshes a score in a per-model sorted set once a second, and only
while its engine is ready. "Live" = refreshed within the heartbeat TTL, by
Redis's clock: a worker whose own clock is a minute off is still live.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import redis
from redis.commands.core import Script

from tasks.jobs.scripts import NOW
from tasks.keyspace import KEYS

#: Seconds between beats: well inside the API's TTL (INFERQ_WORKER_HEARTBEAT_TTL).
INTERVAL = 1.0

workers_key, load_key = KEYS.workers, KEYS.worker_loads

# KEYS: workers zset, loads hash. ARGV: worker name, load json.
_BEAT = Script(
    None,
    (
        NOW
        + """
redis.call('ZADD', KEYS[1], server_now(), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
"""
    ).encode(),
)
# KEYS: workers zset. ARGV: ttl.
_LIVE = Script(None, (NOW + "return redis.call('ZCOUNT', KEYS[1], server_now() - tonumber(ARGV[1]), '+inf')").encode())


def live_workers(client: redis.Redis, model: str, ttl: float) -> int:
    return int(_LIVE(keys=[workers_key(model)], args=[ttl], client=client))


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
        """Say "live", unless the engine is down: a worker that cannot run jobs must not draw them."""
        load = self.load()
        if not load.get("healthy", True):
            self.leave()
            return
        _BEAT(
            keys=[workers_key(self.model), load_key(self.model)], args=[self.name, json.dumps(load)], client=self.client
        )

    def leave(self) -> None:
        pipe = self.client.pipeline()
        pipe.zrem(workers_key(self.model), self.name)
        pipe.hdel(load_key(self.model), self.name)
        pipe.execute()
