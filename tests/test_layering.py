"""Which parts of servepath may import which: the primitives stay below the probes, and the
backends below the service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "servepath"

# (the importing files, the packages they must not import from)
RULES = [
    (("service", "client.py", "load"), ("servepath.netdiag",)),
    (("cache", "store", "model", "net"), ("servepath.service", "servepath.cli")),
    (("net",), ("servepath.netdiag",)),
    # Drift reads the log and a schema; it knows nothing of the service or its pictures.
    (("drift",), ("servepath.service", "servepath.cli", "servepath.render", "servepath.netdiag")),
    # The connection consults the gate the server hands it, never the app behind it; the
    # data plane and the request module know nothing of ASGI's shell or the endpoints.
    (
        ("service/protocol.py", "service/gate.py", "service/request.py"),
        ("servepath.service.app", "servepath.service.dataplane", "servepath.service.endpoints"),
    ),
    (("service/dataplane.py",), ("servepath.service.app", "servepath.service.endpoints")),
    # Which artifact to serve is decided with no service and no command line around it.
    (("model/source.py",), ("servepath.service", "servepath.cli", "servepath.config")),
]


def _imports(path: Path) -> set[str]:
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


def _files(place: str) -> list[Path]:
    where = SRC / place
    return [where] if where.suffix == ".py" else sorted(where.rglob("*.py"))


@pytest.mark.parametrize(("places", "forbidden"), RULES)
def test_no_part_imports_from_a_layer_above_it(
    places: tuple[str, ...], forbidden: tuple[str, ...]
) -> None:
    offending = [
        f"{path.relative_to(SRC)} imports {name}"
        for place in places
        for path in _files(place)
        for name in sorted(_imports(path))
        if name.startswith(forbidden)
    ]
    assert not offending, offending
