"""The OpenAPI document, built from the model's real input schema and example instance."""

from __future__ import annotations

from typing import Any

from servepath.config import Settings
from servepath.contract import DEFAULT_PREDICT_ROUTE, X_SERVEPATH
from servepath.model.loaded import LoadedModel

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
        },
    },
    "required": ["error"],
}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON",
        404: "Unknown route or model",
        413: "Body or batch too large",
        415: "Not JSON",
        422: "Invalid instance: each offending field is named",
        503: "Model not loaded yet",
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
    prediction = {
        "type": "object",
        "properties": {**output_props, "model_version": {"type": "string"}},
        "required": [*output_props, "model_version"],
    }
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
        },
    }
    paths: dict[str, Any] = {
        settings.health_route: {
            "get": {
                "summary": "Health: 200 once the model is loaded, 503 before",
                "operationId": "health",
                "responses": {"200": {"description": "Ready"}, **_errors(503)},
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
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": {"description": "Output tensors"}, **_errors(400, 404)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {"200": {"description": "Prometheus text format"}},
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
                "responses": {"200": {"description": "Peer, socket, Host, forwarded chain"}},
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
                        "parameters": {"type": "object"},
                    },
                    "required": ["instances"],
                },
                "Prediction": prediction,
                "VertexResponse": {
                    "type": "object",
                    "properties": {
                        "predictions": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Prediction"},
                        },
                        "model_version": {"type": "string"},
                    },
                },
                "Error": _ERROR,
            }
        },
    }


DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>servepath API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
<noscript>The machine-readable API description is at <a href="/openapi.json">/openapi.json</a>.
</noscript></body></html>
"""
