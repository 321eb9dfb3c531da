"""Token usage per key, per model, per UTC day: what `GET /v1/usage` bills.

Each finished job adds to `inferq:usage:<key id>:<YYYY-MM-DD>`, a hash with
`<model>:prompt`, `<model>:completion` and `<model>:requests` counters, and to
the key's tokens-per-minute counter `inferq:tpm:<key id>:<epoch minute>`.

The recording is one Lua script that JobStore.finish runs just before the
terminal write that wakes the client, so a client that has its answer can
already see it billed; it sets `billed` on the job first, so a job finished
twice (a redelivered task, a late cancel) is billed once. The job record carries the
owner and model, so callers pass only the job and the token counts.

Usage hashes never expire: they are billing records.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any

import redis

PREFIX = "inferq"
#: tokens-per-minute counters outlive their minute by this much (the window looks one minute back).
TPM_TTL_SECONDS = 180

_RECORD = """
local owner = redis.call('HGET', KEYS[1], 'owner')
local model = redis.call('HGET', KEYS[1], 'model')
if not owner or not model then return 0 end
if redis.call('HSETNX', KEYS[1], 'billed', '1') == 0 then return 0 end
local usage = ARGV[1] .. ':usage:' .. owner .. ':' .. ARGV[2]
redis.call('HINCRBY', usage, model .. ':prompt', ARGV[4])
redis.call('HINCRBY', usage, model .. ':completion', ARGV[5])
redis.call('HINCRBY', usage, model .. ':requests', 1)
local tpm = ARGV[1] .. ':tpm:' .. owner .. ':' .. ARGV[3]
redis.call('INCRBY', tpm, ARGV[4] + ARGV[5])
redis.call('EXPIRE', tpm, ARGV[6])
return 1
"""


def day(timestamp: float | None = None) -> str:
    return (
        dt.datetime.fromtimestamp(time.time() if timestamp is None else timestamp, dt.timezone.utc).date().isoformat()
    )


def usage_key(key_id: str, date: str) -> str:
    return f"{PREFIX}:usage:{key_id}:{date}"


def tpm_key(key_id: str, minute: int) -> str:
    return f"{PREFIX}:tpm:{key_id}:{minute}"


def record(client: redis.Redis, job_hash: str, usage: dict[str, Any], now: float | None = None) -> None:
    """Bill a job's tokens to its owner and model, unless the job was billed already."""
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    if not prompt and not completion:
        return  # nothing ran (e.g. cancelled before it started): nothing to bill
    now = time.time() if now is None else now
    client.register_script(_RECORD)(
        keys=[job_hash],
        args=[
            PREFIX,
            day(now),
            int(now // 60),
            prompt,
            completion,
            TPM_TTL_SECONDS,
        ],
    )


def tokens_last_minute(client: redis.Redis, key_id: str, now: float | None = None) -> int:
    """Tokens billed in the sliding minute before `now` (sliding-window counter estimate)."""
    now = time.time() if now is None else now
    minute = int(now // 60)
    current, previous = client.mget(tpm_key(key_id, minute), tpm_key(key_id, minute - 1))
    weight = 1 - (now % 60) / 60
    return int(int(current or 0) + int(previous or 0) * weight)


def dates(start: dt.date, end: dt.date) -> list[str]:
    return [(start + dt.timedelta(days=offset)).isoformat() for offset in range((end - start).days + 1)]


def totals(client: redis.Redis, key_id: str, days: Iterable[str]) -> dict[str, dict[str, int]]:
    """{model: {"prompt_tokens", "completion_tokens", "requests"}} summed over `days`."""
    pipe = client.pipeline(transaction=False)
    for date in days:
        pipe.hgetall(usage_key(key_id, date))
    names = {"prompt": "prompt_tokens", "completion": "completion_tokens", "requests": "requests"}
    summed: dict[str, dict[str, int]] = {}
    for counters in pipe.execute():
        for field, value in counters.items():
            model, _, kind = (field.decode() if isinstance(field, bytes) else field).rpartition(":")
            entry = summed.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0})
            entry[names[kind]] += int(value)
    return summed
