"""The OpenAPI document, built from the model's real input schema and example instance."""

from __future__ import annotations

from typing import Any

from servepath.config import Settings
from servepath.contract import DEFAULT_PREDICT_ROUTE, X_SERVEPATH
from servepath.errors import MAX_ERRORS
from servepath.model.loaded import LoadedModel
from servepath.service import v2_codec as v2

_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
            "maxItems": MAX_ERRORS,
        },
        "more_errors": {
            "type": "integer",
            "description": "errors found beyond those listed in detail",
        },
        "validation_stopped": {
            "type": "boolean",
            "description": "validation stopped at the instance that filled detail; the "
            "instances after it were not checked",
        },
    },
    "required": ["error"],
}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON",
        404: "Unknown route or model",
        413: "Body or batch too large",
        401: "An API key is needed (the server has --api-key-file)",
        415: "Not JSON",
        422: "Invalid instance: each offending field is named",
        503: "Model not loaded yet, draining, or overloaded (Retry-After says when to retry)",
    }
    return {
        str(c): {
            "description": text[c],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def output_schema(model: LoadedModel) -> dict[str, Any]:
    """The JSON schema of each output a prediction carries, typed as the model answers."""
    label: dict[str, Any] = {
        "type": model.output_kind,
        "description": "the predicted class, as the model's own predict() names it",
    }
    if model.classes:
        label["enum"] = list(model.classes)
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    props: dict[str, Any] = {}
    for name in model.outputs:
        if name == "decision":
            props[name] = label
        elif name == "probability":
            props[name] = {**probability, "description": "the probability of the decision"}
        elif name == "probabilities":
            props[name] = {
                "type": "object",
                "description": "the probability of each class",
                "properties": {str(c): probability for c in model.classes},
                "required": [str(c) for c in model.classes],
            }
        else:
            props[name] = {"type": "number", "description": "the model's prediction"}
    return props


def build_openapi(settings: Settings, model: LoadedModel | None, version: str) -> dict[str, Any]:
    instance: dict[str, Any]
    output_props: dict[str, Any]
    if model is not None:
        instance = model.schema.json_schema()
        example = model.schema.example()
        output_props = output_schema(model)
    else:
        instance, example, output_props = {"type": "object"}, {}, {}
    output = {"type": "object", "properties": output_props, "required": list(output_props)}
    prediction = {
        "type": "object",
        "properties": {
            **output_props,
            "model_version": {"type": "string"},
            "model_label": {"type": "string"},
        },
        "required": [*output_props, "model_version"],
    }
    keyed = settings.api_key_file is not None
    auth = _errors(401) if keyed else {}
    security: dict[str, Any] = {"security": [{"bearer": []}, {"apiKey": []}]} if keyed else {}
    health_security = security if settings.protect_health else {}
    predict_op = {
        "summary": "Predict one instance, or a Vertex AI batch of instances",
        "operationId": "predict",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Instance"},
                            {"$ref": "#/components/schemas/VertexRequest"},
                        ]
                    },
                    "example": example,
                    "examples": {
                        "single": {"summary": "One instance", "value": example},
                        "vertex": {
                            "summary": "Vertex AI form",
                            "value": {"instances": [example], "parameters": {}},
                        },
                    },
                }
            },
        },
        "responses": {
            "200": {
                "description": "A prediction (single form) or predictions (Vertex form)",
                "headers": {
                    "X-Cache": {"schema": {"type": "string", "enum": ["HIT", "MISS"]}},
                    "Server-Timing": {"schema": {"type": "string"}},
                },
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": "#/components/schemas/Prediction"},
                                {"$ref": "#/components/schemas/VertexResponse"},
                            ]
                        }
                    }
                },
            },
            **_errors(400, 413, 415, 422, 503),
            **auth,
        },
        **security,
    }
    paths: dict[str, Any] = {
        settings.health_route: {
            "get": {
                "summary": "Health: 200 once the model is loaded, 503 before",
                "operationId": "health",
                "responses": {
                    "200": {"description": "Ready"},
                    **_errors(503),
                    **(auth if settings.protect_health else {}),
                },
                **health_security,
            }
        },
        settings.predict_route: {"post": predict_op},
        "/v2/models/{model_name}/infer": {
            "post": {
                "summary": "Open Inference Protocol V2 inference",
                "operationId": "v2_infer",
                "parameters": [
                    {
                        "name": "model_name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", **({"enum": [model.name]} if model else {})},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/V2Request"}}
                    },
                },
                "responses": {
                    "200": {"description": "Output tensors"},
                    **_errors(400, 404, 413, 415, 503),
                    **auth,
                },
                **security,
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {"description": "Prometheus text format"},
                    **(auth if keyed and "/metrics" not in _open(settings) else {}),
                },
                **(security if "/metrics" not in _open(settings) else {}),
            }
        },
    }
    if settings.predict_route != DEFAULT_PREDICT_ROUTE:
        paths[DEFAULT_PREDICT_ROUTE] = {"post": {**predict_op, "operationId": "predict_default"}}
    if settings.path_echo_route:
        paths[settings.path_echo_route] = {
            "get": {
                "summary": "Path echo: what the server saw of this request",
                "operationId": "path_echo",
                "responses": {
                    "200": {"description": "Peer, socket, Host, forwarded chain"},
                    **(auth if settings.path_echo_route not in _open(settings) else {}),
                },
                **(security if settings.path_echo_route not in _open(settings) else {}),
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"servepath: {model.name if model else 'model'}",
            "version": version,
            "description": "Model API served by servepath. The predict route takes one instance "
            'or the Vertex AI form {"instances": [...], "parameters": {...}}.',
        },
        X_SERVEPATH: {
            "predict_route": settings.predict_route,
            "health_route": settings.health_route,
            "path_echo_route": settings.path_echo_route,
            "model": model.describe() if model else None,
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Instance": instance,
                "VertexRequest": {
                    "type": "object",
                    "properties": {
                        "instances": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": settings.max_instances,
                            "items": {"$ref": "#/components/schemas/Instance"},
                        },
                        "parameters": {"type": ["object", "null"]},
                    },
                    "required": ["instances"],
                    "additionalProperties": False,
                },
                "Output": output,
                "Prediction": prediction,
                "VertexResponse": {
                    "type": "object",
                    "properties": {
                        "predictions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Output"},
                        },
                        "model_version": {"type": "string"},
                        "model_label": {"type": "string"},
                    },
                    "required": ["predictions", "model_version"],
                },
                "V2Request": v2_request_schema(model),
                "Error": _ERROR,
            },
            **(_SECURITY_SCHEMES if keyed else {}),
        },
    }


def _open(settings: Settings) -> set[str]:
    return {r.strip() for r in settings.open_routes.split(",") if r.strip()}


def v2_request_schema(model: LoadedModel | None) -> dict[str, Any]:
    """The V2 inference request the model takes: every input tensor it has, typed as
    ``GET /v2/models/NAME`` says, one row each (larger batches: ``shape: [n]`` with n values;
    JSON cannot tie a shape to its data's length, so the schema shows one row)."""
    tensors: list[dict[str, Any]] = []
    if model is not None:
        features = {f.name: f for f in model.schema.features}
        for spec in v2.metadata(model)["inputs"]:
            feature = features[spec["name"]]
            value: dict[str, Any] = {
                "number": {"type": "number"},
                "boolean": {"type": "boolean"},
            }.get(feature.kind, {"type": "string"})
            if feature.kind == "category" and feature.categories and feature.closed:
                value = {"enum": [str(c) for c in feature.categories]}
            tensors.append(
                {
                    "type": "object",
                    "properties": {
                        "name": {"const": spec["name"]},
                        "shape": {"const": [1]},
                        "datatype": {"const": spec["datatype"]},
                        "data": {"type": "array", "items": value, "minItems": 1, "maxItems": 1},
                        "parameters": {"type": "object"},
                    },
                    "required": ["name", "shape", "datatype", "data"],
                    "additionalProperties": False,
                }
            )
    inputs: dict[str, Any] = {"type": "array", "minItems": 1}
    if tensors:
        inputs.update(prefixItems=tensors, items=False, minItems=len(tensors))
    outputs = {"enum": list(model.outputs)} if model is not None else {"type": "string"}
    return {
        "type": "object",
        "description": "Open Inference Protocol V2: one tensor per input feature",
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": ["object", "null"],
                "properties": {"binary_data_output": {"type": "boolean"}},
            },
            "inputs": inputs,
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": outputs},
                    "required": ["name"],
                },
            },
        },
        "required": ["inputs"],
    }


_SECURITY_SCHEMES = {
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
}
