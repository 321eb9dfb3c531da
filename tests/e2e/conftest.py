import pytest
from openai import OpenAI


@pytest.fixture(scope="session")
def openai_client(api_server, api_key):
    def make(prefix: str = "/v1") -> OpenAI:
        return OpenAI(base_url=api_server.url + prefix, api_key=api_key, max_retries=0, timeout=300)

    return make
