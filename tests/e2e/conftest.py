import pytest
from openai import OpenAI


@pytest.fixture(scope="session")
def openai_client(api_server):
    def make(prefix: str = "/v1") -> OpenAI:
        return OpenAI(base_url=api_server.url + prefix, api_key="sk-not-checked-yet", max_retries=0, timeout=300)

    return make
