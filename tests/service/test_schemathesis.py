"""The OpenAPI document tells the truth: schemathesis, every check, against a real server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import need, serve

# 413 is how the server refuses more instances than --max-instances (the body is fine, the
# batch is over the limit): a rejection, which schemathesis does not count as one by itself.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "404", "405", "413", "415", "422"]
"""


def _schemathesis() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    need(found is not None, "schemathesis is not installed (pip install .[dev])")
    assert found is not None
    return found


def test_every_schemathesis_check_passes_against_the_documented_api(
    tmp_path: Path, example_model_path: Path
) -> None:
    st = _schemathesis()
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with serve(tmp_path, model=example_model_path, args=["--store", "off"]) as server:
        run = subprocess.run(
            [st, "--no-color", "--config-file", str(config), "run", f"{server.url}/openapi.json",
             "--checks", "all", "--max-examples", "40", "--seed", "7", "--workers", "1"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary
    assert "failures" not in summary.splitlines()[-1], summary
