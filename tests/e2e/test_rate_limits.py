"""Per-key request limits hold across gunicorn worker processes (the counters live in Redis).

Which worker of one gunicorn accepts a connection is the kernel's choice, so the
deterministic test alternates between two gunicorn servers (two worker
processes, as two API hosts would be); a burst at one two-worker server checks
the same count under concurrency.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app.auth.keys import KeyStore
from tests.harness import ApiServer, ServiceEnv, wait_until

RPM = 12


@pytest.fixture(scope="module")
def two_servers(service_env):
    servers = [ApiServer(service_env, workers=1).start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def two_worker_api(service_env):
    server = ApiServer(service_env, workers=2).start()
    yield server
    server.stop()


@pytest.fixture()
def keys(redis_server):
    return KeyStore(redis_server.client())


def get(base_url, key, probe=None):
    headers = {"Authorization": f"Bearer {key}", "Connection": "close"}
    return requests.get(
        base_url + "/v1/models", headers=headers, params={"probe": probe} if probe else None, timeout=30
    )


def test_one_budget_across_processes_and_429_with_headers(two_servers, keys):
    limited, _ = keys.create(name="limited", rpm=RPM)
    bystander, _ = keys.create(name="bystander", rpm=RPM)
    started = time.time()
    responses = [get(two_servers[i % 2].url, limited) for i in range(2 * RPM)]

    assert [r.status_code for r in responses] == [200] * RPM + [429] * RPM
    # One counter for both processes: the remaining budget falls by one per request, whichever served it.
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in responses[:RPM]] == list(range(RPM - 1, -1, -1))
    for response in responses:
        assert response.headers["X-RateLimit-Limit"] == str(RPM)
        assert started < int(response.headers["X-RateLimit-Reset"]) <= time.time() + 61
    for refused in responses[RPM:]:
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        error = refused.json()["error"]
        assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
        assert set(error) == {"message", "type", "param", "code"}

    # Another key is unaffected, on either process; health checks are never limited.
    for server in two_servers:
        other = get(server.url, bystander)
        assert other.status_code == 200 and int(other.headers["X-RateLimit-Remaining"]) < RPM
        assert requests.get(server.url + "/health", timeout=5).status_code == 200
        assert get(server.url, limited).status_code == 429


def test_a_burst_at_two_workers_gets_exactly_the_limit(two_worker_api, keys):
    limited, _ = keys.create(name="burst", rpm=RPM)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: get(two_worker_api.url, limited).status_code, range(3 * RPM)))
    assert statuses.count(200) == RPM and statuses.count(429) == 2 * RPM, statuses


@pytest.fixture(scope="module")
def verbose_api(service_env):
    """The shipped gunicorn, plus everything an operator could turn on: the access log and debug level."""
    env = ServiceEnv(
        service_env.vars["INFERQ_REDIS_URL"], service_env.vars["INFERQ_MODELS_FILE"], INFERQ_LOG_LEVEL="debug"
    )
    server = ApiServer(env, workers=2, log_name="api-verbose.log", extra_args=["--access-logfile", "-"])
    server.log_path.unlink(missing_ok=True)
    server.start()
    yield server
    server.stop()


def test_nothing_logs_the_key(verbose_api, keys):
    key, _ = keys.create(name="secret", rpm=RPM)
    marker = f"probe-{time.time_ns()}"  # names this test's requests in the log
    assert get(verbose_api.url, key, marker).status_code == 200
    assert get(verbose_api.url, "sk-wrong-key", marker).status_code == 401
    # The log must really record these requests, or their absence below would prove nothing.

    def logged() -> str | None:
        text = verbose_api.log_path.read_text(errors="replace")
        return text if text.count(marker) >= 2 else None

    log = wait_until(logged, 10, "both requests in the access log")
    assert f"/v1/models?probe={marker}" in log and '" 200 ' in log and '" 401 ' in log
    assert key not in log and key[3:] not in log and "sk-wrong-key" not in log
