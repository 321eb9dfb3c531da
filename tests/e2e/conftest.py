"""End to end: a real gunicorn in front of the session's Redis and worker, called by real clients.

The gunicorn fixture lives here, not in tests/conftest.py, so that a test
below tests/integration cannot start one (it would no longer be an
integration test).
"""

import pytest
from openai import OpenAI

from tests.harness import ApiServer


@pytest.fixture(scope="session")
def api_server(service_env, worker):
    server = ApiServer(service_env).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openai_client(api_server, api_key):
    def make(prefix: str = "/v1") -> OpenAI:
        return OpenAI(base_url=api_server.url + prefix, api_key=api_key, max_retries=0, timeout=300)

    return make
