"""Models in cloud storage, as Vertex AI (``AIP_STORAGE_URI=gs://…``) and KServe
(``storageUri``: ``gs://``, ``s3://``, ``https://``) hand them over.

The artifact is downloaded once into the data directory, keyed by the object's version (GCS
generation, S3/HTTP ETag), checked against the checksum the store gives (GCS md5Hash, an S3
single-part ETag, HTTP Content-Length) and against its own SHA-256 on every later start, then
loaded like a local file. Credentials come only from the libraries' standard chains
(Application Default Credentials for GCS, the AWS chain for S3); servepath never reads or
prints them. GCS and S3 need the optional extras ``servepath[gcs]`` and ``servepath[s3]``.

The choice of what to fetch (URI → bucket, key or prefix, which artifact in a directory,
where it goes) is pure; the three fetchers are thin.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from servepath.errors import ModelLoadError
from servepath.model.source import ARTIFACT_NAMES, is_remote

__all__ = [
    "ARTIFACT_NAMES",
    "FetchedModel",
    "ModelUri",
    "RemoteObject",
    "cache_path",
    "fetch_model",
    "is_remote",
    "list_folders",
    "parse_model_uri",
    "pick_artifact",
]

log = logging.getLogger(__name__)

Scheme = Literal["gs", "s3", "https", "http"]
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelUri:
    scheme: Scheme
    bucket: str  # the host for http(s)
    key: str  # the object key, or the prefix of a directory ("" for the bucket's root)
    text: str

    @property
    def is_directory(self) -> bool:
        name = self.key.rsplit("/", 1)[-1]
        return self.scheme in ("gs", "s3") and (not name or "." not in name)


@dataclass(frozen=True)
class RemoteObject:
    """One object as the store describes it."""

    key: str
    version: str  # GCS generation, or the ETag
    size: int | None
    md5: str | None = None  # hex, when the store gives one that is the content's MD5


@dataclass(frozen=True)
class FetchedModel:
    uri: str
    path: Path
    object: RemoteObject
    sha256: str
    downloaded: bool  # False: the cached copy was used

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "path": str(self.path),
            "version": self.object.version,
            "size": self.object.size,
            "sha256": self.sha256,
            "downloaded": self.downloaded,
        }


def parse_model_uri(text: str) -> ModelUri:
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("gs", "s3", "https", "http") or not parts.netloc:
        raise ModelLoadError(text, "a model URI is gs://BUCKET/PATH, s3://BUCKET/PATH or https://…")
    if scheme in ("gs", "s3"):
        return ModelUri(scheme, parts.netloc, parts.path.lstrip("/"), text)  # type: ignore[arg-type]
    return ModelUri(scheme, parts.netloc, parts.path, text)  # type: ignore[arg-type]


def pick_artifact(prefix: str, keys: Sequence[str]) -> str | None:
    """The artifact in the directory ``prefix`` (not in its subdirectories)."""
    base = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
    direct = {k[len(base) :]: k for k in keys if k.startswith(base) and "/" not in k[len(base) :]}
    for name in ARTIFACT_NAMES:
        if name in direct:
            return direct[name]
    return None


def cache_path(data_dir: Path, uri: ModelUri, obj: RemoteObject) -> Path:
    """Where a version of an object is kept: one directory per URI, one per version."""
    where = hashlib.sha256(uri.text.encode()).hexdigest()[:16]
    version = re.sub(r"[^A-Za-z0-9._-]", "_", obj.version)[:80] or "unversioned"
    name = obj.key.rsplit("/", 1)[-1] or "model"
    return data_dir / "models" / where / version / name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, obj: RemoteObject, uri: str) -> str:
    """Check a download against what the store said of it; its SHA-256."""
    size = path.stat().st_size
    if obj.size is not None and size != obj.size:
        raise ModelLoadError(uri, f"the download has {size} bytes, the store says {obj.size}")
    if obj.md5 is not None and _md5(path) != obj.md5:
        raise ModelLoadError(uri, "the download's MD5 differs from the store's: corrupted")
    return _sha256(path)


# --- the stores ------------------------------------------------------------------------------


class _Store(Protocol):
    def describe(self, uri: ModelUri) -> RemoteObject: ...

    def download(self, uri: ModelUri, obj: RemoteObject, target: Path) -> None: ...


class _Gcs:
    def __init__(self, endpoint: str | None, timeout: float) -> None:
        try:
            from google.cloud import storage  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            raise ModelLoadError(
                "gs://", "reading gs:// needs google-cloud-storage: pip install 'servepath[gcs]'"
            ) from None
        from google.cloud.storage.retry import DEFAULT_RETRY  # type: ignore[import-untyped, unused-ignore]

        self.timeout = timeout
        # The library retries transient failures for 120 s by default: bound it by ours, so an
        # unreachable store fails a start-up in about one timeout, not two minutes.
        self.retry = DEFAULT_RETRY.with_timeout(timeout)
        if endpoint:  # an emulator, or a private endpoint: no Google credentials involved
            from google.auth.credentials import AnonymousCredentials  # type: ignore[import-untyped, unused-ignore]

            self.client = storage.Client(
                project="servepath",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call, unused-ignore]
                client_options={"api_endpoint": endpoint},
            )
        else:
            self.client = storage.Client()

    def describe(self, uri: ModelUri) -> RemoteObject:
        bucket = self.client.bucket(uri.bucket)
        key = uri.key
        if uri.is_directory:
            prefix = key.rstrip("/") + "/" if key else None
            blobs = list(
                self.client.list_blobs(
                    uri.bucket, prefix=prefix, timeout=self.timeout, retry=self.retry
                )
            )
            chosen = pick_artifact(key, [b.name for b in blobs])
            if chosen is None:
                raise ModelLoadError(uri.text, _no_artifact(uri, [b.name for b in blobs]))
            key = chosen
        blob = bucket.get_blob(key, timeout=self.timeout, retry=self.retry)
        if blob is None:
            raise ModelLoadError(uri.text, f"no object gs://{uri.bucket}/{key} (404)")
        md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None
        return RemoteObject(key, str(blob.generation), blob.size, md5)

    def folders(self, uri: ModelUri) -> list[str]:
        prefix = uri.key.rstrip("/") + "/" if uri.key.strip("/") else ""
        pages = self.client.list_blobs(
            uri.bucket, prefix=prefix, delimiter="/", timeout=self.timeout, retry=self.retry
        )
        for _ in pages:  # the folder names arrive with the listing's pages
            pass
        return [p[len(prefix) :].rstrip("/") for p in pages.prefixes]

    def download(self, uri: ModelUri, obj: RemoteObject, target: Path) -> None:
        blob = self.client.bucket(uri.bucket).blob(obj.key, generation=int(obj.version))
        blob.download_to_filename(str(target), timeout=self.timeout, retry=self.retry)


class _S3:
    def __init__(self, endpoint: str | None, timeout: float) -> None:
        try:
            import boto3  # type: ignore[import-untyped, unused-ignore]
            from botocore.config import Config  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            raise ModelLoadError(
                "s3://", "reading s3:// needs boto3: pip install 'servepath[s3]'"
            ) from None
        config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2})
        self.client = boto3.client("s3", endpoint_url=endpoint or None, config=config)

    def describe(self, uri: ModelUri) -> RemoteObject:
        key = uri.key
        if uri.is_directory:
            prefix = key.rstrip("/") + "/" if key else ""
            listed = self.client.list_objects_v2(Bucket=uri.bucket, Prefix=prefix)
            keys = [o["Key"] for o in listed.get("Contents", [])]
            chosen = pick_artifact(key, keys)
            if chosen is None:
                raise ModelLoadError(uri.text, _no_artifact(uri, keys))
            key = chosen
        head = self.client.head_object(Bucket=uri.bucket, Key=key)
        etag = str(head.get("ETag", "")).strip('"')
        md5 = etag if re.fullmatch(r"[0-9a-f]{32}", etag) else None  # multipart ETags are not
        return RemoteObject(
            key, etag or str(head.get("LastModified")), head.get("ContentLength"), md5
        )

    def folders(self, uri: ModelUri) -> list[str]:
        prefix = uri.key.rstrip("/") + "/" if uri.key.strip("/") else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=uri.bucket, Prefix=prefix, Delimiter="/"
        )
        return [
            p["Prefix"][len(prefix) :].rstrip("/")
            for page in pages
            for p in page.get("CommonPrefixes", [])
        ]

    def download(self, uri: ModelUri, obj: RemoteObject, target: Path) -> None:
        self.client.download_file(uri.bucket, obj.key, str(target))


class _Http:
    def __init__(self, timeout: float, cafile: str | None, *, allow_http: bool = False) -> None:
        import ssl

        import httpx

        def no_plain_http(request: httpx.Request) -> None:
            # A redirect to http:// would hand the artifact (code, for a pickle) to anyone
            # on the path, however the first URL was written.
            if request.url.scheme != "https" and not allow_http:
                raise ModelLoadError(
                    str(request.url),
                    "plain http:// is refused for models (anyone on the path can swap the "
                    "file, and a joblib/pickle file runs code): use https://, or "
                    "--allow-http-model for a network you trust",
                )

        verify = ssl.create_default_context(cafile=cafile) if cafile else True
        self.client = httpx.Client(timeout=timeout, verify=verify, follow_redirects=True,
                                   trust_env=False, max_redirects=5,
                                   event_hooks={"request": [no_plain_http]})  # fmt: skip

    def describe(self, uri: ModelUri) -> RemoteObject:
        response = self.client.head(uri.text)
        if response.status_code == 405:  # a server without HEAD
            with self.client.stream("GET", uri.text) as streamed:
                response = streamed
        if response.status_code >= 400:
            raise ModelLoadError(uri.text, _http_status(response.status_code))
        etag = response.headers.get("etag", "").strip('"').removeprefix("W/").strip('"')
        length = response.headers.get("content-length")
        version = etag or response.headers.get("last-modified", "") or "unversioned"
        key = urlsplit(uri.text).path
        return RemoteObject(key, version, int(length) if length and length.isdigit() else None)

    def download(self, uri: ModelUri, obj: RemoteObject, target: Path) -> None:
        with self.client.stream("GET", uri.text) as response:
            if response.status_code >= 400:
                raise ModelLoadError(uri.text, _http_status(response.status_code))
            with target.open("wb") as f:
                for chunk in response.iter_bytes(_CHUNK):
                    f.write(chunk)


def _http_status(status: int) -> str:
    if status == 404:
        return "no such object (404)"
    if status in (401, 403):
        return f"permission denied ({status}): the URL needs credentials or a signed URL"
    return f"the server answered {status}"


def _no_artifact(uri: ModelUri, keys: Sequence[str]) -> str:
    seen = ", ".join(k.rsplit("/", 1)[-1] for k in keys[:8]) or "nothing"
    return (
        f"no {' / '.join(ARTIFACT_NAMES)} directly under {uri.text} (found: {seen}); "
        "upload the artifact there or name the object itself"
    )


_UNREACHABLE = frozenset(
    {
        "EndpointConnectionError",
        "ConnectionError",
        "ConnectError",
        "ConnectTimeout",
        "TransportError",
        "ReadTimeout",
        "ConnectTimeoutError",
        "ServiceUnavailable",
        "SSLError",
        "NewConnectionError",
        "MaxRetryError",
    }
)


def list_folders(
    text: str,
    *,
    gcs_endpoint: str | None = None,
    s3_endpoint: str | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """The names of the folders directly under the ``gs://`` or ``s3://`` prefix ``text``."""
    uri = parse_model_uri(text.rstrip("/") + "/")
    if uri.scheme not in ("gs", "s3"):
        raise ModelLoadError(text, "a model repository is a directory, gs://… or s3://…")
    try:
        store = _Gcs(gcs_endpoint, timeout) if uri.scheme == "gs" else _S3(s3_endpoint, timeout)
        return store.folders(uri)
    except ModelLoadError:
        raise
    except Exception as exc:  # every store library has its own tree; map them at this edge
        raise _translate(uri, exc) from exc


def _translate(uri: ModelUri, exc: Exception) -> ModelLoadError:
    """A store library's failure in a user's words: missing, forbidden, no credentials, no
    network."""
    name = type(exc).__name__
    text = str(exc)
    code = getattr(exc, "code", None)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        error = response.get("Error", {})
        code = error.get("Code", code)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = status if str(code) in ("404", "NoSuchKey", "NoSuchBucket") and status else code
    if name == "NotFound" or str(code) in ("404", "NoSuchKey", "NoSuchBucket"):
        return ModelLoadError(uri.text, "no such object or bucket (404)")
    if name == "Forbidden" or str(code) in ("403", "AccessDenied", "401"):
        who = "the service account needs storage.objects.get and storage.objects.list"
        if uri.scheme == "s3":
            who = "the IAM identity needs s3:GetObject and s3:ListBucket"
        return ModelLoadError(uri.text, f"permission denied (403): {who}")
    if name in ("DefaultCredentialsError", "NoCredentialsError", "RefreshError"):
        return ModelLoadError(
            uri.text,
            f"no credentials ({name}): on Vertex AI and GKE they come from the service "
            "account; elsewhere run gcloud auth application-default login, or set the "
            "cloud's standard credential variables",
        )
    if name == "RetryError":  # google.api_core gave up retrying: say what it last saw
        last = getattr(exc, "cause", None)
        if last is not None:
            return _translate(uri, last)
    if name in _UNREACHABLE:
        return ModelLoadError(uri.text, f"cannot reach the store ({name}): {text[:200]}")
    return ModelLoadError(uri.text, f"{name}: {text[:300]}")


def fetch_model(
    text: str,
    data_dir: Path,
    *,
    gcs_endpoint: str | None = None,
    s3_endpoint: str | None = None,
    cafile: str | None = None,
    timeout: float = 30.0,
    allow_http: bool = False,
) -> FetchedModel:
    """The local copy of the model at ``text`` (downloaded when its version is new);
    ``http://`` (also as a redirect's target) only with ``allow_http``."""
    uri = parse_model_uri(text)
    store: _Store
    if uri.scheme == "gs":
        store = _Gcs(gcs_endpoint, timeout)
    elif uri.scheme == "s3":
        store = _S3(s3_endpoint, timeout)
    else:
        store = _Http(timeout, cafile, allow_http=allow_http)
    try:
        obj = store.describe(uri)
    except ModelLoadError:
        raise
    except Exception as exc:  # every store library has its own tree; map them at this edge
        raise _translate(uri, exc) from exc
    path = cache_path(data_dir, uri, obj)
    sidecar = path.with_name(path.name + ".sha256")
    if path.exists() and sidecar.exists():
        digest = _sha256(path)
        if digest == sidecar.read_text().strip():
            log.info("model %s version %s: cached copy %s", text, obj.version, path)
            return FetchedModel(text, path, obj, digest, downloaded=False)
        log.warning("model %s: the cached copy %s is corrupted; downloading again", text, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=".download-")
    os.close(handle)
    try:
        try:
            store.download(uri, obj, Path(partial))
        except ModelLoadError:
            raise
        except Exception as exc:
            raise _translate(uri, exc) from exc
        digest = verify(Path(partial), obj, text)
        os.replace(partial, path)  # a crash mid-download never leaves a half file in place
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    sidecar.write_text(digest + "\n")
    _prune(path.parent.parent, keep=path.parent)
    log.info("model %s version %s: downloaded %s bytes to %s", text, obj.version, obj.size, path)
    return FetchedModel(text, path, obj, digest, downloaded=True)


def _prune(versions: Path, keep: Path) -> None:
    """Older versions of the same URI go: a model store is not a backup."""
    for entry in versions.iterdir():
        if entry != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
