"""Models from gs://, s3:// and https:// against real protocol servers on loopback: the GCS
emulator (gcp-storage-emulator), moto's S3 server, and an HTTPS server with a private CA."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servepath.errors import ModelLoadError
from servepath.model.repository import ModelRepository
from servepath.model.storage import (
    ModelUri,
    RemoteObject,
    cache_path,
    fetch_model,
    is_remote,
    parse_model_uri,
    pick_artifact,
    verify,
)
from tests.support import free_port, need

# --- pure ------------------------------------------------------------------------------------


def test_uris_name_a_bucket_and_a_key_or_a_directory() -> None:
    gs = parse_model_uri("gs://models/fraud/v3")
    assert (gs.scheme, gs.bucket, gs.key, gs.is_directory) == ("gs", "models", "fraud/v3", True)
    one = parse_model_uri("s3://models/fraud/v3/model.onnx")
    assert (one.key, one.is_directory) == ("fraud/v3/model.onnx", False)
    assert parse_model_uri("gs://models").is_directory
    assert parse_model_uri("https://h.test/m/model.joblib").key == "/m/model.joblib"
    assert is_remote("GS://b/k") and is_remote("https://x/y") and not is_remote("/models/m")
    with pytest.raises(ModelLoadError, match="gs://BUCKET/PATH"):
        parse_model_uri("ftp://host/model")
    with pytest.raises(ModelLoadError):
        parse_model_uri("gs:///no-bucket")


def test_a_directory_gives_its_own_artifact_not_one_in_a_subdirectory() -> None:
    keys = ["m/v3/old/model.onnx", "m/v3/README.md", "m/v3/model.joblib", "m/v3/model.pkl"]
    assert pick_artifact("m/v3", keys) == "m/v3/model.joblib"
    assert pick_artifact("m/v3/", ["m/v3/model.onnx", "m/v3/model.joblib"]) == "m/v3/model.onnx"
    assert pick_artifact("m/v3", ["m/v3/old/model.onnx"]) is None
    assert pick_artifact("", ["model.pkl"]) == "model.pkl"


def test_each_version_has_its_own_place(tmp_path: Path) -> None:
    uri = ModelUri("gs", "b", "m", "gs://b/m")
    one = cache_path(tmp_path, uri, RemoteObject("m/model.joblib", "17", 10))
    two = cache_path(tmp_path, uri, RemoteObject("m/model.joblib", "18", 10))
    assert one != two and one.name == two.name == "model.joblib"
    weird = cache_path(tmp_path, uri, RemoteObject("m/model.joblib", 'W/"a/b"', 10))
    assert "/" not in weird.parent.name


def test_a_download_that_differs_from_the_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"abc")
    with pytest.raises(ModelLoadError, match="3 bytes, the store says 4"):
        verify(path, RemoteObject("k", "1", 4), "gs://b/k")
    with pytest.raises(ModelLoadError, match="MD5"):
        verify(path, RemoteObject("k", "1", 3, "0" * 32), "gs://b/k")
    assert (
        len(verify(path, RemoteObject("k", "1", 3, "900150983cd24fb0d6963f7d28e17f72"), "u")) == 64
    )


# --- servers -----------------------------------------------------------------------------------


def _wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


@contextlib.contextmanager
def _server(argv: list[str]) -> Iterator[str]:
    """A protocol server on a free loopback port (``{port}`` in ``argv``), stopped after."""
    port = free_port()
    proc = subprocess.Popen(
        [a.format(port=port) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gcs() -> Iterator[str]:
    need(_importable("google.cloud.storage"), "google-cloud-storage is not installed")
    binary = Path(sys.executable).with_name("gcp-storage-emulator")
    need(binary.exists(), "gcp-storage-emulator is not installed")
    with _server(
        [str(binary), "start", "--host", "127.0.0.1", "--port", "{port}", "--in-memory"]
    ) as url:
        yield url


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    need(_importable("boto3"), "boto3 is not installed")
    need(_importable("moto.server"), "moto[server] is not installed")
    with _server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "{port}"]) as url:
        yield url


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # the AWS chain reads these; a test server accepts any
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _gcs_client(endpoint: str) -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="servepath",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )


def test_gcs_directory_downloads_once_and_again_only_for_a_new_generation(
    gcs: str, tmp_path: Path, example_model_path: Path
) -> None:
    client = _gcs_client(gcs)
    bucket = client.create_bucket(f"b{os.getpid()}")
    bucket.blob("fraud/v3/model.joblib").upload_from_filename(str(example_model_path))
    bucket.blob("fraud/v3/README.md").upload_from_string("the model")
    uri = f"gs://{bucket.name}/fraud/v3"
    first = fetch_model(uri, tmp_path, gcs_endpoint=gcs)
    assert first.downloaded and first.path.read_bytes() == example_model_path.read_bytes()
    again = fetch_model(uri, tmp_path, gcs_endpoint=gcs)
    assert not again.downloaded and again.path == first.path
    bucket.blob("fraud/v3/model.joblib").upload_from_string(b"a newer artifact")
    newer = fetch_model(uri, tmp_path, gcs_endpoint=gcs)
    assert newer.downloaded and newer.object.version != first.object.version
    assert newer.path.read_bytes() == b"a newer artifact"
    assert not first.path.exists()  # the old version was pruned


def test_gcs_corrupted_cache_is_downloaded_again(gcs: str, tmp_path: Path) -> None:
    bucket = _gcs_client(gcs).create_bucket(f"c{os.getpid()}")
    bucket.blob("model.onnx").upload_from_string(b"onnx bytes")
    uri = f"gs://{bucket.name}/model.onnx"
    first = fetch_model(uri, tmp_path, gcs_endpoint=gcs)
    first.path.write_bytes(b"tampered!!")
    second = fetch_model(uri, tmp_path, gcs_endpoint=gcs)
    assert second.downloaded and second.path.read_bytes() == b"onnx bytes"


def test_gcs_missing_object_and_missing_artifact_say_so(gcs: str, tmp_path: Path) -> None:
    bucket = _gcs_client(gcs).create_bucket(f"m{os.getpid()}")
    bucket.blob("d/notes.txt").upload_from_string("x")
    with pytest.raises(ModelLoadError, match="404"):
        fetch_model(f"gs://{bucket.name}/nope/model.joblib", tmp_path, gcs_endpoint=gcs)
    with pytest.raises(ModelLoadError, match=r"no model\.onnx / model\.joblib / model\.pkl"):
        fetch_model(f"gs://{bucket.name}/d", tmp_path, gcs_endpoint=gcs)
    with pytest.raises(ModelLoadError, match=r"404|no such"):
        fetch_model("gs://no-such-bucket-here/m/model.joblib", tmp_path, gcs_endpoint=gcs)


def test_gcs_unreachable_is_named(tmp_path: Path) -> None:
    need(_importable("google.cloud.storage"), "google-cloud-storage is not installed")
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ModelLoadError, match="cannot reach the store"):
        fetch_model("gs://b/m/model.joblib", tmp_path, gcs_endpoint=closed, timeout=2)


def test_s3_object_and_directory(
    s3: str, aws_env: None, tmp_path: Path, example_model_path: Path
) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="models")
    client.upload_file(str(example_model_path), "models", "fraud/v3/model.joblib")
    by_dir = fetch_model("s3://models/fraud/v3", tmp_path, s3_endpoint=s3)
    assert by_dir.downloaded and by_dir.path.read_bytes() == example_model_path.read_bytes()
    assert by_dir.object.md5 is not None  # a single-part ETag is the MD5, and was checked
    assert not fetch_model("s3://models/fraud/v3", tmp_path, s3_endpoint=s3).downloaded
    with pytest.raises(ModelLoadError, match="404"):
        fetch_model("s3://models/fraud/v4/model.joblib", tmp_path, s3_endpoint=s3)
    with pytest.raises(ModelLoadError, match=r"404|no such"):
        fetch_model("s3://no-bucket/model.joblib", tmp_path, s3_endpoint=s3)


def test_s3_unreachable_is_named(aws_env: None, tmp_path: Path) -> None:
    need(_importable("boto3"), "boto3 is not installed")
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ModelLoadError, match="cannot reach the store"):
        fetch_model("s3://b/model.joblib", tmp_path, s3_endpoint=closed, timeout=2)


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import trustme

    root = tmp_path_factory.mktemp("https")
    (root / "m").mkdir()
    (root / "m" / "model.joblib").write_bytes(b"joblib bytes" * 100)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    cafile = root / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            if self.path.startswith("/secret"):
                self.send_error(403)
                return
            super().do_GET()

        def do_HEAD(self) -> None:
            if self.path.startswith("/secret"):
                self.send_error(403)
                return
            super().do_HEAD()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"base": f"https://127.0.0.1:{server.server_address[1]}", "ca": str(cafile), "root": root}
    server.shutdown()


def test_https_with_a_private_ca(https_server: dict[str, Any], tmp_path: Path) -> None:
    base, ca = https_server["base"], https_server["ca"]
    fetched = fetch_model(f"{base}/m/model.joblib", tmp_path, cafile=ca)
    assert fetched.downloaded and fetched.path.read_bytes() == b"joblib bytes" * 100
    assert not fetch_model(f"{base}/m/model.joblib", tmp_path, cafile=ca).downloaded
    with pytest.raises(ModelLoadError, match="404"):
        fetch_model(f"{base}/m/missing.joblib", tmp_path, cafile=ca)
    with pytest.raises(ModelLoadError, match="permission denied"):
        fetch_model(f"{base}/secret/model.joblib", tmp_path, cafile=ca)
    with pytest.raises(ModelLoadError, match="cannot reach the store"):
        fetch_model(f"{base}/m/model.joblib", tmp_path / "untrusted")  # the CA is not trusted


def test_serve_loads_a_model_from_gcs_as_vertex_ai_hands_it_over(
    gcs: str, tmp_path: Path, example_model_path: Path
) -> None:
    from tests.support import serve

    bucket = _gcs_client(gcs).create_bucket(f"v{os.getpid()}")
    bucket.blob("artifacts/model.joblib").upload_from_filename(str(example_model_path))
    env = {"AIP_STORAGE_URI": f"gs://{bucket.name}/artifacts", "STORAGE_EMULATOR_HOST": gcs}
    with serve(tmp_path, model=None, args=["--store", "off"], env=env) as server:
        import httpx

        health = httpx.get(server.url + "/", timeout=5).json()
        assert health["model"]["name"] and health["model"]["version"]
    cached = list((server.data_dir / "models").rglob("model.joblib"))
    assert len(cached) == 1 and cached[0].read_bytes() == example_model_path.read_bytes()


def test_serve_with_a_missing_object_stays_unready_and_says_why(gcs: str, tmp_path: Path) -> None:
    import httpx

    from tests.support import serve

    env = {"STORAGE_EMULATOR_HOST": gcs}
    args = ["--store", "off", "--model", "gs://no-such-bucket/m/model.joblib"]
    args += ["--on-model-failure", "stay"]
    with serve(tmp_path, model=None, args=args, env=env, wait=False) as server:
        deadline = time.monotonic() + 60
        while "model failed to load" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "no object gs://no-such-bucket/m/model.joblib (404)" in server.log()
        health = httpx.get(server.url + "/", timeout=5)
        assert health.status_code == 503  # a load balancer sends it nothing; the log says why


def test_a_gcs_model_repository_lists_its_version_folders(gcs: str, tmp_path: Path) -> None:
    bucket = _gcs_client(gcs).create_bucket(f"r{os.getpid()}")
    for key in ("fraud/1/model.joblib", "fraud/10/model.joblib", "fraud/2/model.onnx",
                "fraud/notes.txt", "other/3/model.joblib"):  # fmt: skip
        bucket.blob(key).upload_from_string(b"x")
    repo = ModelRepository(f"gs://{bucket.name}/fraud", gcs_endpoint=gcs)
    assert repo.labels() == ["1", "2", "10"]
    assert repo.source("2").location == f"gs://{bucket.name}/fraud/2/"
    fetched = fetch_model(repo.source("2").location, tmp_path, gcs_endpoint=gcs)
    assert fetched.path.name == "model.onnx"
    with pytest.raises(ModelLoadError, match="no versions"):
        ModelRepository(f"gs://{bucket.name}/empty", gcs_endpoint=gcs).labels()


def test_an_s3_model_repository_lists_its_version_folders(
    s3: str, aws_env: None, tmp_path: Path
) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3)
    client.create_bucket(Bucket="repo")
    for key in ("churn/2024-05/model.joblib", "churn/2024-06/model.joblib", "churn/x.txt"):
        client.put_object(Bucket="repo", Key=key, Body=b"x")
    repo = ModelRepository("s3://repo/churn/", s3_endpoint=s3)
    assert repo.labels() == ["2024-05", "2024-06"]
    assert repo.latest() == "2024-06"
    assert repo.name == "churn"
