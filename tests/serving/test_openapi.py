"""The OpenAPI document: it names every route the app serves, it is what ``/openapi.json`` serves
(with ``--docs``), and schemathesis fuzzes every operation against a real endpoint process with a
bounded number of examples: never a 5xx, and every answer conforms to the documented schema.

The schema is loaded at import (schemathesis's ``from_fixture`` fails under pytest 9), from the
document the module writes; a test checks that the endpoint serves exactly that document.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from starlette.routing import Route

from orchestrator import __version__
from orchestrator.demo.processes import Endpoint, start_endpoint, wait_http
from orchestrator.training.pipeline import TrainResult
from serving.app import create_app
from serving.auth import OPEN_PATHS
from serving.openapi import openapi_document

DOCUMENT = openapi_document("ML model endpoint", __version__)
schema = schemathesis.openapi.from_dict(DOCUMENT)
# Examples per operation: 16 operations, about a second each at this count on a 2-core machine.
EXAMPLES = 25


@pytest.fixture(scope="module")
def docs_endpoint(digits_model: TrainResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    ep = start_endpoint(str(digits_model.path), log_path=log, extra_args=["--docs"])
    try:
        yield ep.wait_ready()
    finally:
        ep.stop()


def test_every_route_is_documented_with_its_methods() -> None:
    def never(*_: object) -> None:
        raise AssertionError("not loaded in this test")

    app = create_app(never, docs=True)
    served = {
        (route.path, method.lower())
        for route in app.router.routes
        if isinstance(route, Route) and route.path not in ("/openapi.json", "/docs", "/docs/oauth2-redirect")
        for method in (route.methods or ()) - {"HEAD"}
    }
    documented = {(path, method) for path, operations in DOCUMENT["paths"].items() for method in operations}
    assert served == documented


def test_every_operation_documents_its_errors() -> None:
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"]["default"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, (method, path)
            if method == "post":
                assert operation["requestBody"]["content"], path
                assert {"400", "413", "422"} <= set(operation["responses"]), path


def test_with_a_token_every_closed_operation_names_the_bearer_scheme_and_its_401() -> None:
    def never(*_: object) -> None:
        raise AssertionError("not loaded in this test")

    secured = create_app(never, docs=True, api_tokens=["t" * 40]).openapi()
    assert secured["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in secured["paths"].items():
        for operation in operations.values():
            if path in OPEN_PATHS:
                assert "security" not in operation, path
                assert "401" not in operation["responses"], path
            else:
                assert operation["security"] == [{"bearer": []}], path
                assert operation["responses"]["401"]["content"]["application/json"], path
    # Without a token nothing in the document asks for one.
    assert "securitySchemes" not in DOCUMENT["components"]
    assert not any("401" in op["responses"] for ops in DOCUMENT["paths"].values() for op in ops.values())


def test_the_endpoint_serves_this_document(docs_endpoint: Endpoint) -> None:
    served = httpx.get(f"{docs_endpoint.url}/openapi.json", timeout=10).json()
    assert served == DOCUMENT
    assert "/v1/predict" in served["paths"]
    assert served["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_get_a_5xx_and_answers_match_the_schema(
    case, docs_endpoint: Endpoint, digits_model: TrainResult
) -> None:
    # The served model's name and version, so that bodies reach the decoders (unknown names and
    # versions are 404 before any body is read: tests/serving/test_protocol.py).
    if case.path_parameters:
        case.path_parameters["name"] = digits_model.manifest.name
        if "version" in case.path_parameters:
            case.path_parameters["version"] = digits_model.manifest.version
    if case.query and "version" in case.query:
        case.query["version"] = digits_model.manifest.version
    case.call_and_validate(
        base_url=docs_endpoint.url, checks=[not_a_server_error, response_schema_conformance], timeout=30
    )


def _schema_of(operation: dict, status: str) -> dict:
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return {**schema, "components": DOCUMENT["components"]}


def test_every_answer_of_a_loading_endpoint_matches_the_document(serve_artifact, tmp_path) -> None:
    # No model yet (the artifact does not exist): every route that needs one, and the readiness
    # probes, answer 503, each in the shape the document gives for 503.
    import jsonschema

    ep = serve_artifact(tmp_path / "absent", "--docs")
    wait_http(f"{ep.url}/healthz", timeout=30, process=ep.process)
    paths = DOCUMENT["paths"]
    checked = 0
    with httpx.Client(base_url=ep.url, timeout=10) as client:
        for path, item in paths.items():
            if "get" not in item or "{version}" in path:
                continue
            response = client.get(path.replace("{name}", "digits"))
            status = str(response.status_code)
            if status == "200":
                continue
            assert status in item["get"]["responses"], (path, status)
            assert response.headers["content-type"] == "application/json", path
            schema = _schema_of(item["get"], status)
            jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)
            checked += 1
    assert checked >= 5
