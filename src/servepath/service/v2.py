"""Open Inference Protocol (V2) REST: tensors in, tensors out, one tensor per feature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from servepath.errors import FieldError, InvalidInput
from servepath.model.loaded import LoadedModel

_NUMERIC = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "BOOL",
}


def metadata(model: LoadedModel) -> dict[str, Any]:
    inputs = [
        {
            "name": f.name,
            "datatype": "BYTES" if f.kind == "category" else "FP64",
            "shape": [-1],
        }
        for f in model.schema.features
    ]
    outputs = [
        {"name": name, "datatype": "FP64" if name == "probability" else "BYTES", "shape": [-1]}
        for name in model.outputs
    ]
    if model.outputs == ("prediction",):
        outputs = [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": model.format,
        "inputs": inputs,
        "outputs": outputs,
    }


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        out: list[Any] = []
        for item in data:
            out.extend(_flatten(item) if isinstance(item, list) else [item])
        return out
    return [data]


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def instances_from_request(body: Any, model: LoadedModel) -> list[dict[str, Any]]:
    """Turn a V2 inference request into instances (one per row), naming what is wrong."""
    if not isinstance(body, Mapping):
        raise InvalidInput([FieldError((), "expected a JSON object with 'inputs'", "type")])
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput(
            [FieldError(("inputs",), "expected a non-empty list of tensors", "type")]
        )
    columns: dict[str, list[Any]] = {}
    errors: list[FieldError] = []
    for i, tensor in enumerate(tensors):
        if not isinstance(tensor, Mapping):
            errors.append(FieldError(("inputs", i), "expected a tensor object", "type"))
            continue
        name = tensor.get("name")
        if not isinstance(name, str):
            errors.append(FieldError(("inputs", i, "name"), "tensor name required", "missing"))
            continue
        datatype = tensor.get("datatype")
        if datatype != "BYTES" and datatype not in _NUMERIC:
            errors.append(
                FieldError(("inputs", i, "datatype"), f"unknown datatype {datatype!r}", "enum")
            )
            continue
        data = tensor.get("data")
        if data is None:
            errors.append(FieldError(("inputs", i, "data"), "tensor data required", "missing"))
            continue
        values = [_decode(v) for v in _flatten(data)]
        shape = tensor.get("shape")
        if isinstance(shape, list) and all(isinstance(s, int) for s in shape):
            expected = 1
            for s in shape:
                expected *= s
            if expected != len(values):
                errors.append(
                    FieldError(
                        ("inputs", i, "shape"),
                        f"shape {shape} holds {expected} values but data has {len(values)}",
                        "shape",
                    )
                )
                continue
        columns[name] = values
    if errors:
        raise InvalidInput(errors)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise InvalidInput(
            [FieldError(("inputs",), f"tensors have different lengths: {sorted(lengths)}", "shape")]
        )
    n = lengths.pop() if lengths else 0
    return [{name: values[row] for name, values in columns.items()} for row in range(n)]


def response(
    model: LoadedModel,
    outputs: Sequence[Mapping[str, Any]],
    request_id: str | None,
    requested: Sequence[str] | None,
) -> dict[str, Any]:
    names = [n for n in model.outputs if not requested or n in requested]
    tensors = []
    for name in names:
        data = [o[name] for o in outputs]
        datatype = "FP64" if name in ("probability", "prediction") else "BYTES"
        if datatype == "FP64" and not all(isinstance(v, int | float) for v in data):
            datatype = "BYTES"
            data = [str(v) for v in data]
        tensors.append({"name": name, "datatype": datatype, "shape": [len(data)], "data": data})
    result: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": tensors,
    }
    if request_id is not None:
        result["id"] = request_id
    return result
