"""A model that does not convert to ONNX says so in one plain line, not an attribute dump."""

from __future__ import annotations

from servepath.model.convert import SHORT_ERROR, _short, convert_cached
from servepath.model.example import build_pipeline, generate_applicants
from servepath.model.sklearn_schema import schema_from_sklearn


def test_the_example_models_known_non_conversion_is_one_plain_line() -> None:
    data = generate_applicants(400, seed=1)
    pipeline = build_pipeline().fit(data.drop(columns="decision"), data["decision"])
    conversion = convert_cached(
        pipeline,
        schema_from_sklearn(pipeline),
        part="whole",
        precision="double",
        digest="0" * 64,
        cache_dir=None,
    )
    assert conversion.onnx is None and conversion.error is not None
    error = conversion.error
    assert "\n" not in error and "array(" not in error and "attributes" not in error
    assert len(error) <= SHORT_ERROR + 40
    assert "TreeEnsembleClassifier" in error


def test_a_long_message_is_cut_at_a_word() -> None:
    text = _short(ValueError("word " * 100))
    assert text.endswith(" …") and len(text) <= SHORT_ERROR + 20
