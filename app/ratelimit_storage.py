"""The rate limiter's Redis storage: one script per request, where limits' own takes two.

Flask-Limiter counts a request with limits' acquire script, which answers
only yes or no, then reads the window again with a second script for the
`X-RateLimit-*` headers of the same response. That second round trip was a
tenth of the API's CPU per request. These storages count and read in one
script, and answer the header read of the same request from what the count
saw (kept on `flask.g`, so nothing outlives the request).

They register under `inferq+<scheme>` (limits' documented way to add a
storage), so the URI app.ratelimit hands Flask-Limiter picks them.
"""

from __future__ import annotations

from typing import Any

from flask import g, has_app_context
from limits.storage import RedisSentinelStorage, RedisStorage

SCHEME_PREFIX = "inferq+"

#: Count `ARGV[3]` against a limit of `ARGV[1]` per `ARGV[2]` seconds in the sliding window
#: KEYS[1] (previous) / KEYS[2] (current), rolling the current window into the previous one
#: once it is past its own length. Returns {counted, previous count, previous pttl, current
#: count, current pttl}, read after the count: the window as the response's headers show it.
ACQUIRE_AND_READ = """
local limit, window_ms, cost = tonumber(ARGV[1]), tonumber(ARGV[2]) * 1000, tonumber(ARGV[3])
local current_ttl = redis.call('PTTL', KEYS[2])
if current_ttl > 0 and current_ttl < window_ms then
    redis.call('RENAME', KEYS[2], KEYS[1])
    redis.call('SET', KEYS[2], 0, 'PX', current_ttl + window_ms)
end
local function window()
    local previous_ttl = math.max(0, redis.call('PTTL', KEYS[1]))
    local current_ttl = math.max(0, redis.call('PTTL', KEYS[2]))
    local previous = tonumber(redis.call('GET', KEYS[1]) or 0)
    local current = tonumber(redis.call('GET', KEYS[2]) or 0)
    return previous, previous_ttl, current, current_ttl
end
local previous, previous_ttl, current, current_ttl = window()
local weighted = math.floor(previous * previous_ttl / window_ms) + current
if cost > limit or weighted + cost > limit then
    return {0, previous, previous_ttl, current, current_ttl}
end
if current_ttl > 0 then
    redis.call('INCRBY', KEYS[2], cost)
else
    -- A millisecond short of two windows: limits takes the reset as the TTL modulo the window,
    -- and a TTL read in the millisecond it was set would say the window resets now.
    redis.call('SET', KEYS[2], cost, 'PX', window_ms * 2 - 1)
end
previous, previous_ttl, current, current_ttl = window()
return {1, previous, previous_ttl, current, current_ttl}
"""

Window = tuple[int, float, int, float]


class _CountAndRead:
    """Mixed into limits' Redis storages; see the module's docstring."""

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)  # type: ignore[call-arg]

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)  # type: ignore[misc]
        self._acquire_and_read = self.get_connection().register_script(ACQUIRE_AND_READ)  # type: ignore[attr-defined]

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        keys = [self.prefixed_key(self._previous_window_key(key)), self.prefixed_key(self._current_window_key(key))]  # type: ignore[attr-defined]
        counted, previous, previous_ttl, current, current_ttl = self._acquire_and_read(keys, [limit, expiry, amount])
        if has_app_context():
            window = (int(previous), previous_ttl / 1000, int(current), current_ttl / 1000)
            g.setdefault("rate_windows", {})[key] = window
        return bool(counted)

    def get_sliding_window(self, key: str, expiry: int) -> Window:
        seen = g.get("rate_windows", {}).get(key) if has_app_context() else None
        return seen if seen is not None else super().get_sliding_window(key, expiry)  # type: ignore[misc]


class CountAndReadRedisStorage(_CountAndRead, RedisStorage):
    STORAGE_SCHEME = [SCHEME_PREFIX + scheme for scheme in ("redis", "rediss")]


class CountAndReadSentinelStorage(_CountAndRead, RedisSentinelStorage):
    STORAGE_SCHEME = [SCHEME_PREFIX + "redis+sentinel"]
