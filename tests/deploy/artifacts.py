"""Readers for the shipped deployment artifacts, so tests check the files themselves.

The Dockerfile, compose file, nginx config, manifests and script are parsed here; tests then
compare what they say with servepath's real settings and routes, so the two cannot drift.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from servepath.config import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
NGINX_CONF = DEPLOY / "nginx" / "servepath.conf"
K8S = DEPLOY / "k8s"
VERTEX = DEPLOY / "vertex"
VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str | None:
    """A dev tool installed into the project's virtualenv (hadolint, shellcheck)."""
    path = VENV_BIN / name
    return str(path) if path.exists() else None


# --- the environment servepath reads --------------------------------------------------


class _RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.names.add(key)
        return default

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.names.add(key)
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def config_env_names() -> frozenset[str]:
    """Every environment variable ``Settings.from_env`` reads: asked of config.py, not listed."""
    env = _RecordingEnv()
    Settings.from_env(env)
    return frozenset(env.names)


# --- Dockerfile -----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass(frozen=True)
class Stage:
    base: str
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, continuation lines joined and comment lines dropped."""
    instructions: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        joined = " ".join(part for part in buffer if part)
        buffer = []
        keyword, _, args = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    if buffer:
        raise ValueError(f"line {start}: continuation runs past the end of the file")
    return instructions


def dockerfile_stages(text: str) -> list[Stage]:
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    base, name = "", None
    for instruction in parse_dockerfile(text):
        if instruction.keyword == "FROM":
            if current is not None:
                stages.append(Stage(base, name, tuple(current)))
            words = instruction.args.split()
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            current = []
        elif current is not None:
            current.append(instruction)
    if current is not None:
        stages.append(Stage(base, name, tuple(current)))
    return stages


def parse_env(args: str) -> dict[str, str]:
    """``ENV K=V K2="v 2"`` (or the legacy ``ENV K V``) as a dict, values unexpanded."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"ENV {args!r}: {word!r} is not KEY=VALUE")
        pairs[key] = value
    return pairs


def exec_form(args: str, what: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD; shell form is an error."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        raise ValueError(f"{what} is in shell form ({args!r}); use the exec form") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} is not a JSON array of strings: {args!r}")
    return value


@dataclass(frozen=True)
class Healthcheck:
    options: dict[str, str]
    command: list[str]


def parse_healthcheck(args: str) -> Healthcheck:
    options: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.lstrip()
    keyword, _, command = rest.partition(" ")
    if keyword.upper() != "CMD":
        raise ValueError(f"HEALTHCHECK without CMD: {args!r}")
    return Healthcheck(options, exec_form(command.strip(), "HEALTHCHECK CMD"))


def duration_seconds(text: str) -> float:
    """A Docker/compose duration such as ``30s``, ``1m30s``, ``500ms``."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


@dataclass(frozen=True)
class Image:
    """What the runtime stage of deploy/Dockerfile gives a container."""

    stages: tuple[Stage, ...]
    env: dict[str, str]
    cmd: list[str]
    entrypoint: list[str] | None
    expose: list[int]
    user: str | None
    workdir: str | None
    healthcheck: Healthcheck | None

    @property
    def runtime(self) -> Stage:
        return self.stages[-1]


def read_image() -> Image:
    stages = dockerfile_stages(DOCKERFILE.read_text())
    runtime = stages[-1]
    env: dict[str, str] = {}
    for instruction in runtime.all("ENV"):
        env.update(parse_env(instruction.args))
    cmd = runtime.last("CMD")
    entrypoint = runtime.last("ENTRYPOINT")
    user = runtime.last("USER")
    workdir = runtime.last("WORKDIR")
    healthcheck = runtime.last("HEALTHCHECK")
    expose = [int(p.split("/")[0]) for i in runtime.all("EXPOSE") for p in i.args.split()]
    return Image(
        stages=tuple(stages),
        env=env,
        cmd=exec_form(cmd.args, "CMD") if cmd else [],
        entrypoint=exec_form(entrypoint.args, "ENTRYPOINT") if entrypoint else None,
        expose=expose,
        user=user.args if user else None,
        workdir=workdir.args if workdir else None,
        healthcheck=parse_healthcheck(healthcheck.args) if healthcheck else None,
    )


def reroot(value: str, root: Path) -> str:
    """An absolute image path, moved under ``root`` so a test can create it on this machine."""
    return str(root / value.lstrip("/")) if value.startswith("/") else value


# --- .dockerignore --------------------------------------------------------------------


@dataclass(frozen=True)
class IgnoreRule:
    pattern: str
    negate: bool


def parse_dockerignore(text: str) -> list[IgnoreRule]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        rules.append(IgnoreRule(str(PurePosixPath(pattern.strip("/"))), negate))
    return rules


def _glob_regex(pattern: str) -> re.Pattern[str]:
    # Docker's matcher: '*' and '?' stay within one path segment, '**' spans any number of them.
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def is_ignored(path: str, rules: list[IgnoreRule]) -> bool:
    """Whether ``path`` (relative to the context) stays out of the build context.

    The last matching rule wins; a rule that matches a directory matches everything in it.
    """
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for rule in rules:
        regex = _glob_regex(rule.pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not rule.negate
    return ignored


# --- compose --------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


class InterpolationError(ValueError):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}``."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        present = env.get(name)
        if op in (":-", "-"):
            if present is None or (op == ":-" and present == ""):
                return arg
            return present
        if op in (":?", "?"):
            if present is None or (op == ":?" and present == ""):
                raise InterpolationError(f"{name}: {arg}")
            return present
        return present or ""

    return _INTERPOLATION.sub(replace, value)


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def compose_env(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(str(item).partition("=")[::2] for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


# --- nginx ----------------------------------------------------------------------------


@dataclass
class NginxConfig:
    text: str
    upstream_servers: list[tuple[str, int, str]] = field(default_factory=list)

    @classmethod
    def read(cls) -> NginxConfig:
        text = NGINX_CONF.read_text()
        block = re.search(r"upstream\s+servepath\s*\{(.*?)\n\}", text, re.S)
        if block is None:
            raise ValueError("no `upstream servepath { ... }` block")
        servers = [
            (host, int(port), params.strip())
            for host, port, params in re.findall(
                r"^\s*server\s+([^\s:;]+):(\d+)([^;]*);", block.group(1), re.M
            )
        ]
        return cls(text, servers)

    def directive(self, name: str) -> list[str]:
        """The arguments of every uncommented ``name ...;`` directive."""
        code = "\n".join(line.split("#", 1)[0] for line in self.text.splitlines())
        return [m.strip() for m in re.findall(rf"(?m)^\s*{re.escape(name)}\s+([^;]*);", code)]


def render_nginx(
    config: NginxConfig,
    *,
    upstream_ports: list[int],
    listen_port: int,
    workdir: Path,
    operator: str | None = None,
) -> Path:
    """The shipped config with loopback upstreams, a free listen port and paths under workdir.

    ``operator``: the one loopback address the operator routes' allow list keeps of
    ``127.0.0.0/8``, so that a test can call from another loopback address as a stranger.
    Everything else is the shipped text. Returns the main nginx.conf that includes it.
    """
    if len(upstream_ports) != len(config.upstream_servers):
        raise ValueError(
            f"the config has {len(config.upstream_servers)} upstream servers, "
            f"got {len(upstream_ports)} ports"
        )
    text = config.text
    for (host, port, _), new_port in zip(config.upstream_servers, upstream_ports, strict=True):
        text, count = re.subn(
            rf"(\bserver\s+){re.escape(host)}:{port}\b", rf"\g<1>127.0.0.1:{new_port}", text
        )
        assert count == 1, f"{host}:{port} appears {count} times"
    text, count = re.subn(r"(?m)^(\s*listen\s+)80\b", rf"\g<1>127.0.0.1:{listen_port}", text)
    if count != 1:
        raise ValueError(f"expected one `listen 80`, found {count}")
    if operator is not None:
        text, count = re.subn(r"(?m)^(\s*allow\s+)127\.0\.0\.0/8;", rf"\g<1>{operator};", text)
        if count != 1:
            raise ValueError(f"expected one `allow 127.0.0.0/8`, found {count}")
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    text = text.replace("/var/log/nginx/", f"{logs}/")
    site = workdir / "servepath.conf"
    site.write_text(text)
    temp = workdir / "temp"
    temp.mkdir(exist_ok=True)
    # Debian's nginx runs workers as nobody unless told otherwise; as root, the test's workers
    # must be able to use the temp and log directories pytest made (mode 0700, owned by root).
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = workdir / "nginx.conf"
    main.write_text(
        f"{user}worker_processes 1;\n"
        f"pid {workdir}/nginx.pid;\n"
        f"error_log {logs}/error.log info;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        f"    client_body_temp_path {temp}/client_body;\n"
        f"    proxy_temp_path {temp}/proxy;\n"
        f"    fastcgi_temp_path {temp}/fastcgi;\n"
        f"    uwsgi_temp_path {temp}/uwsgi;\n"
        f"    scgi_temp_path {temp}/scgi;\n"
        f"    include {site};\n"
        "}\n"
    )
    return main


# --- Kubernetes -----------------------------------------------------------------------


def load_manifests() -> dict[str, list[dict[str, Any]]]:
    """Every YAML document under deploy/k8s, by file name."""
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        for path in sorted(K8S.glob("*.yaml"))
    }


def only(docs: dict[str, list[dict[str, Any]]], kind: str) -> dict[str, Any]:
    found = [d for file_docs in docs.values() for d in file_docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def labels_match(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    wanted = selector.get("matchLabels", selector)
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


# --- the Vertex AI script -------------------------------------------------------------


def dry_run_commands(output: str) -> list[list[str]]:
    """The commands deploy.sh printed (``+ cmd args``), split as the shell would."""
    return [shlex.split(line[2:]) for line in output.splitlines() if line.startswith("+ ")]


def flags(command: list[str]) -> dict[str, str]:
    found = {}
    for word in command:
        if word.startswith("--"):
            key, _, value = word[2:].partition("=")
            found[key] = value
    return found
