"""The container tests' image build, as commands: what it tags is what its teardown removes.

Nothing runs docker here; the build itself is exercised by test_containers.py.
"""

from __future__ import annotations

import re

from tests.deploy.artifacts import DOCKERFILE
from tests.helpers.images import build_commands, remove_commands, stage_tag

TAG = "servepath-test:abc"


def tags_built(commands: list[list[str]]) -> list[str]:
    return [command[command.index("-t") + 1] for command in commands]


def stages() -> list[str]:
    return re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I)


def test_every_stage_but_the_last_is_built_under_a_tag_of_its_own() -> None:
    commands = build_commands(TAG, "base:1")
    earlier = stages()[:-1]
    targets = [
        command[command.index("--target") + 1] for command in commands if "--target" in command
    ]
    assert targets == earlier
    assert "--target" not in commands[-1], "the last build makes the whole image"
    assert tags_built(commands) == [*(stage_tag(TAG) for _ in earlier), TAG]


def test_teardown_removes_every_tag_the_build_made() -> None:
    removed = [command[-1] for command in remove_commands(TAG)]
    assert all(command[:4] == ["docker", "image", "rm", "-f"] for command in remove_commands(TAG))
    assert sorted(removed) == sorted(tags_built(build_commands(TAG, "base:1")))


def test_stage_builds_share_the_final_build_arguments_so_the_cache_reuses_them() -> None:
    first, last = build_commands(TAG, "base:1")
    assert first[: first.index("--target")] == last[: last.index("-t")]
    assert "BASE_IMAGE=base:1" in last
