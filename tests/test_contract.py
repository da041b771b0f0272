"""The server's contract as clients read it: which route they send to, which example they send."""

from __future__ import annotations

from typing import Any

import pytest

from servepath.contract import (
    DEFAULT_BATCH_LIMIT,
    DEFAULT_HEALTH_ROUTE,
    DEFAULT_PATH_ECHO_ROUTE,
    DEFAULT_PREDICT_ROUTE,
    X_SERVEPATH,
    NoExample,
    ServerContract,
    batch_limit,
    documented_routes,
    example_for,
    instances_of,
    is_servepath_spec,
    predict_url,
    request_example,
    request_schema,
    v2_infer_body,
    v2_metadata_route,
)

INSTANCE = {"income": 52000.0, "age": 38, "purpose": "car"}
OTHER = {"income": 1.0, "age": 99, "purpose": "boat"}


def _post(media: dict[str, Any]) -> dict[str, Any]:
    return {"post": {"requestBody": {"content": {"application/json": media}}}}


def servepath_spec(predict_route: str = "/v1/predict", **marks: Any) -> dict[str, Any]:
    """A document as `servepath serve` writes it, with its predict route moved."""
    return {
        "openapi": "3.1.0",
        X_SERVEPATH: {
            "predict_route": predict_route,
            "health_route": "/healthz",
            "path_echo_route": "/_where",
            **marks,
        },
        "paths": {
            "/healthz": {"get": {}},
            predict_route: _post({"example": INSTANCE}),
        },
    }


def foreign_spec() -> dict[str, Any]:
    """A document some other framework wrote: no x-servepath, an example on /predict."""
    return {"openapi": "3.0.0", "paths": {"/predict": _post({"example": INSTANCE})}}


# ---- routes --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["", "/"])
def test_a_bare_origin_means_the_servers_own_predict_route(path: str) -> None:
    spec = servepath_spec("/v1/predict")
    assert ServerContract.from_spec(spec).route_for(path, spec) == "/v1/predict"


def test_a_url_that_names_a_path_names_the_route_even_one_the_server_does_not_document() -> None:
    spec = servepath_spec("/v1/predict")
    contract = ServerContract.from_spec(spec)
    assert contract.route_for("/v1/predict", spec) == "/v1/predict"
    assert contract.route_for("/decisions", spec) == "/decisions"
    assert contract.route_for("/typo", spec) == "/typo"


def test_a_documented_spec_gives_its_routes() -> None:
    contract = ServerContract.from_spec(servepath_spec("/v1/predict"))
    assert contract.documented
    assert contract.predict_route == "/v1/predict"
    assert contract.health_route == "/healthz"
    assert contract.path_echo_route == "/_where"


@pytest.mark.parametrize("spec", [None, {}, foreign_spec(), {X_SERVEPATH: "yes"}, []])
def test_an_undocumented_spec_means_the_default_routes(spec: Any) -> None:
    contract = ServerContract.from_spec(spec)
    assert not contract.documented
    assert contract.predict_route == DEFAULT_PREDICT_ROUTE
    assert contract.health_route == DEFAULT_HEALTH_ROUTE
    assert contract.path_echo_route == DEFAULT_PATH_ECHO_ROUTE
    assert contract.route_for("/", spec) == DEFAULT_PREDICT_ROUTE


def test_a_bare_origin_on_a_foreign_server_still_means_the_default_predict_route() -> None:
    spec = foreign_spec()
    assert ServerContract.from_spec(spec).route_for("", spec) == DEFAULT_PREDICT_ROUTE


def test_marks_of_the_wrong_type_fall_back_to_the_defaults() -> None:
    contract = ServerContract.from_spec(
        servepath_spec(predict_route="/p") | {X_SERVEPATH: {"predict_route": 7, "health_route": []}}
    )
    assert contract.documented
    assert contract.predict_route == DEFAULT_PREDICT_ROUTE
    assert contract.health_route == DEFAULT_HEALTH_ROUTE


def test_a_server_with_path_echo_switched_off_says_so() -> None:
    assert ServerContract.from_spec(servepath_spec(path_echo_route=None)).path_echo_route is None


def test_only_a_document_with_x_servepath_is_servepaths() -> None:
    assert is_servepath_spec(servepath_spec())
    assert not is_servepath_spec(foreign_spec())
    assert not is_servepath_spec(None)
    assert not is_servepath_spec({X_SERVEPATH: "yes"})


# ---- examples ------------------------------------------------------------------------------


def test_the_example_is_the_routes_request_body_example() -> None:
    assert example_for(servepath_spec("/v1/predict"), "/v1/predict") == INSTANCE
    assert example_for(foreign_spec(), "/predict") == INSTANCE


def test_example_comes_before_examples() -> None:
    spec = {"paths": {"/p": _post({"example": INSTANCE, "examples": {"x": {"value": OTHER}}})}}
    assert example_for(spec, "/p") == INSTANCE


def test_without_example_the_first_of_examples_stands_in() -> None:
    spec = {
        "paths": {
            "/p": _post({"examples": {"first": {"value": INSTANCE}, "second": {"value": OTHER}}})
        }
    }
    assert example_for(spec, "/p") == INSTANCE


def test_examples_without_a_value_give_no_example() -> None:
    spec = {"paths": {"/p": _post({"examples": {"first": {"externalValue": "http://x/e.json"}}})}}
    assert example_for(spec, "/p") is None


def test_a_wrong_route_on_a_servepath_server_gets_the_predict_routes_example() -> None:
    # so that the request is well formed and the answer (a 404 listing the routes) is seen
    assert example_for(servepath_spec("/v1/predict"), "/decisoins") == INSTANCE


def test_a_wrong_route_on_a_foreign_server_gets_no_example() -> None:
    assert example_for(foreign_spec(), "/decisions") is None


@pytest.mark.parametrize(
    "spec",
    [
        None,
        {},
        {"paths": []},
        {"paths": {"/p": {"get": {}}}},
        {"paths": {"/p": {"post": {"requestBody": {"content": {"text/plain": {}}}}}}},
        {"paths": {"/p": _post({"schema": {"type": "object"}})}},
    ],
)
def test_a_route_without_a_json_example_gives_none(spec: Any) -> None:
    assert example_for(spec, "/p") is None


# ---- instances -----------------------------------------------------------------------------


def test_a_single_instance_is_a_list_of_one() -> None:
    assert instances_of(INSTANCE) == [INSTANCE]


def test_the_vertex_form_gives_its_instances() -> None:
    body = {"instances": [INSTANCE, OTHER], "parameters": {}}
    assert instances_of(body) == [INSTANCE, OTHER]


def test_instances_are_copies_the_caller_may_change() -> None:
    found = instances_of({"instances": [INSTANCE]})
    assert found is not None
    found[0]["age"] = 0
    assert INSTANCE["age"] == 38


@pytest.mark.parametrize(
    "body",
    [None, 7, "text", [INSTANCE], {"instances": []}, {"instances": [INSTANCE, 3]}],
)
def test_garbage_has_no_instances(body: Any) -> None:
    assert instances_of(body) is None


# --- the document's other readings: routes, batch limit, request schema, predict URL ------


def test_documented_routes_list_every_method_and_path_in_the_documents_order() -> None:
    spec = {"paths": {"/": {"get": {}}, "/decisions": {"post": {}, "options": {}}, "/x": 3}}
    assert documented_routes(spec) == ["GET /", "POST /decisions", "OPTIONS /decisions"]
    assert documented_routes(None) == []
    assert documented_routes({"paths": []}) == []


def test_the_batch_limit_is_the_vertex_requests_max_items_or_the_default() -> None:
    def doc(limit: object) -> dict[str, object]:
        instances = {"type": "array", "maxItems": limit}
        return {
            "components": {"schemas": {"VertexRequest": {"properties": {"instances": instances}}}}
        }

    assert batch_limit(doc(64)) == 64
    for bad in (0, -1, "64", None):
        assert batch_limit(doc(bad)) == DEFAULT_BATCH_LIMIT
    assert batch_limit(None) == DEFAULT_BATCH_LIMIT
    assert batch_limit({"components": []}) == DEFAULT_BATCH_LIMIT


def test_the_request_schema_is_the_routes_json_body_schema_as_written() -> None:
    spec = foreign_spec()
    spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"] = {
        "$ref": "#/components/schemas/Instance"
    }
    assert request_schema(spec, "/predict") == {"$ref": "#/components/schemas/Instance"}
    assert request_schema(foreign_spec(), "/predict") is None  # a body without a schema
    assert request_schema(spec, "/other") is None
    assert request_schema(None, "/predict") is None


def test_a_bare_origin_predicts_on_the_documented_route_and_a_named_route_is_kept() -> None:
    spec = servepath_spec("/v1/predict")
    assert predict_url("http://h:8080", spec) == "http://h:8080/v1/predict"
    assert predict_url("http://h:8080/?a=1", spec) == "http://h:8080/v1/predict?a=1"
    assert predict_url("http://h:8080/mine", spec) == "http://h:8080/mine"
    assert predict_url("http://h:8080/", None) == "http://h:8080" + DEFAULT_PREDICT_ROUTE


def test_the_request_example_names_what_the_document_lacks() -> None:
    found = request_example(foreign_spec(), "/predict")
    assert found.require() == [INSTANCE]
    with pytest.raises(NoExample, match="no JSON request body for POST /nope") as no_body:
        request_example(foreign_spec(), "/nope").require()
    assert no_body.value.missing == "no_body"
    bare = foreign_spec()
    del bare["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    with pytest.raises(NoExample, match=r"doc\.json shows no example for POST /predict"):
        request_example(bare, "/predict").require("doc.json")
    listed = foreign_spec()
    listed["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"] = [
        1
    ]
    odd = request_example(listed, "/predict")
    assert odd.body == [1] and odd.instances is None
    with pytest.raises(NoExample, match="POST /predict is not an instance") as not_instances:
        odd.require()
    assert not_instances.value.missing == "not_instances"


# --- the V2 route ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v2/models/credit/infer", "/v2/models/credit"),
        ("/v2/models/credit/versions/3/infer", "/v2/models/credit/versions/3"),
        ("/v2/models/credit/infer/", "/v2/models/credit"),
        ("/v2/models/credit", None),
        ("/decisions", None),
    ],
)
def test_a_v2_infer_path_names_where_its_models_metadata_is(path: str, route: str | None) -> None:
    assert v2_metadata_route(path) == route


def test_v2_tensors_are_typed_as_the_metadata_says_from_the_example_instance() -> None:
    metadata = {
        "inputs": [
            {"name": "income", "datatype": "FP64", "shape": [-1]},
            {"name": "purpose", "datatype": "BYTES", "shape": [-1]},
            {"name": "owner", "datatype": "BOOL", "shape": [-1]},
            {"name": "age", "datatype": "INT64", "shape": [-1]},
        ]
    }
    instance = {"income": 52000, "purpose": "car", "owner": True, "age": 41.0, "extra": 1}
    assert v2_infer_body(metadata, instance) == {
        "inputs": [
            {"name": "income", "datatype": "FP64", "shape": [1], "data": [52000.0]},
            {"name": "purpose", "datatype": "BYTES", "shape": [1], "data": ["car"]},
            {"name": "owner", "datatype": "BOOL", "shape": [1], "data": [True]},
            {"name": "age", "datatype": "INT64", "shape": [1], "data": [41]},
        ]
    }


@pytest.mark.parametrize(
    ("metadata", "instance"),
    [
        ({"inputs": [{"name": "x", "datatype": "FP64"}]}, {"y": 1.0}),  # not in the example
        ({"inputs": [{"name": "x", "datatype": "FP64"}]}, {"x": "many"}),  # not a number
        ({"inputs": []}, {"x": 1.0}),
        ({"error": "not found"}, {"x": 1.0}),
    ],
)
def test_no_v2_body_is_guessed_where_the_example_cannot_fill_the_metadata(
    metadata: dict[str, Any], instance: dict[str, Any]
) -> None:
    assert v2_infer_body(metadata, instance) is None
