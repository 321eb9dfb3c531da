"""One redis-py connection pool per URL and process."""

from __future__ import annotations

import threading

import redis

#: Every waiting synchronous request holds one connection in a blocking XREAD, and a
#: gevent worker holds up to 2000 of them (gunicorn.conf.py): redis-py's default cap
#: of 100 answered the 101st concurrent request with a 500.
MAX_CONNECTIONS = 10_000

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
                    max_connections=MAX_CONNECTIONS,
                )
    return client
