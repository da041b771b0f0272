"""The input schema and classes of an ONNX model, read from its metadata or its graph.

Metadata (``onnx.helper.set_model_props`` / ``metadata_props``) wins:

* ``servepath.schema`` — a JSON list of features, as ``InputSchema.to_json()`` writes it;
* ``servepath.classes`` — a JSON list of class labels (or a comma-separated string);
* ``servepath.outputs`` — ``probabilities`` to add per-class probabilities to each answer.

Without ``servepath.schema``, each graph input is a feature: a string input is a category
whose values are those of the ``OneHotEncoder``/``LabelEncoder`` node that reads it (closed
when the encoder refuses unknown values); a number input's example is the centre a scaler
subtracts from it (for a matrix input, one centre per column). A string input whose
categories the graph does not state needs the metadata or a schema file: servepath does not
invent a category. A schema that does not fit the graph's inputs is refused at load.

Pure: parses a ``ModelProto``; nothing runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from servepath.model.schema import Category, Feature, FeatureKind, InputSchema, schema_from_json

SCHEMA_KEY = "servepath.schema"
CLASSES_KEY = "servepath.classes"
OUTPUTS_KEY = "servepath.outputs"
#: Nodes that pass a value on unchanged for the purpose of finding its graph input.
_TRANSPARENT = {"Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten"}


@dataclass(frozen=True)
class OnnxFacts:
    schema: InputSchema
    classes: list[Any] | None  # the class labels answers name
    graph_classes: list[Any] | None  # the labels the graph's label output holds
    probabilities: bool  # metadata asks for per-class probabilities
    schema_source: str  # "metadata", "graph", or the schema file


def parse_classes(text: str) -> list[Any]:
    text = text.strip()
    if text.startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError(f"{CLASSES_KEY} is not a list")
        return value
    return [c.strip() for c in text.split(",") if c.strip()]


def inspect_onnx(model: Any, meta: Mapping[str, str], schema_file: Any = None) -> OnnxFacts:
    """``model``: an ``onnx.ModelProto``; ``schema_file``: JSON already read from a file."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if schema_file is not None:
        schema, source = schema_from_json(schema_file), "schema file"
    elif meta.get(SCHEMA_KEY):
        schema, source = schema_from_json(json.loads(meta[SCHEMA_KEY])), "metadata"
    else:
        schema, source = _schema_from_graph(graph, inputs), "graph"
    _check_fit(schema, inputs, source)
    graph_classes = _classes(graph)
    classes = parse_classes(meta[CLASSES_KEY]) if meta.get(CLASSES_KEY) else graph_classes
    wanted = {o.strip() for o in meta.get(OUTPUTS_KEY, "").split(",")}
    return OnnxFacts(schema, classes, graph_classes, "probabilities" in wanted, source)


def _check_fit(schema: InputSchema, inputs: list[Any], source: str) -> None:
    """``ValueError`` when the schema's fields cannot feed the graph's inputs."""
    names = [f.name for f in schema.used]
    if len(inputs) == 1 and inputs[0].name not in names:
        width = _width(inputs[0])
        if width is not None and width != len(names):
            fields = f"{len(names)} field{'s' if len(names) != 1 else ''}"
            raise ValueError(
                f"the {source} names {fields}; the model's input {inputs[0].name} takes "
                f"{width} column{'s' if width != 1 else ''}"
            )
        return
    missing = [i.name for i in inputs if i.name not in names]
    if missing:
        raise ValueError(
            f"the {source} does not name the model's input{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (its inputs: {', '.join(i.name for i in inputs)})"
        )


def _elem_type(value_info: Any) -> int:
    return int(value_info.type.tensor_type.elem_type)


def _width(value_info: Any) -> int | None:
    dims = value_info.type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value"):
        return int(dims[1].dim_value)
    return None


def _schema_from_graph(graph: Any, inputs: list[Any]) -> InputSchema:
    from onnx import TensorProto

    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = _constants(graph)

    def source(name: str) -> str:
        node = producers.get(name)
        while node is not None and node.op_type in _TRANSPARENT and node.input:
            name = node.input[0]
            node = producers.get(name)
        return name

    encoders: dict[str, tuple[tuple[Category, ...], bool]] = {}
    centres: dict[str, float] = {}
    columns: dict[str, list[float]] = {}  # a matrix input's centres, one per column
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "OneHotEncoder" and node.input:
            cats = _attr_values(attrs, "cats_strings", "cats_int64s")
            zeros = attrs["zeros"].i if "zeros" in attrs else 1
            if cats:
                encoders[source(node.input[0])] = (cats, zeros == 0)
        elif node.op_type == "LabelEncoder" and node.input:
            cats = _attr_values(attrs, "keys_strings", "keys_int64s")
            if cats:
                encoders.setdefault(source(node.input[0]), (cats, False))
        elif node.op_type in ("Scaler", "Sub") and node.input:
            offsets: list[float] | None = None
            if node.op_type == "Scaler" and "offset" in attrs:
                offsets = list(attrs["offset"].floats)
            elif node.op_type == "Sub" and len(node.input) > 1 and node.input[1] in constants:
                offsets = [float(v) for v in constants[node.input[1]].reshape(-1)]
            if offsets and producers.get(source(node.input[0])) is None:
                columns.setdefault(source(node.input[0]), offsets)
            if offsets:
                for i, name in enumerate(_concat_inputs(node.input[0], producers, source)):
                    if name is not None and i < len(offsets):
                        centres.setdefault(name, offsets[i])
    if len(inputs) == 1 and (_width(inputs[0]) or 1) > 1:
        width = _width(inputs[0]) or 0
        only = inputs[0].name
        offsets = columns.get(only, [])
        return InputSchema(
            tuple(
                Feature(
                    f"{only}_{i}",
                    "number",
                    None,
                    round(offsets[i], 6) if i < len(offsets) and len(offsets) == width else 0.0,
                )
                for i in range(width)
            )
        )
    features = []
    for inp in inputs:
        elem = _elem_type(inp)
        if inp.name in encoders:
            cats, closed = encoders[inp.name]
            kind: FeatureKind = "category" if isinstance(cats[0], str) else "number"
            features.append(Feature(inp.name, kind, cats, cats[0], closed))
        elif elem == TensorProto.STRING:
            raise ValueError(
                f"input {inp.name!r} is a string, and the model does not say which values it "
                f"takes: state the schema in the {SCHEMA_KEY!r} metadata, give --schema FILE, "
                "or put it beside the model, named after the model's whole file name "
                "(model.onnx.schema.json)"
            )
        elif elem == TensorProto.BOOL:
            features.append(Feature(inp.name, "boolean", None, False))
        else:
            centre = centres.get(inp.name, 0.0)
            if elem in (TensorProto.INT64, TensorProto.INT32):
                centre = float(round(centre))
            features.append(Feature(inp.name, "number", None, round(centre, 6)))
    return InputSchema(tuple(features))


def _attr_values(attrs: Mapping[str, Any], strings: str, ints: str) -> tuple[Category, ...]:
    if strings in attrs and attrs[strings].strings:
        return tuple(s.decode() for s in attrs[strings].strings)
    if ints in attrs and attrs[ints].ints:
        return tuple(float(i) for i in attrs[ints].ints)
    return ()


def _concat_inputs(name: str, producers: Mapping[str, Any], source: Any) -> list[str | None]:
    """The graph input behind each column of ``name`` when it is a Concat of single columns."""
    node = producers.get(source(name)) if source(name) != name else producers.get(name)
    if node is None:
        return [source(name)]
    if node.op_type == "Concat":
        return [source(i) for i in node.input]
    return [None]


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    out = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(a.t)
    return out


def _classes(graph: Any) -> list[Any] | None:
    for node in graph.node:
        attrs = {a.name: a for a in node.attribute}
        for key in ("classlabels_strings", "classlabels_int64s", "classlabels_ints"):
            if key in attrs:
                a = attrs[key]
                values = [s.decode() for s in a.strings] if a.strings else list(a.ints)
                if values:
                    return values
    constants = _constants(graph)
    for node in graph.node:
        if node.op_type == "ArrayFeatureExtractor" and node.input[0] in constants:
            values = constants[node.input[0]].reshape(-1).tolist()
            return [v.decode() if isinstance(v, bytes) else v for v in values]
    return None
