"""Convert a scikit-learn model (XGBoost and LightGBM parts included) to ONNX, once per artifact.

skl2onnx converts scikit-learn; onnxmltools supplies the XGBoost and LightGBM converters,
registered into skl2onnx so that a pipeline holding them converts whole. A conversion is
cached by the artifact's content hash (and the converters' versions) in the data directory,
so a restart reads it instead of converting again; a conversion that failed is remembered too.

Two details make a conversion reproduce the library's own answers:

* numbers go in as float64 (``double``), so scalers and linear models compute what
  scikit-learn computes;
* onnxruntime's tree ensembles compute in float32, as scikit-learn's trees and XGBoost
  compare ``float32(x)`` with their thresholds; Casts around each tree ensemble keep the
  rest of the graph in float64 (LightGBM, which compares in float64, may then disagree:
  the probes decide);
* onnxruntime has no string ``Imputer``: it becomes ``Where(x == "", fill, x)``, and the
  feeder sends ``""`` for a missing string.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from servepath.model.schema import InputSchema

log = logging.getLogger(__name__)

Part = Literal["whole", "prep"]
#: The one input of a conversion that takes the columns as a matrix (a model without a
#: pipeline in front).
MATRIX_INPUT = "X"
#: Bumped when the conversion below changes, so that old cached files are not reused.
REVISION = 8


@dataclass(frozen=True)
class Conversion:
    onnx: bytes | None
    error: str | None
    cached: bool
    seconds: float


@functools.cache
def converter_versions() -> str:
    # From the installed metadata: importing the converters costs a second or more, which a
    # load that finds its conversion in the cache should not pay. Read once per process: a
    # package's metadata is parsed on each call, on the GIL, while a swap loads beside
    # requests being answered.
    from importlib.metadata import version

    return f"skl2onnx{version('skl2onnx')}-onnxmltools{version('onnxmltools')}-r{REVISION}"


def cache_path(cache_dir: Path, digest: str, part: Part, precision: str) -> Path:
    return cache_dir / digest[:32] / f"{part}-{precision}-{converter_versions()}.onnx"


def convert_cached(
    estimator: Any,
    schema: InputSchema,
    *,
    part: Part,
    precision: Literal["double", "float"],
    digest: str,
    cache_dir: Path | None,
    single_input: bool = False,
) -> Conversion:
    """ONNX bytes for ``estimator`` (``part="prep"``: all its steps but the last), from the
    cache when a previous run made them."""
    import time

    start = time.perf_counter()
    variant = f"{precision}-matrix" if single_input else precision
    path = cache_path(cache_dir, digest, part, variant) if cache_dir is not None else None
    failed = path.with_suffix(".failed") if path is not None else None
    if path is not None and path.is_file():
        return Conversion(path.read_bytes(), None, True, time.perf_counter() - start)
    if failed is not None and failed.is_file():
        return Conversion(None, failed.read_text(), True, time.perf_counter() - start)
    target = estimator
    if part == "prep":
        from sklearn.pipeline import Pipeline

        if not isinstance(estimator, Pipeline) or len(estimator.steps) < 2:
            return Conversion(None, "not a pipeline", False, 0.0)
        target = estimator[:-1]
    try:
        onnx_bytes = _convert(target, schema, precision, single_input)
        error = None
    except Exception as exc:  # converters raise anything: unsupported op, shape, type
        onnx_bytes, error = None, _short(exc)
    seconds = time.perf_counter() - start
    if path is not None and failed is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if onnx_bytes is not None:
                tmp = path.with_name(f".{path.name}.tmp")
                tmp.write_bytes(onnx_bytes)
                tmp.replace(path)
            elif error is not None:
                failed.write_text(error)
        except OSError as exc:  # a read-only data directory costs a conversion per start
            log.warning("cannot cache the ONNX conversion in %s: %s", path.parent, exc)
    return Conversion(onnx_bytes, error, False, seconds)


#: Where a converter's message turns from what failed into a dump of the node's attributes
#: (whole arrays of thresholds): the log keeps what comes before.
_DUMP_MARKERS = (" with name=", " and attributes=", "attributes={", "array(", "={")
#: A conversion failure is one line of at most this many characters.
SHORT_ERROR = 160


def _short(exc: Exception) -> str:
    """One plain line for a failed conversion: the message up to the attribute dump."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    for marker in _DUMP_MARKERS:
        if marker in text:
            text = text.split(marker, 1)[0].rstrip(" ,:")
    if len(text) > SHORT_ERROR:
        text = text[:SHORT_ERROR].rsplit(" ", 1)[0] + " …"
    return f"{type(exc).__name__}: {text}"


def _convert(estimator: Any, schema: InputSchema, precision: str, single_input: bool) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    _register_boosters()
    estimator = _strings_missing_as_empty(estimator)
    number = DoubleTensorType if precision == "double" else FloatTensorType
    types: list[tuple[str, Any]] = []
    if single_input:
        types.append((MATRIX_INPUT, number([None, len(schema.features)])))
    for f in schema.features if not single_input else ():
        if f.kind == "any" or f.kind == "category":
            types.append((f.name, StringTensorType([None, 1])))
        elif f.kind == "boolean":
            types.append((f.name, BooleanTensorType([None, 1])))
        elif f.categories and all(
            isinstance(c, int | float) and float(c).is_integer() for c in f.categories
        ):
            types.append((f.name, Int64TensorType([None, 1])))
        else:
            types.append((f.name, number([None, 1])))
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    options = {id(final): {"zipmap": False}} if hasattr(final, "classes_") else None
    model = convert_sklearn(
        estimator,
        initial_types=types,
        options=options,
        target_opset={"": 18, "ai.onnx.ml": 3},
    )
    _impute_with_where(model, precision)
    _missing_values_as_trained(model, estimator)
    if precision == "double":
        _trees_in_float32(model)
    return bytes(model.SerializeToString())


def _strings_missing_as_empty(estimator: Any) -> Any:
    """A copy whose string imputers look for "" instead of NaN: ONNX string tensors cannot
    hold a missing value, so the feeder sends "" for JSON null (the probes check the
    result against the original)."""
    import copy

    from sklearn.impute import SimpleImputer

    imputers = [
        p
        for p in _parts(estimator)
        if isinstance(p, SimpleImputer)
        and getattr(p, "statistics_", None) is not None
        and p.statistics_.dtype == object
    ]
    if not imputers:
        return estimator
    clone = copy.deepcopy(estimator)
    for part in _parts(clone):
        stats = getattr(part, "statistics_", None) if isinstance(part, SimpleImputer) else None
        if stats is not None and stats.dtype == object:
            part.missing_values = ""
    return clone


def _parts(estimator: Any) -> Iterator[Any]:
    """The estimator and every estimator nested in it (pipeline steps, column transformers,
    ensembles, calibrated and stacked models)."""
    seen: set[int] = set()
    stack = [estimator]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, str) or item is None:
            continue
        seen.add(id(item))
        yield item
        for attr in ("steps", "transformers_", "transformer_list"):
            for entry in getattr(item, attr, None) or []:
                stack.append(entry[1])
        for attr in ("estimators_", "calibrated_classifiers_"):
            for entry in getattr(item, attr, None) or []:
                stack.extend(entry if isinstance(entry, list | tuple) else [entry])
        for attr in ("estimator", "base_estimator", "final_estimator_", "estimator_"):
            sub = getattr(item, attr, None)
            if sub is not None and hasattr(sub, "fit"):
                stack.append(sub)


#: Trees per tree-ensemble node when a forest is split: onnxruntime sums a node's trees in
#: float32, whose rounding grows with the count; the nodes' sums are added in float64.
TREES_PER_NODE = 16


def _trees_in_float32(model: Any) -> None:
    """onnxruntime's tree ensembles read and write float32: cast around each one, so that
    the rest of the graph stays in float64, and split a forest into nodes of a few trees
    whose scores are summed in float64 (a 200-tree forest summed in float32 is off by up to
    ~1e-6; split, by ~1e-8)."""
    from onnx import TensorProto, helper

    graph = model.graph
    declared = {v.name: v.type.tensor_type.elem_type for v in [*graph.output, *graph.value_info]}
    outputs = {v.name: v for v in graph.output}
    consumed = {name for n in graph.node for name in n.input}
    out = []
    for i, node in enumerate(list(graph.node)):
        if node.domain == "ai.onnx.ml" and node.op_type in (
            "TreeEnsembleClassifier",
            "TreeEnsembleRegressor",
        ):
            source = node.input[0]
            as_float = f"{source}_servepath_f32_{i}"
            out.append(helper.make_node("Cast", [source], [as_float], to=TensorProto.FLOAT))
            node.input[0] = as_float
            split = _split_forest(node, i, declared, outputs, consumed)
            if split is not None:
                out.extend(split)
                continue
            scores = 1 if node.op_type == "TreeEnsembleClassifier" else 0
            target = node.output[scores]
            if declared.get(target, TensorProto.DOUBLE) == TensorProto.DOUBLE:
                raw = f"{target}_servepath_raw_{i}"
                node.output[scores] = raw
                out.append(node)
                out.append(helper.make_node("Cast", [raw], [target], to=TensorProto.DOUBLE))
                continue
        out.append(node)
    del graph.node[:]
    graph.node.extend(out)


_PER_NODE = (
    "nodes_treeids",
    "nodes_nodeids",
    "nodes_featureids",
    "nodes_values",
    "nodes_hitrates",
    "nodes_modes",
    "nodes_truenodeids",
    "nodes_falsenodeids",
    "nodes_missing_value_tracks_true",
)


def _split_forest(
    node: Any, i: int, declared: dict[str, int], outputs: dict[str, Any], consumed: set[str]
) -> list[Any] | None:
    """``node`` as several nodes of ``TREES_PER_NODE`` trees and a float64 sum, or None when
    its form is not one this handles (a post-transform, a binary shortcut, tensor attributes)."""
    from onnx import TensorProto, helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    classifier = node.op_type == "TreeEnsembleClassifier"
    prefix = "class" if classifier else "target"
    if any(k.endswith("_as_tensor") for k in attrs) or attrs.get("post_transform", b"NONE") not in (
        b"NONE",
        "NONE",
    ):
        return None
    trees = sorted(set(attrs.get("nodes_treeids", [])))
    if len(trees) <= TREES_PER_NODE:
        return None
    labels: list[Any] = list(
        attrs.get("classlabels_int64s") or attrs.get("classlabels_strings") or []
    )
    stored = sorted(set(attrs.get(f"{prefix}_ids", [])))
    binary: str | None = None  # the index tensor of the one stored class, for a binary model
    if classifier and len(stored) != len(labels):
        if len(labels) != 2 or len(stored) != 1:
            return None
        binary = f"servepath_forest_stored_{i}"
    aggregate = attrs.get("aggregate_function", b"SUM")
    aggregate = aggregate.decode() if isinstance(aggregate, bytes) else aggregate
    if aggregate not in ("SUM", "AVERAGE"):
        return None
    chunks = [trees[k : k + TREES_PER_NODE] for k in range(0, len(trees), TREES_PER_NODE)]
    nodes: list[Any] = []
    parts: list[str] = []
    for c, chunk in enumerate(chunks):
        keep = set(chunk)
        renumber = {t: n for n, t in enumerate(chunk)}
        sub: dict[str, Any] = {}
        tree_of_node = attrs["nodes_treeids"]
        for key in _PER_NODE:
            if key in attrs:
                values = [v for v, t in zip(attrs[key], tree_of_node, strict=True) if t in keep]
                sub[key] = [renumber[v] for v in values] if key == "nodes_treeids" else values
        tree_of_weight = attrs[f"{prefix}_treeids"]
        for key in (f"{prefix}_treeids", f"{prefix}_nodeids", f"{prefix}_ids", f"{prefix}_weights"):
            values = [v for v, t in zip(attrs[key], tree_of_weight, strict=True) if t in keep]
            sub[key] = [renumber[v] for v in values] if key.endswith("treeids") else values
        for key in ("classlabels_int64s", "classlabels_strings", "n_targets"):
            if key in attrs:
                sub[key] = attrs[key]
        sub["post_transform"] = "NONE"
        if not classifier:
            sub["aggregate_function"] = "SUM"
        if "base_values" in attrs and c == 0:
            sub["base_values"] = attrs["base_values"]
        scores = f"servepath_forest_{i}_{c}"
        names = [f"servepath_forest_label_{i}_{c}", scores] if classifier else [scores]
        nodes.append(
            helper.make_node(node.op_type, [node.input[0]], names, domain="ai.onnx.ml", **sub)
        )
        as_double = f"{scores}_f64"
        nodes.append(helper.make_node("Cast", [scores], [as_double], to=TensorProto.DOUBLE))
        if binary is not None:  # only the stored class's column adds up
            column = f"{scores}_column"
            nodes.append(helper.make_node("Gather", [as_double, binary], [column], axis=1))
            as_double = column
        if aggregate == "AVERAGE":
            weight = f"{scores}_share"
            nodes.append(
                helper.make_node(
                    "Constant",
                    [],
                    [weight],
                    value=helper.make_tensor(
                        weight + "_v", TensorProto.DOUBLE, [], [len(chunk) / len(trees)]
                    ),
                )
            )
            scaled = f"{scores}_scaled"
            nodes.append(helper.make_node("Mul", [as_double, weight], [scaled]))
            as_double = scaled
        parts.append(as_double)
    target = node.output[1 if classifier else 0]
    total = f"{target}_servepath_sum_{i}"
    if binary is not None:
        nodes.insert(
            0,
            helper.make_node(
                "Constant",
                [],
                [binary],
                # onnxruntime answers a binary model's one stored score as [1 - s, s]
                value=helper.make_tensor(binary + "_v", TensorProto.INT64, [1], [1]),
            ),
        )
        stored_sum = f"{total}_stored"
        nodes.append(helper.make_node("Sum", parts, [stored_sum]))
        one = f"{total}_one"
        nodes.append(
            helper.make_node(
                "Constant",
                [],
                [one],
                value=helper.make_tensor(one + "_v", TensorProto.DOUBLE, [], [1.0]),
            )
        )
        other = f"{total}_other"
        nodes.append(helper.make_node("Sub", [one, stored_sum], [other]))
        nodes.append(helper.make_node("Concat", [other, stored_sum], [total], axis=1))
    else:
        nodes.append(helper.make_node("Sum", parts, [total]))
    wanted = declared.get(target, TensorProto.DOUBLE)
    if target in outputs and target not in consumed:
        # read by servepath only: keep the float64 sum
        wanted = TensorProto.DOUBLE
        outputs[target].type.tensor_type.elem_type = TensorProto.DOUBLE
    nodes.append(helper.make_node("Cast", [total], [target], to=wanted))
    if classifier:
        index = f"servepath_forest_argmax_{i}"
        nodes.append(helper.make_node("ArgMax", [total], [index], axis=1, keepdims=0))
        classes = f"servepath_forest_classes_{i}"
        if attrs.get("classlabels_strings"):
            tensor = helper.make_tensor(classes + "_v", TensorProto.STRING, [len(labels)], labels)
        else:
            tensor = helper.make_tensor(classes + "_v", TensorProto.INT64, [len(labels)], labels)
        nodes.append(helper.make_node("Constant", [], [classes], value=tensor))
        nodes.append(helper.make_node("Gather", [classes, index], [node.output[0]], axis=0))
    return nodes


def _missing_values_as_trained(model: Any, estimator: Any) -> None:
    """scikit-learn's trees send a missing value to the side each split learned
    (``missing_go_to_left``); skl2onnx leaves the ONNX attribute that says so unset."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(final, "tree_"):
        trees = [final.tree_]
    elif isinstance(getattr(final, "estimators_", None), list) and all(
        hasattr(e, "tree_") for e in final.estimators_
    ):
        trees = [e.tree_ for e in final.estimators_]
    else:
        return
    ensembles = [
        n
        for n in model.graph.node
        if n.domain == "ai.onnx.ml" and n.op_type.startswith("TreeEnsemble")
    ]
    if len(ensembles) != 1:
        return
    from onnx import helper

    node = ensembles[0]
    attrs = {a.name: a for a in node.attribute}
    if "nodes_treeids" not in attrs or "nodes_nodeids" not in attrs:
        return
    try:
        tracks = [
            int(trees[t].missing_go_to_left[n])
            for t, n in zip(attrs["nodes_treeids"].ints, attrs["nodes_nodeids"].ints, strict=True)
        ]
    except (IndexError, AttributeError):
        return
    kept = [a for a in node.attribute if a.name != "nodes_missing_value_tracks_true"]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute("nodes_missing_value_tracks_true", tracks)])


def _impute_with_where(model: Any, precision: str) -> None:
    """onnxruntime's Imputer takes float32 only: in a float64 graph each becomes
    Where(IsNaN(x), fill, x), and a string one Where(x == "", fill, x)."""
    from onnx import TensorProto, helper

    graph = model.graph
    out = []
    for i, node in enumerate(list(graph.node)):
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Imputer" and "imputed_value_floats" in attrs and precision == "double":
            replaced = attrs["replaced_value_float"].f if "replaced_value_float" in attrs else None
            if replaced is None or replaced != replaced:  # NaN: the default
                fill_name = f"servepath_fill_{i}"
                is_missing = f"servepath_is_missing_{i}"
                values = list(attrs["imputed_value_floats"].floats)
                graph.initializer.append(
                    helper.make_tensor(fill_name, TensorProto.DOUBLE, [len(values)], values)
                )
                out.append(helper.make_node("IsNaN", [node.input[0]], [is_missing]))
                out.append(
                    helper.make_node(
                        "Where", [is_missing, fill_name, node.input[0]], [node.output[0]]
                    )
                )
                continue
        if node.op_type == "Imputer" and "imputed_value_strings" in attrs:
            fill = [v for v in attrs["imputed_value_strings"].strings]
            missing = attrs["replaced_value_string"].s if "replaced_value_string" in attrs else b""
            fill_name = f"servepath_fill_{i}"
            missing_name = f"servepath_missing_{i}"
            is_missing = f"servepath_is_missing_{i}"
            graph.initializer.append(
                helper.make_tensor(fill_name, TensorProto.STRING, [len(fill)], fill)
            )
            graph.initializer.append(
                helper.make_tensor(missing_name, TensorProto.STRING, [1], [missing])  # type: ignore[list-item]
            )
            out.append(helper.make_node("Equal", [node.input[0], missing_name], [is_missing]))
            out.append(
                helper.make_node("Where", [is_missing, fill_name, node.input[0]], [node.output[0]])
            )
            continue
        out.append(node)
    del graph.node[:]
    graph.node.extend(out)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version < 19:
            opset.version = 19  # Equal on strings


_registered = False


def _register_boosters() -> None:
    """Teach skl2onnx the XGBoost and LightGBM estimators, with onnxmltools' converters."""
    global _registered
    if _registered:
        return
    _registered = True
    _register_function_transformer()
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import (
            convert_xgboost,
        )
        from xgboost import XGBClassifier, XGBRegressor

        update_registered_converter(
            XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            XGBRegressor,
            "XGBoostXGBRegressor",
            calculate_linear_regressor_output_shapes,
            convert_xgboost,
        )
    except ImportError:
        pass
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import (
            convert_lightgbm,
        )

        update_registered_converter(
            LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=classifier_options,
        )
        update_registered_converter(
            LGBMRegressor,
            "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes,
            convert_lightgbm,
        )
    except ImportError:
        pass


#: Element-wise functions a FunctionTransformer may apply, as ONNX operators: (op, add before,
#: add after). log1p(x) = Log(x + 1), expm1(x) = Exp(x) - 1.
_UFUNCS: dict[str, tuple[str, float, float]] = {
    "log1p": ("Log", 1.0, 0.0),
    "log": ("Log", 0.0, 0.0),
    "exp": ("Exp", 0.0, 0.0),
    "expm1": ("Exp", 0.0, -1.0),
    "sqrt": ("Sqrt", 0.0, 0.0),
    "abs": ("Abs", 0.0, 0.0),
    "absolute": ("Abs", 0.0, 0.0),
    "tanh": ("Tanh", 0.0, 0.0),
}


def _register_function_transformer() -> None:
    """FunctionTransformer with a numpy element-wise function (``np.log1p`` and the like),
    which skl2onnx refuses: its converter handles the identity only."""
    import copy

    import numpy as np
    from skl2onnx import update_registered_converter
    from sklearn.preprocessing import FunctionTransformer

    def ufunc_name(op: Any) -> str | None:
        func = op.func
        if func is None:
            return "identity"
        if isinstance(func, np.ufunc) and func.__name__ in _UFUNCS and op.kw_args in (None, {}):
            return str(func.__name__)
        return None

    def shape(operator: Any) -> None:
        if ufunc_name(operator.raw_operator) is None:
            raise RuntimeError(
                f"FunctionTransformer({operator.raw_operator.func}) has no ONNX form"
            )
        n = operator.inputs[0].get_first_dimension()
        width: int | None = 0
        for variable in operator.inputs:
            if variable.type.shape[1] is None or width is None:
                width = None
            else:
                width += variable.type.shape[1]
        operator.outputs[0].type = copy.deepcopy(operator.inputs[0].type)
        operator.outputs[0].type.shape = [n, width]

    def convert(scope: Any, operator: Any, container: Any) -> None:
        name = ufunc_name(operator.raw_operator)
        if name is None:
            raise RuntimeError(
                f"FunctionTransformer({operator.raw_operator.func}) has no ONNX form"
            )
        source = operator.inputs[0].full_name
        if len(operator.inputs) > 1:
            source = scope.get_unique_variable_name("ft_concat")
            container.add_node(
                "Concat",
                [i.full_name for i in operator.inputs],
                [source],
                axis=1,
                name=scope.get_unique_operator_name("Concat"),
            )
        target = operator.outputs[0].full_name
        if name == "identity":
            container.add_node(
                "Identity", [source], [target], name=scope.get_unique_operator_name("Identity")
            )
            return
        op, before, after = _UFUNCS[name]
        elem = operator.inputs[0].type.to_onnx_type().tensor_type.elem_type
        dtype = np.float64 if elem == 11 else np.float32
        current = source
        if before:
            shifted = scope.get_unique_variable_name("ft_shifted")
            const = scope.get_unique_variable_name("ft_before")
            container.add_initializer(const, elem, [], [dtype(before)])
            container.add_node(
                "Add", [current, const], [shifted], name=scope.get_unique_operator_name("Add")
            )
            current = shifted
        result = target if not after else scope.get_unique_variable_name("ft_value")
        container.add_node(op, [current], [result], name=scope.get_unique_operator_name(op))
        if after:
            const = scope.get_unique_variable_name("ft_after")
            container.add_initializer(const, elem, [], [dtype(after)])
            container.add_node(
                "Add", [result, const], [target], name=scope.get_unique_operator_name("Add")
            )

    update_registered_converter(FunctionTransformer, "SklearnFunctionTransformer", shape, convert)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
