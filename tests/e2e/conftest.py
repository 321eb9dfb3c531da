"""End to end: a real gunicorn in front of the session's Redis and worker, called by real clients.

The gunicorn fixture lives here, not in tests/conftest.py, so that a test
below tests/integration cannot start one (it would no longer be an
integration test).
"""

import httpx
import pytest
from openai import OpenAI

from tests.e2e.sdk import Sdk
from tests.harness import ApiServer


@pytest.fixture(scope="session")
def api_server(service_env, worker):
    # Its workers are up before it starts: a model with none (the ghost model's 503s) need not be waited for 10 s.
    server = ApiServer(service_env.with_vars(INFERQ_WORKER_WAIT_SECONDS="2")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openai_client(api_server, api_key):
    def make(prefix: str = "/v1") -> OpenAI:
        return OpenAI(base_url=api_server.url + prefix, api_key=api_key, max_retries=0, timeout=300)

    return make


@pytest.fixture(params=["sync", "async"])
def sdk(request, api_server, api_key) -> Sdk:
    """The official SDK, once as `OpenAI` and once as `AsyncOpenAI`."""
    return Sdk(request.param, api_server.url + "/v1", api_key)


@pytest.fixture()
def http(api_server, api_key):
    """A plain HTTP client with the test key: for the bytes on the wire, unparsed by any SDK."""
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=300) as client:
        yield client


@pytest.fixture()
def key_with_rpm(redis_server):
    """Make a fresh key limited to `rpm` requests per minute."""
    from app.auth.keys import KeyStore

    def make(rpm: int) -> str:
        key, _record = KeyStore(redis_server.client()).create(name=f"conformance-rpm-{rpm}", rpm=rpm)
        return key

    return make
