"""One redis-py connection pool per URL and process, and what a `rediss://` URL means to each client.

`INFERQ_REDIS_URL` is the one place Redis is named, TLS included:

    rediss://:PASSWORD@redis.example:6380/0?ssl_ca_certs=/etc/inferq/ca.pem

redis-py reads such a URL itself and verifies the server by default (CA chain
and host name). Celery's broker does not: kombu turns a bare `rediss://` into
"no certificate check" (with a warning), and Flower reads TLS only from
`broker_use_ssl`. `tls_options` gives them the same verifying options, read
from the same URL, so no client of a deployment checks less than another.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

#: Every waiting synchronous request holds one connection in a blocking XREAD, and a
#: gevent worker holds up to 2000 of them (gunicorn.conf.py): redis-py's default cap
#: of 100 answered the 101st concurrent request with a 500.
MAX_CONNECTIONS = 10_000

#: The URL's TLS parameters, named as redis-py's SSLConnection keywords.
TLS_PARAMETERS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
#: redis-py's spelling of "false" in a URL (redis.utils.to_bool), so both readers agree.
FALSE_STRINGS = {"0", "F", "FALSE", "N", "NO"}

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def redis_client(url: str) -> redis.Redis:
    """The process's client for `url`; `redis://` and `rediss://` alike (redis-py parses the TLS parameters)."""
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


def tls_options(url: str) -> dict[str, Any] | None:
    """redis-py's TLS keywords for a `rediss://` URL (None for anything else), verifying by default.

    `ssl_cert_reqs` defaults to `required`, as in redis-py; `none` or `optional`
    must be written in the URL. Without `ssl_ca_certs`/`ssl_ca_path` the
    system's CA store is used.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = dict(parse_qsl(parts.query))
    options: dict[str, Any] = {name: query[name] for name in TLS_PARAMETERS if name in query}
    requirement = options.get("ssl_cert_reqs", "required").lower()
    if requirement not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={requirement!r} in the Redis URL: use one of {', '.join(CERT_REQS)}")
    options["ssl_cert_reqs"] = CERT_REQS[requirement]
    if "ssl_check_hostname" in options:
        options["ssl_check_hostname"] = options["ssl_check_hostname"].upper() not in FALSE_STRINGS
    return options


def without_tls_parameters(url: str) -> str:
    """`url` less its TLS parameters: the broker gets them once, from `tls_options`.

    Kombu would otherwise read them from the URL too, with its own defaults,
    and they would replace `broker_use_ssl` wholesale.
    """
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in TLS_PARAMETERS]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def redacted(url: str) -> str:
    """`url` fit for a log line or an error message: the password replaced by `**`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:**@{host}"))
