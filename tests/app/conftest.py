"""The server most tests in tests/app share: a real `llamba serve` with an API key, generating one
request at a time with a queue of 2 (tests/app/test_batching.py starts its own, batching)."""
import pytest

from tests.support.server import API_KEY, running_server


@pytest.fixture(scope="session")
def server():
    """One server with an API key, one request generated at a time and a queue of 2."""
    with running_server("--api-key", API_KEY, "--queue-size", "2", "--parallel", "1", "--ctx", "512") as base:
        yield base


@pytest.fixture
def client(server):
    from openai import OpenAI
    return OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)
