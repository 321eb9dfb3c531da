"""Service-wide job and token counters, for the Prometheus scrape.

Every API process and worker updates one hash, so one scrape of any API
instance sees the whole service. Fields: `submitted:<model>` (written by the
job service's submit), `ended:<model>:<status>` and
`tokens:<model>:prompt|completion` (written inside the Lua step that ends a
job, so each job is counted once). Counters only grow; Prometheus's rate()
turns them into throughput.
"""

from __future__ import annotations

import redis

from tasks.keyspace import KEYS


def read(client: redis.Redis) -> dict[str, int]:
    return {key.decode(): int(value) for key, value in client.hgetall(KEYS.stats).items()}
