"""schemathesis over the server's own OpenAPI document (bench: `python -m bench.fuzz_api` runs
5,000+ requests; this runs a few hundred): every generated request, valid or not, answers 2xx or
an OpenAI-shaped 4xx as the document describes it — no 5xx, no hang, no response that breaks its
schema. max_tokens is capped at 4 for the run, so that valid requests are quick."""
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.support.server import API_KEY, running_server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema():
    with running_server("--api-key", API_KEY, "--ctx", "256", "--parallel", "4", "--queue-size", "32",
                        env={"LLAMBA_MAX_TOKENS_LIMIT": "4"}) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))  # (seeded)
def test_every_answer_is_2xx_or_an_openai_shaped_4xx(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {API_KEY}"}, checks=CHECKS, timeout=60)
