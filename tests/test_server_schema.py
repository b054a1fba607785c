"""Property-based checks of the JSON API against its own /openapi.json (schemathesis): no 5xx,
responses match the documented status codes, content types and schemas, for generated inputs.

/api/ask (it would generate an answer per example) and POST /api/jobs (it would crawl whatever
path a generated seed names) are left out here; tests/test_server.py covers their bad inputs."""
from __future__ import annotations

import dataclasses

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from webserver import running_server


@pytest.fixture(scope="module")
def api_schema(built_engine, embedder):
    from fathom import AnswerConfig, Engine

    engine = Engine(built_engine.data_dir, embedder=embedder, config=dataclasses.replace(
        built_engine.config, answer=AnswerConfig(fast_model="smollm2-135m", slow_model="smollm2-135m")))
    with running_server(engine) as base:
        yield schemathesis.openapi.from_url(base + "/openapi.json").exclude(path="/api/ask").exclude(
            path="/api/jobs", method="POST")


def test_api_conforms_to_its_openapi_spec(api_schema):
    # (schemathesis' pytest plugin does not load under pytest 9, so each operation's hypothesis
    # strategy is driven directly)
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api/search", "/api/status", "/api/jobs/{job_id}"}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate()
        check()
