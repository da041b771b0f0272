"""Which artifact to serve, decided once: a path, a model in cloud storage, or the example."""

from __future__ import annotations

from pathlib import Path

from servepath.config import Settings
from servepath.model.source import ModelSource, artifact_in, is_remote


def test_a_model_flag_is_a_uri_in_cloud_storage_or_a_path() -> None:
    assert ModelSource.parse(" gs://bucket/models/m.joblib ") == ModelSource(
        "remote", "gs://bucket/models/m.joblib"
    )
    assert ModelSource.parse("HTTPS://host/m.onnx").kind == "remote"
    assert ModelSource.parse("s3://b/k").kind == "remote"
    assert ModelSource.parse("models/gs:/not-a-uri").kind == "path"
    assert ModelSource.parse("/srv/model.joblib").path == Path("/srv/model.joblib")
    assert ModelSource.parse("s3://b/k").path is None
    assert is_remote("http://127.0.0.1:9/m") and not is_remote("ftp://h/m")


def test_vertex_ai_storage_uri_is_a_local_directory_or_a_uri(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"x")
    (tmp_path / "model.onnx").write_bytes(b"x")
    local = ModelSource.from_storage_uri(str(tmp_path))
    assert local == ModelSource("path", str(tmp_path / "model.onnx"))  # ONNX first
    assert ModelSource.from_storage_uri("gs://b/dir/") == ModelSource("remote", "gs://b/dir/")
    assert ModelSource.from_storage_uri("relative/dir") is None
    assert artifact_in(tmp_path / "empty") == tmp_path / "empty" / "model.joblib"


def test_the_settings_name_one_source_whichever_way_the_model_was_given(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).model_source == ModelSource.example(tmp_path)
    assert Settings(data_dir=tmp_path).model_source.path == tmp_path / "example-model.joblib"
    env = {"SERVEPATH_DATA_DIR": str(tmp_path), "SERVEPATH_MODEL": "s3://b/m.joblib"}
    assert Settings.from_env(env).model_source == ModelSource("remote", "s3://b/m.joblib")
    env = {"SERVEPATH_DATA_DIR": str(tmp_path), "AIP_STORAGE_URI": "gs://b/m/"}
    assert Settings.from_env(env).model_source == ModelSource("remote", "gs://b/m/")
    given = Settings(data_dir=tmp_path, model_path=tmp_path / "m.joblib").model_source
    assert given == ModelSource("path", str(tmp_path / "m.joblib"))


def test_a_local_path_is_served_as_it_is_without_touching_the_network(tmp_path: Path) -> None:
    source = ModelSource.parse(str(tmp_path / "m.joblib"))
    assert source.local_path(tmp_path) == tmp_path / "m.joblib"
