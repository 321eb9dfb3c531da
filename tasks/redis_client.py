"""One redis-py connection pool per URL and process."""

from __future__ import annotations

import threading

import redis

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def redis_client(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                client = _clients[url] = redis.Redis.from_url(
                    url,
                    health_check_interval=30,
                    socket_keepalive=True,
                    socket_connect_timeout=5,
                    socket_timeout=60,  # above the longest blocking XREAD (jobs.BLOCK_MS)
                )
    return client
