"""One redis-py connection pool per URL and process, and what a `rediss://` or `sentinel://` URL means to each client.

`INFERQ_REDIS_URL` is the one place Redis is named, TLS and failover included:

    rediss://:PASSWORD@redis.example:6380/0?ssl_ca_certs=/etc/inferq/ca.pem
    sentinel://:PASSWORD@s1:26379,s2:26379,s3:26379/MASTER_NAME/0

redis-py reads a `rediss://` URL itself and verifies the server by default (CA
chain and host name). Celery's broker does not: kombu turns a bare
`rediss://` into "no certificate check" (with a warning), and Flower reads
TLS only from `broker_use_ssl`. `tls_options` gives them the same verifying
options, read from the same URL, so no client of a deployment checks less
than another.

A `sentinel://` URL names the Sentinels and the master's name (and the
database); each client asks the Sentinels for the current master and asks
again after a failover. Every client speaks its own dialect of it, so this
module writes all three from the one URL: redis-py's `Sentinel.master_for`
(`redis_client`: the job store, keys, heartbeats, result reads), kombu's
`sentinel://h1;sentinel://h2` broker URL with the `master_name` transport
option (`celery_broker`), and the rate limiter's `redis+sentinel://`
storage (`limiter_storage`, reading the master only). The password in the URL
is the data nodes'; Sentinels that require one of their own take
`?sentinel_password=`. Redis Cluster is not supported: kombu's Redis
transport reads every priority list of a queue with one multi-key BRPOP.
"""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.sentinel import Sentinel

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


#: The options every inferq connection to Redis gets, direct or through Sentinel.
CONNECTION_OPTIONS: dict[str, Any] = {
    "health_check_interval": 30,
    "socket_keepalive": True,
    "socket_connect_timeout": 5,
    "socket_timeout": 60,  # above the longest blocking XREAD (jobs.BLOCK_MS)
}
#: A Sentinel that does not answer within this is skipped for the next: discovery stays quick.
SENTINEL_TIMEOUT = 1.0


@dataclass(frozen=True)
class SentinelTarget:
    """A `sentinel://` URL, read: where the Sentinels are, which master they watch, and how to log in."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    def sentinel_kwargs(self) -> dict[str, Any]:
        options: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        return options

    def auth(self) -> str:
        """`user:password@` (quoted) for the URLs written from this one; empty without a password."""
        if not self.password:
            return ""
        return f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"


def sentinel_target(url: str) -> SentinelTarget | None:
    """The Sentinel setup a `sentinel://` URL names; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme != "sentinel":
        return None
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = tuple(_host_port(host) for host in hosts.split(",") if host)
    path = [segment for segment in parts.path.split("/") if segment]
    if not sentinels or not path or len(path) > 2:
        raise ValueError("a Sentinel URL reads sentinel://[:password@]host:port[,host:port...]/<master name>[/<db>]")
    query = dict(parse_qsl(parts.query))
    return SentinelTarget(
        sentinels,
        unquote(path[0]),
        int(path[1]) if len(path) == 2 else 0,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        query.get("sentinel_password") or None,
    )


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host, int(port)) if host else (text, 26379)


def redis_client(url: str) -> redis.Redis:
    """The process's client for `url`: `redis://`, `rediss://` (redis-py parses the TLS parameters) or `sentinel://`."""
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                client = _clients[url] = _connect(url)
    return client


def _connect(url: str) -> redis.Redis:
    target = sentinel_target(url)
    if target is None:
        return redis.Redis.from_url(url, max_connections=MAX_CONNECTIONS, **CONNECTION_OPTIONS)
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=target.sentinel_kwargs(), **CONNECTION_OPTIONS)
    return sentinel.master_for(
        target.master_name,
        db=target.db,
        username=target.username,
        password=target.password,
        max_connections=MAX_CONNECTIONS,
    )


def celery_broker(url: str) -> tuple[str, dict[str, Any]]:
    """Celery's broker URL for `url`, and the transport options it needs besides (Sentinel's)."""
    target = sentinel_target(url)
    if target is None:
        return without_tls_parameters(url), {}
    auth = target.auth()
    broker = ";".join(f"sentinel://{auth}{host}:{port}/{target.db}" for host, port in target.sentinels)
    return broker, {"master_name": target.master_name, "sentinel_kwargs": target.sentinel_kwargs()}


def limiter_storage(url: str) -> tuple[str, dict[str, Any]]:
    """The rate limiter's storage URI and options: counters are written and read on the master only."""
    options: dict[str, Any] = {"max_connections": MAX_CONNECTIONS}
    target = sentinel_target(url)
    if target is None:
        return url, options
    hosts = ",".join(f"{host}:{port}" for host, port in target.sentinels)
    # limits would log in to the Sentinels with the data nodes' credentials unless told otherwise.
    sentinel_kwargs = {"username": None, "password": target.sentinel_password, **target.sentinel_kwargs()}
    options.update(db=target.db, use_replicas=False, sentinel_kwargs=sentinel_kwargs)
    return f"redis+sentinel://{target.auth()}{hosts}/{quote(target.master_name, safe='')}", options


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
