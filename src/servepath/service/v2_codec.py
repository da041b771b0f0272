"""Open Inference Protocol (V2) REST: tensors in, tensors out, one tensor per feature.

Datatypes follow the model: numbers are ``FP64``, categories ``BYTES``, booleans ``BOOL``;
``decision`` is ``BYTES``, ``INT64``, ``FP64`` or ``BOOL`` as the model's class labels are;
``probability`` and ``prediction`` are ``FP64``, ``probabilities`` an ``FP64`` tensor of
shape ``[rows, classes]``. The binary tensor extension (tritonclient's default) is read and
written: :func:`parse_request` and :func:`encode_response`. All pure.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import orjson

from servepath.errors import MAX_ERRORS, FieldError, InvalidInput, clip, shown
from servepath.model.loaded import LoadedModel
from servepath.model.schema import Value
from servepath.service.asgi import parse_json

#: The fields of an input tensor (the protocol's); anything else is refused (400).
TENSOR_FIELDS = frozenset({"name", "shape", "datatype", "parameters", "data"})
#: What ``GET /v2`` lists: the protocol extensions this server reads and writes.
EXTENSIONS = ("binary_tensor_data",)

_NUMPY = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_NUMERIC = set(_NUMPY)
_INPUT_TYPES = {"number": "FP64", "category": "BYTES", "boolean": "BOOL"}
_LABEL_TYPES = {"string": "BYTES", "integer": "INT64", "number": "FP64", "boolean": "BOOL"}


def output_datatype(model: LoadedModel, name: str) -> str:
    if name == "decision":
        return _LABEL_TYPES[model.output_kind]
    return "FP64"


def metadata(model: LoadedModel) -> dict[str, Any]:
    inputs = [
        {"name": f.name, "datatype": _INPUT_TYPES[f.kind], "shape": [-1]}
        for f in model.schema.features
        if f.kind != "any"
    ]
    outputs = []
    for name in model.outputs:
        entry: dict[str, Any] = {
            "name": name,
            "datatype": output_datatype(model, name),
            "shape": [-1],
        }
        if name == "probabilities":
            entry["shape"] = [-1, len(model.classes)]
            entry["parameters"] = {"classes": [str(c) for c in model.classes]}
        outputs.append(entry)
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": model.format,
        "inputs": inputs,
        "outputs": outputs,
    }


# --- requests --------------------------------------------------------------------------


def parse_request(raw: bytes, header_length: str | int | None) -> Any:
    """The JSON request, with the data of binary tensors decoded into each tensor's ``data``.

    ``header_length``: the ``Inference-Header-Content-Length`` header, None for pure JSON.
    """
    if header_length is None:
        return parse_json(raw)
    try:
        length = int(header_length)
    except (TypeError, ValueError):
        raise InvalidInput(
            [FieldError((), f"Inference-Header-Content-Length {clip(header_length)!r}", "header")]
        ) from None
    if not 0 < length <= len(raw):
        raise InvalidInput(
            [
                FieldError(
                    (),
                    f"Inference-Header-Content-Length {length} does not fit a body of "
                    f"{len(raw)} bytes",
                    "header",
                )
            ]
        )
    body = parse_json(raw[:length])
    offset = length
    tensors = body.get("inputs") if isinstance(body, Mapping) else None
    for i, tensor in enumerate(tensors if isinstance(tensors, list) else []):
        if not isinstance(tensor, dict):
            continue
        params = tensor.get("parameters")
        size = params.get("binary_data_size") if isinstance(params, Mapping) else None
        if size is None:
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(raw):
            raise InvalidInput(
                [
                    FieldError(
                        ("inputs", i, "parameters", "binary_data_size"),
                        f"binary_data_size {shown(size)} runs past the end of the body",
                        "binary",
                    )
                ]
            )
        chunk = raw[offset : offset + size]
        offset += size
        tensor["data"] = _decode_binary(chunk, tensor.get("datatype"), ("inputs", i))
    if offset != len(raw):
        raise InvalidInput(
            [FieldError((), f"{len(raw) - offset} bytes after the last binary tensor", "binary")]
        )
    return body


def _decode_binary(chunk: bytes, datatype: Any, loc: tuple[str | int, ...]) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        pos = 0
        while pos < len(chunk):
            if pos + 4 > len(chunk):
                raise InvalidInput([FieldError(loc, "truncated BYTES element", "binary")])
            (n,) = struct.unpack_from("<I", chunk, pos)
            pos += 4
            if pos + n > len(chunk):
                raise InvalidInput([FieldError(loc, "truncated BYTES element", "binary")])
            values.append(chunk[pos : pos + n])
            pos += n
        return values
    dtype = _NUMPY.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InvalidInput(
            [FieldError((*loc, "datatype"), f"unknown datatype {shown(datatype)}", "enum")]
        )
    if len(chunk) % dtype.itemsize:
        raise InvalidInput(
            [FieldError(loc, f"{len(chunk)} bytes is not a whole number of {datatype}", "binary")]
        )
    return list(np.frombuffer(chunk, dtype=dtype).tolist())


def _flatten(data: Any) -> list[Any]:
    """The values of a nested list, in order; without recursion (JSON may nest 1,024 deep)."""
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value.decode("latin-1")
    return value


def instances_from_request(body: Any, model: LoadedModel) -> list[dict[str, Any]]:
    """Turn a V2 inference request into instances (one per row), naming what is wrong."""
    if not isinstance(body, Mapping):
        raise InvalidInput([FieldError((), "expected a JSON object with 'inputs'", "type")])
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput(
            [FieldError(("inputs",), "expected a non-empty list of tensors", "type")]
        )
    if "outputs" in body and not isinstance(body["outputs"], list):
        # Refused before the model runs, not found wanting while the answer is written.
        raise InvalidInput(
            [FieldError(("outputs",), "expected a list of requested outputs", "type")]
        )
    if "id" in body and not isinstance(body["id"], str):
        raise InvalidInput([FieldError(("id",), "expected a string", "type")])
    params = body.get("parameters")
    if params is not None and not isinstance(params, Mapping):
        raise InvalidInput([FieldError(("parameters",), "expected an object", "type")])
    if params is not None and not isinstance(params.get("binary_data_output", False), bool):
        raise InvalidInput(
            [FieldError(("parameters", "binary_data_output"), "expected true or false", "type")]
        )
    for i, out in enumerate(body.get("outputs") or []):
        if not isinstance(out, Mapping) or not isinstance(out.get("name"), str):
            raise InvalidInput(
                [FieldError(("outputs", i, "name"), "a requested output needs a name", "missing")]
            )
        if out["name"] not in model.outputs:
            known = ", ".join(model.outputs)
            raise InvalidInput(
                [
                    FieldError(
                        ("outputs", i, "name"),
                        f"the model has no output {shown(out['name'])} (it has {known})",
                        "enum",
                    )
                ]
            )
    columns: dict[str, list[Any]] = {}
    errors: list[FieldError] = []
    for i, tensor in enumerate(tensors):
        if len(errors) >= MAX_ERRORS:
            raise InvalidInput(errors, stopped=True)
        if not isinstance(tensor, Mapping):
            errors.append(FieldError(("inputs", i), "expected a tensor object", "type"))
            continue
        name = tensor.get("name")
        if not isinstance(name, str):
            errors.append(FieldError(("inputs", i, "name"), "tensor name required", "missing"))
            continue
        if "parameters" in tensor and not isinstance(tensor["parameters"], Mapping):
            errors.append(FieldError(("inputs", i, "parameters"), "expected an object", "type"))
            continue
        extra = [k for k in tensor if k not in TENSOR_FIELDS]
        if extra:
            errors.append(
                FieldError(("inputs", i, shown(extra[0])), "not a field of a tensor", "extra")
            )
            continue
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str) or (datatype != "BYTES" and datatype not in _NUMERIC):
            errors.append(
                FieldError(("inputs", i, "datatype"), f"unknown datatype {shown(datatype)}", "enum")
            )
            continue
        data = tensor.get("data")
        if data is None:
            errors.append(FieldError(("inputs", i, "data"), "tensor data required", "missing"))
            continue
        if not isinstance(data, list):
            errors.append(FieldError(("inputs", i, "data"), "expected an array", "type"))
            continue
        values = [_decode(v) for v in _flatten(data)]
        if datatype == "BOOL":
            values = [bool(v) if isinstance(v, int) else v for v in values]
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in shape
        ):
            errors.append(FieldError(("inputs", i, "shape"), "expected a list of integers", "type"))
            continue
        expected = 1
        for s in shape:
            expected *= s
            if not 0 <= expected <= len(values):
                # Past the data already: stop before the product of a caller's integers
                # grows too large to print (Python refuses past 4,300 digits).
                break
        if expected != len(values):
            holds = f"holds {expected} values" if 0 <= expected <= len(values) else "does not fit"
            errors.append(
                FieldError(
                    ("inputs", i, "shape"),
                    f"shape {clip(shape)} {holds} but data has {len(values)}",
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


# --- responses -------------------------------------------------------------------------


def validate_rows(
    model: LoadedModel, body: Mapping[str, Any], instances: list[dict[str, Any]]
) -> list[dict[str, Value]]:
    """The model's clean rows for the request's instances; errors located in its tensors."""
    try:
        return model.schema.validate_many(instances, loc=("inputs",))
    except InvalidInput as exc:
        raise tensor_errors(exc, body) from exc


def tensor_errors(exc: InvalidInput, body: Mapping[str, Any]) -> InvalidInput:
    """``exc`` (from rows: ``inputs.ROW.FIELD``) located where the caller wrote the value.

    A row is an element of every tensor, so ``inputs.0.city`` names the wrong thing: the
    value is element 0 of the tensor named ``city``, at ``inputs.J.data.0`` where J is that
    tensor's place in the request. A field no tensor carries is one error, not one a row.
    """
    tensors = body.get("inputs")
    index = {
        t["name"]: j
        for j, t in enumerate(tensors if isinstance(tensors, list) else [])
        if isinstance(t, Mapping) and isinstance(t.get("name"), str)
    }
    errors: list[FieldError] = []
    once: set[tuple[str, str]] = set()
    for e in exc.errors:
        match e.loc:
            case ("inputs", int(row), str(name), *rest) if name in index and e.type != "extra":
                where = f"input {name!r}, element {row}"
                errors.append(
                    replace(e, loc=("inputs", index[name], "data", row, *rest), where=where)
                )
            case ("inputs", int(_), str(name), *_):
                if (name, e.type) not in once:
                    once.add((name, e.type))
                    errors.append(replace(e, loc=("inputs",), where=f"input {name!r}"))
            case ("inputs", int(row)):
                errors.append(replace(e, where=f"element {row} of every input"))
            case _:
                errors.append(e)
    return InvalidInput(errors, exc.more, exc.stopped)


def response(
    model: LoadedModel,
    outputs: Sequence[Mapping[str, Any]],
    request_id: str | None,
    requested: Sequence[str] | None,
) -> dict[str, Any]:
    names = [n for n in model.outputs if not requested or n in requested]
    tensors = []
    n = len(outputs)
    for name in names:
        datatype = output_datatype(model, name)
        if name == "probabilities":
            keys = [str(c) for c in model.classes]
            data: list[Any] = [o[name][k] for o in outputs for k in keys]
            shape = [n, len(keys)]
        else:
            data = [o[name] for o in outputs]
            shape = [n]
            if data and isinstance(data[0], list):  # multi-target regression
                shape = [n, len(data[0])]
                data = [v for row in data for v in row]
            if datatype == "BYTES":
                data = [str(v) for v in data]
        tensors.append({"name": name, "datatype": datatype, "shape": shape, "data": data})
    result: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": tensors,
    }
    if request_id is not None:
        result["id"] = request_id
    return result


def binary_outputs(body: Any) -> set[str] | bool:
    """Which outputs the request wants as binary: True for all, else their names."""
    if not isinstance(body, Mapping):
        return set()
    params = body.get("parameters")
    everything = isinstance(params, Mapping) and params.get("binary_data_output") is True
    wanted: set[str] = set()
    outputs = body.get("outputs")
    for out in outputs if isinstance(outputs, list) else []:
        if isinstance(out, Mapping) and isinstance(out.get("name"), str):
            p = out.get("parameters")
            if isinstance(p, Mapping):
                if p.get("binary_data") is True:
                    wanted.add(out["name"])
                    continue
                if p.get("binary_data") is False:
                    continue
            if everything:
                wanted.add(out["name"])
    if everything and not body.get("outputs"):
        return True
    return wanted


def encode_response(result: dict[str, Any], binary: set[str] | bool) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when some tensor went binary."""
    chunks: list[bytes] = []
    for tensor in result["outputs"]:
        if binary is False or (isinstance(binary, set) and tensor["name"] not in binary):
            continue
        raw = _encode_binary(tensor["data"], tensor["datatype"])
        del tensor["data"]
        tensor["parameters"] = {**tensor.get("parameters", {}), "binary_data_size": len(raw)}
        chunks.append(raw)
    header = orjson.dumps(result)
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def _encode_binary(data: Sequence[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in data:
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.asarray(data, dtype=_NUMPY[datatype]).tobytes()
