"""The endpoint's OpenAPI document, written out rather than derived: the hot paths (``/v1/predict``,
KServe V1 predict, V2 infer) are bare ASGI endpoints that FastAPI cannot describe, and the other
handlers read their path parameters from the request (see :mod:`serving.v2`). Every route is here,
with its request body, its answers and its errors (``{"error": message}``, :mod:`serving.errors`);
``tests/serving/test_openapi.py`` checks that the document names every route the app serves and
fuzzes it with schemathesis. Served at ``/openapi.json`` with ``--docs`` only.
"""

from __future__ import annotations

from typing import Any

from serving.auth import OPEN_PATHS
from serving.inputs import MAX_ROWS
from serving.tensors import NUMERIC_DATATYPES

__all__ = ["openapi_document"]

_DATATYPES = sorted([*NUMERIC_DATATYPES, "BOOL", "BYTES"])


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """Error answers: the statuses named, and any other (``default``), all ``{"error": message}``."""
    reasons = {
        400: "the body is not JSON, or its binary part does not match its header",
        404: "no such model, version or route",
        405: "the route does not take this method",
        408: "the headers or the body did not arrive in time",
        413: "the body, or the rows in it, exceed the limits",
        415: "the body's Content-Encoding is neither gzip nor deflate",
        422: "the request is well-formed but its content is refused (the message names it)",
        503: "no verified model is loaded yet",
    }
    out = {str(s): _json(_ref("Error"), reasons[s]) for s in statuses}
    out["default"] = _json(_ref("Error"), "any other error")
    return out


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
_QUERY_VERSION = {"name": "version", "in": "query", "required": False, "schema": {"type": "string"}}


def _get(
    summary: str, ok: dict[str, Any], *errors: int, parameters: list[Any] | None = None
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(*errors)}}
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _not_ready(item: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A readiness probe's 503: its own body (``"ready": false``), not ``{"error": ...}``."""
    item["get"]["responses"]["503"] = _json(schema, "no verified model is loaded yet")
    return item


def _post(
    summary: str, body: dict[str, Any], ok: dict[str, Any], *errors: int, parameters: list[Any] | None = None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "requestBody": {"required": True, "content": body},
        "responses": {"200": ok, **_errors(*errors)},
    }
    if parameters:
        operation["parameters"] = parameters
    return {"post": operation}


_ROW = {
    "oneOf": [
        {
            "type": "array",
            "items": {"type": "number"},
            "description": "a matrix model: one number per feature",
        },
        {"type": "object", "description": "a columns model: a value per column (number, text or null)"},
    ]
}
_ROWS = {"type": "array", "items": _ROW, "minItems": 1, "maxItems": MAX_ROWS}
_PREDICT_ERRORS = (400, 408, 413, 415, 422, 503)
_INFER_BODY = {
    "application/json": {"schema": _ref("InferRequest")},
    "application/octet-stream": {
        "schema": {"type": "string", "format": "binary"},
        "description": "the binary tensor data extension: a JSON InferRequest of "
        "Inference-Header-Content-Length bytes, then each binary input's bytes in order",
    },
}
_INFER_OK = {
    "description": "the requested outputs; binary (application/octet-stream, with "
    "Inference-Header-Content-Length) when any output was asked binary",
    "content": {
        "application/json": {"schema": _ref("InferResponse")},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_BINARY_HEADER = {
    "name": "Inference-Header-Content-Length",
    "in": "header",
    "required": False,
    "description": "the JSON part's length in bytes when binary tensors follow it",
    "schema": {"type": "integer", "minimum": 1},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "PredictRequest": {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": _ROWS},
    },
    "KServeV1Request": {
        "type": "object",
        "description": "KServe V1: the rows as instances or as inputs (not both)",
        "properties": {"instances": _ROWS, "inputs": _ROWS},
    },
    "PredictResponse": {
        "type": "object",
        "required": ["model", "version", "classes", "predictions", "probabilities"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "classes": {"type": "array", "items": {"type": "string"}},
            "predictions": {"type": "array", "items": {"type": "string"}, "description": "one label per row"},
            "probabilities": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "number"}},
                "description": "one row of class probabilities per row, in the order of classes",
            },
        },
    },
    "NotReady": {
        "type": "object",
        "required": ["ready", "reason", "last_error"],
        "properties": {
            "ready": {"const": False},
            "reason": {"type": "string", "description": "loading, or why the artifact was refused"},
            "last_error": {"type": ["string", "null"]},
        },
    },
    "V2NotReady": {
        "type": "object",
        "required": ["ready"],
        "properties": {"ready": {"const": False}},
    },
    "ModelReady": {
        "type": "object",
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
    # GET /v1/model/drift (serving.drift): the shared contract with the control plane.
    "ModelDrift": {
        "type": "object",
        "required": [
            "model_name",
            "model_version",
            "window",
            "features",
            "prediction",
            "confidence",
            "estimated_accuracy",
        ],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "window": {
                "type": "object",
                "required": ["rows", "capacity_rows"],
                "properties": {
                    "rows": {"type": "integer"},
                    "counted_rows": {
                        "type": "integer",
                        "description": "rows whose features were actually counted (large calls are "
                        "counted on a sample); the features' PSI has the noise of this many rows",
                    },
                    "capacity_rows": {"type": "integer"},
                },
            },
            "features": {
                "type": "object",
                "description": "feature name -> PSI and Jensen-Shannon distance (null while the "
                "window is empty); empty for a model without a reference profile",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "psi": {"type": ["number", "null"]},
                        "js_distance": {"type": ["number", "null"]},
                    },
                },
            },
            "prediction": {
                "type": "object",
                "required": ["counts", "reference", "psi", "js_distance"],
                "properties": {
                    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "reference": {"type": ["object", "null"], "additionalProperties": {"type": "number"}},
                    "psi": {"type": ["number", "null"]},
                    "js_distance": {"type": ["number", "null"]},
                },
            },
            "confidence": {
                "type": "object",
                "required": ["mean", "reference_mean"],
                "properties": {
                    "mean": {"type": ["number", "null"]},
                    "reference_mean": {"type": ["number", "null"]},
                },
            },
            "estimated_accuracy": {"type": ["number", "null"]},
        },
    },
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("TensorMetadata")},
            "parameters": {"type": "object"},
        },
    },
    "RequestInput": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
            "data": {"type": "array", "description": "row-major values, flat or nested by shape"},
        },
    },
    "RequestOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "enum": ["label", "probabilities"]},
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data": {"type": "boolean"},
                    "classification": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "probabilities only: the k most probable classes per row, as "
                        'BYTES "probability:index:label" (Triton\'s classification extension)',
                    },
                },
            },
        },
    },
    "InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "items": _ref("RequestInput"), "minItems": 1},
            "outputs": {"type": "array", "items": _ref("RequestOutput")},
        },
    },
    "ResponseOutput": {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "enum": _DATATYPES},
            "parameters": {"type": "object"},
            "data": {"type": "array"},
        },
    },
    "InferResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _ref("ResponseOutput")},
        },
    },
}


def openapi_document(title: str, version: str, *, bearer: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route of :func:`serving.app.create_app`.

    ``bearer``: the endpoint checks an API token (:mod:`serving.auth`); every operation but
    liveness and readiness then names the ``bearer`` security scheme and its 401 answer.
    """
    predict_body = {"application/json": {"schema": _ref("PredictRequest")}}
    kserve_body = {"application/json": {"schema": _ref("KServeV1Request")}}
    predicted = _json(_ref("PredictResponse"), "a label and probabilities per row")
    ready = _json(_ref("ModelReady"), "the model is ready")
    metadata = _json(_ref("ModelMetadata"), "the model's inputs and outputs")
    infer = "Open Inference Protocol (KServe V2) inference, JSON or binary tensors"
    any_object = {"type": "object"}
    paths: dict[str, Any] = {
        "/healthz": _get("Liveness", _json(any_object, "the process answers")),
        "/readyz": _not_ready(
            _get("Readiness", _json(any_object, "a verified model serves"), 503), _ref("NotReady")
        ),
        "/metrics": _get(
            "Prometheus metrics",
            {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        ),
        "/v1/predict": _post(
            "Predict rows (the endpoint's own route; a bare ASGI endpoint)",
            predict_body,
            predicted,
            *_PREDICT_ERRORS,
        ),
        "/v1/model": _get("The served manifest's public part", _json(any_object, "the manifest"), 503),
        "/v1/model/drift": _get(
            "The drift window against the manifest's reference profile (PSI, JS distance, the "
            "label-free accuracy estimate); 404 when drift monitoring is off",
            _json(_ref("ModelDrift"), "the drift answer"),
            404,
            503,
        ),
        "/v1/models/{name}": _get("KServe V1 model readiness", ready, 404, 503, parameters=[_NAME]),
        "/v1/models/{name}:predict": _post(
            "KServe V1 predict: the same answer as /v1/predict",
            kserve_body,
            predicted,
            404,
            *_PREDICT_ERRORS,
            parameters=[_NAME],
        ),
        "/v2": _get("V2 server metadata", _json(_ref("ServerMetadata"), "name, version, extensions")),
        "/v2/health/live": _get("V2 server liveness", _json(any_object, '{"live": true}')),
        "/v2/health/ready": _not_ready(
            _get("V2 server readiness", _json(any_object, '{"ready": true}'), 503), _ref("V2NotReady")
        ),
        "/v2/models/{name}": _get(
            "V2 model metadata", metadata, 404, 503, parameters=[_NAME, _QUERY_VERSION]
        ),
        "/v2/models/{name}/versions/{version}": _get(
            "V2 model metadata, of a version", metadata, 404, 503, parameters=[_NAME, _VERSION]
        ),
        "/v2/models/{name}/ready": _get(
            "V2 model readiness", ready, 404, 503, parameters=[_NAME, _QUERY_VERSION]
        ),
        "/v2/models/{name}/versions/{version}/ready": _get(
            "V2 model readiness, of a version", ready, 404, 503, parameters=[_NAME, _VERSION]
        ),
        "/v2/models/{name}/infer": _post(
            infer,
            _INFER_BODY,
            _INFER_OK,
            404,
            *_PREDICT_ERRORS,
            parameters=[_NAME, _QUERY_VERSION, _BINARY_HEADER],
        ),
        "/v2/models/{name}/versions/{version}/infer": _post(
            infer, _INFER_BODY, _INFER_OK, 404, *_PREDICT_ERRORS, parameters=[_NAME, _VERSION, _BINARY_HEADER]
        ),
    }
    components: dict[str, Any] = {"schemas": _SCHEMAS}
    if bearer:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        refused = _json(_ref("Error"), "no valid Authorization: Bearer token (WWW-Authenticate says why)")
        for path, item in paths.items():
            if path in OPEN_PATHS:
                continue
            for operation in item.values():
                operation["security"] = [{"bearer": []}]
                operation["responses"]["401"] = refused
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": components,
    }
