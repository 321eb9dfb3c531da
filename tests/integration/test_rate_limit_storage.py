"""The limiter counts a request and reads its headers with one script (app.ratelimit_storage)."""

from flask import Flask
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from app.auth.keys import KeyStore
from app.ratelimit_storage import SCHEME_PREFIX

RPM = 5


def _script_calls(redis) -> int:
    stats = redis.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))


def test_a_hit_and_its_window_stats_take_one_script(redis_server):
    redis = redis_server.client()
    ours = SlidingWindowCounterRateLimiter(storage_from_string(SCHEME_PREFIX + redis_server.url))
    theirs = SlidingWindowCounterRateLimiter(storage_from_string(redis_server.url))
    limit = RateLimitItemPerMinute(RPM)
    ours.hit(limit, "warm-up")  # loads the script

    for n in range(1, RPM + 2):
        with Flask(__name__).app_context():
            before = _script_calls(redis)
            counted = ours.hit(limit, "one-script")
            reset_at, remaining = ours.get_window_stats(limit, "one-script")
            assert _script_calls(redis) - before == 1, "the header read is answered from the hit"
        assert counted == (n <= RPM)
        # limits' own reader, outside any request, sees the same window.
        their_reset_at, their_remaining = theirs.get_window_stats(limit, "one-script")
        assert remaining == their_remaining == max(0, RPM - n)
        assert abs(reset_at - their_reset_at) < 1


def test_the_api_counts_once_and_refuses_past_the_limit(bare_client, redis_server):
    key, _ = KeyStore(redis_server.client()).create(name="one-script", rpm=RPM)
    headers = {"Authorization": f"Bearer {key}"}
    responses = [bare_client.get("/v1/models", headers=headers) for _ in range(RPM + 1)]
    assert [r.status_code for r in responses] == [200] * RPM + [429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["4", "3", "2", "1", "0", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == str(RPM) for r in responses)
