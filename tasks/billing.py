"""Token usage per key, per model, per UTC day: what `GET /v1/usage` bills.

A finished job adds to `<prefix>:usage:<key id>:<YYYY-MM-DD>` (a hash with
`<model>:prompt`, `<model>:completion` and `<model>:requests`) and to the key's
tokens-per-minute counter. That write happens inside the job service's finish
step (tasks.jobs.scripts.FINISH), atomically with the winning attempt's
result, once per job, just before the end event wakes the client: a client
that has its answer can already see it billed. This module reads it back.

Usage hashes never expire: they are billing records.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable

import redis

from tasks.keyspace import KEYS


def tokens_last_minute(client: redis.Redis, key_id: str, now: float | None = None) -> int:
    """Tokens billed in the sliding minute before `now` (sliding-window counter estimate)."""
    now = time.time() if now is None else now
    minute = int(now // 60)
    current, previous = client.mget(KEYS.tpm(key_id, minute), KEYS.tpm(key_id, minute - 1))
    weight = 1 - (now % 60) / 60
    return int(int(current or 0) + int(previous or 0) * weight)


def dates(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=offset)).isoformat() for offset in range((end - start).days + 1)]


def totals(client: redis.Redis, key_id: str, days: Iterable[str]) -> dict[str, dict[str, int]]:
    """{model: {"prompt_tokens", "completion_tokens", "requests"}} summed over `days`."""
    pipe = client.pipeline(transaction=False)
    for date in days:
        pipe.hgetall(KEYS.usage(key_id, date))
    names = {"prompt": "prompt_tokens", "completion": "completion_tokens", "requests": "requests"}
    summed: dict[str, dict[str, int]] = {}
    for counters in pipe.execute():
        for field, value in counters.items():
            model, _, kind = field.decode().rpartition(":")
            entry = summed.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0})
            entry[names[kind]] += int(value)
    return summed
