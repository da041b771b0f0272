"""Container images for the tests, made on a machine that reaches no image registry.

The base image is a Debian rootfs made by ``debootstrap`` from Debian's packages (python3,
venv, CA certificates), with this machine's trust store copied in so that pip inside
``docker build --network host`` trusts what pip on the host trusts; ``docker import`` turns
it into an image. It is tagged by a hash of its inputs and kept: the next run on the same
machine reuses it. The project image is built from deploy/Dockerfile on that base, once per
test session, and removed at its end together with its build stage (see
``build_commands``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
TRUST_STORE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_REPOSITORY = "servepath-test-base"


class ImageError(RuntimeError):
    pass


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise ImageError(f"docker {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return (
            docker("info", "--format", "{{.ServerVersion}}", timeout=10, check=False).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (its packages are what we may fetch)."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.sources")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
            if line.startswith("deb ") and "security" not in line:
                return next(p for p in line.split()[1:] if p.startswith("http"))
    return "http://deb.debian.org/debian"


def base_tag() -> str:
    digest = hashlib.sha256()
    for part in (SUITE, "minbase", *PACKAGES, debian_mirror()):
        digest.update(part.encode() + b"\0")
    digest.update(TRUST_STORE.read_bytes() if TRUST_STORE.exists() else b"")
    return f"{BASE_REPOSITORY}:{digest.hexdigest()[:12]}"


def base_image() -> str:
    """The Debian base image, made once per machine (by its inputs)."""
    tag = base_tag()
    if docker("image", "inspect", tag, check=False).returncode == 0:
        return tag
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="servepath-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             str(rootfs), debian_mirror()],
            capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise ImageError(f"debootstrap failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        if TRUST_STORE.exists():
            shutil.copy(TRUST_STORE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-c", f"ENV PIP_CERT={TRUST_STORE}", "-", tag],
            stdin=tar.stdout, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        tar.wait()
        if imported.returncode != 0:
            raise ImageError(f"docker import failed: {imported.stderr}")
    return tag


BUILD_STAGE = "build"


def stage_tag(tag: str) -> str:
    """The tag the Dockerfile's build stage is given while ``tag`` is built."""
    return f"{tag}-{BUILD_STAGE}"


def build_commands(tag: str, base: str) -> list[list[str]]:
    """The ``docker build`` commands that make ``tag`` and leave nothing untagged behind.

    The classic builder keeps the last image of every stage but the final one, untagged: the
    build stage's virtualenv (~1 GB) would stay behind as a dangling image after ``tag`` is
    removed. So the build stage is built first under its own tag, and the full build then
    takes it from the cache (same parent, same instruction, same image): at teardown
    ``remove_project_image`` removes both tags, and with each its untagged parents.
    """
    common = ["docker", "build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
              "-f", str(REPO / "deploy" / "Dockerfile")]  # fmt: skip
    return [
        [*common, "--target", BUILD_STAGE, "-t", stage_tag(tag), str(REPO)],
        [*common, "-t", tag, str(REPO)],
    ]


def build_project_image(tag: str, base: str) -> tuple[str, float]:
    """Build deploy/Dockerfile on ``base``; the seconds it took.

    On failure whatever was tagged is removed before the error is raised.
    """
    started = time.perf_counter()
    for command in build_commands(tag, base):
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=2400, check=False,
            env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )  # fmt: skip
        if proc.returncode != 0:
            remove_project_image(tag)
            raise ImageError(f"docker build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return tag, time.perf_counter() - started


def remove_commands(tag: str) -> list[list[str]]:
    """Remove the project image and its build stage (each with its untagged parents)."""
    return [["docker", "image", "rm", "-f", name] for name in (tag, stage_tag(tag))]


def remove_project_image(tag: str) -> None:
    for command in remove_commands(tag):
        docker(*command[1:], check=False)


def image_size(tag: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
