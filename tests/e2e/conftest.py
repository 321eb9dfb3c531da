import httpx
import pytest
from openai import OpenAI

from tests.e2e.sdk import Sdk


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
    from tasks.keys import KeyStore

    def make(rpm: int) -> str:
        key, _record = KeyStore(redis_server.client()).create(name=f"conformance-rpm-{rpm}", rpm=rpm)
        return key

    return make
