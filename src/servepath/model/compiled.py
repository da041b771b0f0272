"""A compiled predictor for common scikit-learn pipelines: the same arithmetic, in a few numpy
operations, without the per-call overhead of pandas, ColumnTransformer and OpenMP.

A scikit-learn pipeline costs milliseconds per ``predict_proba`` call however few rows it gets;
almost all of it is overhead. Serving one request at a time pays that overhead per request.
This module reads the fitted parameters out of the pipeline once (scaler means and scales,
one-hot categories, tree nodes or linear coefficients) and evaluates them directly. It is used
only after it reproduces the pipeline's own probabilities on a set of probe rows; anything it
does not understand, or any disagreement, leaves the model on scikit-learn.

Supported: a ``Pipeline`` of a ``ColumnTransformer`` (``StandardScaler``, ``OneHotEncoder``
without ``drop``/infrequent categories, ``"passthrough"``, ``"drop"``) followed by a
``HistGradientBoostingClassifier`` (numeric splits, missing values) or a ``LogisticRegression``.

It is one engine among the library ones (``model/engines.py``): it serves only where it
reproduces the model and measures faster than onnxruntime, treelite and the rest — on this
shape of model, for one row, it does (a few numpy operations against one onnxruntime call
per input and node).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Row = dict[str, float | str]
Matrix = Callable[[Sequence[Row]], np.ndarray]
Proba = Callable[[np.ndarray], np.ndarray]


class NotCompilable(Exception):
    """The estimator has a part this module does not evaluate; scikit-learn keeps serving it."""


@dataclass(frozen=True)
class Compiled:
    predict_proba: Callable[[Sequence[Row]], np.ndarray]
    classes: list[Any]
    description: str


# --- preprocessing ---------------------------------------------------------------------


def _compile_preprocessing(step: Any) -> Matrix:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    if not isinstance(step, ColumnTransformer):
        raise NotCompilable(f"first step is {type(step).__name__}, not a ColumnTransformer")
    blocks: list[Callable[[Sequence[Row]], np.ndarray]] = []
    for name, transformer, columns in step.transformers_:
        if transformer == "drop":
            continue
        cols = [columns] if isinstance(columns, str) else list(columns)
        if not all(isinstance(c, str) for c in cols):
            raise NotCompilable(f"transformer {name!r} selects columns by position")
        if name == "remainder" and not cols:
            continue
        # a fitted ColumnTransformer keeps "passthrough" as an identity FunctionTransformer
        identity = isinstance(transformer, FunctionTransformer) and transformer.func is None
        if transformer == "passthrough" or identity:
            blocks.append(_numeric_block(cols, None, None))
        elif isinstance(transformer, StandardScaler):
            mean = transformer.mean_ if transformer.with_mean else None
            scale = transformer.scale_ if transformer.with_std else None
            blocks.append(_numeric_block(cols, mean, scale))
        elif isinstance(transformer, OneHotEncoder):
            if transformer.drop is not None:
                raise NotCompilable("OneHotEncoder with drop")
            if getattr(transformer, "_infrequent_enabled", False):
                raise NotCompilable("OneHotEncoder with infrequent categories")
            blocks.append(_one_hot_block(cols, transformer.categories_))
        else:
            raise NotCompilable(f"transformer {name!r} is {type(transformer).__name__}")

    def matrix(rows: Sequence[Row]) -> np.ndarray:
        return np.hstack([block(rows) for block in blocks])

    return matrix


def _numeric_block(
    cols: list[str], mean: np.ndarray | None, scale: np.ndarray | None
) -> Callable[[Sequence[Row]], np.ndarray]:
    def block(rows: Sequence[Row]) -> np.ndarray:
        x = np.array([[row[c] for c in cols] for row in rows], dtype=np.float64)
        if mean is not None:
            x -= mean
        if scale is not None:
            x /= scale
        return x

    return block


def _one_hot_block(
    cols: list[str], categories: Sequence[np.ndarray]
) -> Callable[[Sequence[Row]], np.ndarray]:
    offsets: list[dict[Any, int]] = []
    start = 0
    for cats in categories:
        offsets.append({_plain(c): start + i for i, c in enumerate(cats)})
        start += len(cats)
    width = start

    def block(rows: Sequence[Row]) -> np.ndarray:
        x = np.zeros((len(rows), width))
        for i, row in enumerate(rows):
            for c, index in zip(cols, offsets, strict=True):
                j = index.get(row[c])
                if j is not None:  # unknown values (handle_unknown="ignore") stay all-zero
                    x[i, j] = 1.0
        return x

    return block


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# --- estimators ------------------------------------------------------------------------


def _compile_hist_gradient_boosting(clf: Any) -> tuple[Proba, str]:
    predictors = clf._predictors
    n_per_iter = len(predictors[0])
    trees_by_class: list[list[Any]] = [[it[k] for it in predictors] for k in range(n_per_iter)]
    packed = [_pack_trees(trees) for trees in trees_by_class]
    baseline = np.asarray(clf._baseline_prediction, dtype=np.float64).reshape(-1)

    def raw(x: np.ndarray) -> np.ndarray:
        return np.stack([p(x) for p in packed], axis=1) + baseline

    if n_per_iter == 1:

        def proba(x: np.ndarray) -> np.ndarray:
            p1 = 1.0 / (1.0 + np.exp(-raw(x)[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)

    else:

        def proba(x: np.ndarray) -> np.ndarray:
            r = raw(x)
            e = np.exp(r - r.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True))

    nodes = sum(len(t.nodes) for trees in trees_by_class for t in trees)
    return proba, f"{len(predictors)} boosting iterations, {nodes} tree nodes"


def _pack_trees(trees: Sequence[Any]) -> Callable[[np.ndarray], np.ndarray]:
    """All trees' nodes in flat arrays; leaves point at themselves so a walk can overrun."""
    features, thresholds, lefts, rights, values, roots, missing_left = [], [], [], [], [], [], []
    offset = 0
    depth = 0
    for tree in trees:
        nodes = tree.nodes
        if nodes["is_categorical"].any():
            raise NotCompilable("categorical splits")
        n = len(nodes)
        idx = np.arange(n) + offset
        leaf = nodes["is_leaf"].astype(bool)
        features.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp))
        thresholds.append(np.where(leaf, np.inf, nodes["num_threshold"]).astype(np.float64))
        lefts.append(np.where(leaf, idx, nodes["left"].astype(np.intp) + offset))
        rights.append(np.where(leaf, idx, nodes["right"].astype(np.intp) + offset))
        values.append(np.where(leaf, nodes["value"], 0.0).astype(np.float64))
        missing_left.append(nodes["missing_go_to_left"].astype(bool))
        roots.append(offset)
        depth = max(depth, int(nodes["depth"].max()))
        offset += n
    feature = np.concatenate(features)
    threshold = np.concatenate(thresholds)
    left = np.concatenate(lefts)
    right = np.concatenate(rights)
    value = np.concatenate(values)
    nan_left = np.concatenate(missing_left)
    is_leaf = left == np.arange(offset)
    root = np.asarray(roots, dtype=np.intp)

    def walk(x: np.ndarray) -> np.ndarray:
        node = np.broadcast_to(root, (x.shape[0], root.shape[0])).copy()
        rows = np.arange(x.shape[0])[:, None]
        for step in range(depth):
            seen = x[rows, feature[node]]
            # a missing value follows the side the training data's missing values took
            goes_left = np.where(np.isnan(seen), nan_left[node], seen <= threshold[node])
            node = np.where(goes_left, left[node], right[node])
            if step % 4 == 3 and is_leaf[node].all():
                break
        return np.asarray(value[node].sum(axis=1))

    return walk


def _compile_logistic_regression(clf: Any) -> tuple[Proba, str]:
    coef = np.asarray(clf.coef_, dtype=np.float64)
    intercept = np.asarray(clf.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:

        def proba(x: np.ndarray) -> np.ndarray:
            p1 = 1.0 / (1.0 + np.exp(-(x @ coef[0] + intercept[0])))
            return np.stack([1.0 - p1, p1], axis=1)

    else:
        if getattr(clf, "multi_class", "auto") == "ovr":
            raise NotCompilable("one-vs-rest logistic regression")

        def proba(x: np.ndarray) -> np.ndarray:
            z = x @ coef.T + intercept
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return np.asarray(e / e.sum(axis=1, keepdims=True))

    return proba, f"logistic regression over {coef.shape[1]} features"


def compile_pipeline(estimator: Any) -> Compiled:
    """Compile ``estimator`` or raise :class:`NotCompilable` naming the part that stops it."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 2:
        raise NotCompilable("not a two-step Pipeline (preprocessing, classifier)")
    matrix = _compile_preprocessing(estimator.steps[0][1])
    clf = estimator.steps[1][1]
    if isinstance(clf, HistGradientBoostingClassifier):
        proba, what = _compile_hist_gradient_boosting(clf)
    elif isinstance(clf, LogisticRegression):
        proba, what = _compile_logistic_regression(clf)
    else:
        raise NotCompilable(f"classifier is {type(clf).__name__}")

    def predict_proba(rows: Sequence[Row]) -> np.ndarray:
        return proba(matrix(rows))

    return Compiled(predict_proba, list(clf.classes_), what)
