"""Whether this process runs in a container, and which kind."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ContainerInfo:
    in_container: bool
    runtime: str | None  # docker, podman, kubernetes, containerd, lxc

    def to_json(self) -> dict[str, Any]:
        return {"in_container": self.in_container, "runtime": self.runtime}


@lru_cache(maxsize=1)
def detect_container(in_kubernetes: bool = False) -> ContainerInfo:
    """Whether this process runs in a container, from marker files and its cgroup."""
    if in_kubernetes:
        return ContainerInfo(True, "kubernetes")
    if Path("/.dockerenv").exists():
        return ContainerInfo(True, "docker")
    if Path("/run/.containerenv").exists():
        return ContainerInfo(True, "podman")
    try:
        cgroup = Path("/proc/1/cgroup").read_text()
    except OSError:
        cgroup = ""
    for marker, runtime in (
        ("kubepods", "kubernetes"),
        ("docker", "docker"),
        ("containerd", "containerd"),
        ("libpod", "podman"),
        ("lxc", "lxc"),
    ):
        if marker in cgroup:
            return ContainerInfo(True, runtime)
    return ContainerInfo(False, None)
