"""Model repositories: which folders are versions, how they sort, and what a folder holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from servepath.errors import ModelLoadError
from servepath.model.repository import ModelRepository, check_label, order_labels

pytestmark = pytest.mark.pure


def test_numeric_labels_sort_as_numbers_and_others_as_text() -> None:
    assert order_labels(["10", "2", "1"]) == ["1", "2", "10"]
    assert order_labels(["b", "a", "10", "2"]) == ["10", "2", "a", "b"]
    assert order_labels(["2024-06-01", "2024-05-30"]) == ["2024-05-30", "2024-06-01"]


@pytest.mark.parametrize("label", ["../x", "a/b", "", ".", "..", "-rf", "x" * 65, "a b", "é"])
def test_a_label_is_never_a_path_or_an_odd_name(label: str) -> None:
    with pytest.raises(ModelLoadError, match="not a version label"):
        check_label(label)


def _version(root: Path, label: str, *names: str) -> Path:
    folder = root / label
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


def test_the_highest_version_is_the_latest_and_files_beside_folders_are_ignored(
    tmp_path: Path,
) -> None:
    for label in ("1", "2", "10"):
        _version(tmp_path, label, "model.joblib")
    (tmp_path / "README").write_text("not a version")
    _version(tmp_path, ".hidden", "model.joblib")  # not a label: ignored
    repo = ModelRepository(str(tmp_path))
    assert repo.labels() == ["1", "2", "10"]
    assert repo.latest() == "10"
    assert repo.source("2").location == str(tmp_path / "2" / "model.joblib")


def test_a_vertex_name_wins_and_a_lone_model_file_is_taken(tmp_path: Path) -> None:
    _version(tmp_path, "1", "model.onnx", "model.joblib", "notes.txt")
    _version(tmp_path, "2", "fraud-v2.onnx", "fraud-v2.onnx.schema.json")
    repo = ModelRepository(str(tmp_path))
    assert repo.source("1").location.endswith("1/model.onnx")
    assert repo.source("2").location.endswith("2/fraud-v2.onnx")


def test_a_folder_with_two_artifacts_or_none_says_so(tmp_path: Path) -> None:
    _version(tmp_path, "1", "a.joblib", "b.joblib")
    _version(tmp_path, "2", "notes.txt")
    repo = ModelRepository(str(tmp_path))
    with pytest.raises(ModelLoadError, match="more than one artifact"):
        repo.source("1")
    with pytest.raises(ModelLoadError, match="no artifact"):
        repo.source("2")


def test_a_missing_version_names_the_versions_there_are(tmp_path: Path) -> None:
    for label in ("2", "1"):
        _version(tmp_path, label, "model.joblib")
    with pytest.raises(ModelLoadError, match=r"no version '7' \(versions here: 1, 2\)"):
        ModelRepository(str(tmp_path)).source("7")


def test_an_empty_or_missing_repository_fails_with_what_one_looks_like(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no versions"):
        ModelRepository(str(tmp_path)).labels()
    with pytest.raises(ModelLoadError, match="no such directory"):
        ModelRepository(str(tmp_path / "nope")).labels()


def test_the_model_is_named_for_its_repository(tmp_path: Path) -> None:
    assert ModelRepository(str(tmp_path / "fraud")).name == "fraud"
    assert ModelRepository("gs://bucket/models/churn/").name == "churn"
