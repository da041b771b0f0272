"""Request bodies for a load run: which instances, how often they repeat, how they batch.

The cache hit ratio a run sees is decided here. ``unique`` is the exact fraction of requests
that carry instances the server has never seen, drawn from an
:class:`~servepath.load.sampling.InstanceSpace` (the model's input schema, or the space the
given instances span); the others repeat the given instances, which the server answers
from its cache after the first time.

A fresh instance costs the generator little: each feature's values are drawn ahead into a
pool of :data:`POOL` encoded ``"name":value`` pieces, and a request joins one piece of
each, picked at random. Every feature still follows its distribution, and with a few
continuous features the combinations do not repeat in any run a machine can send.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from servepath.contract import NoExample, ServerContract, request_example
from servepath.errors import ConfigError, PayloadError
from servepath.load.sampling import InstanceSpace

Instance = dict[str, Any]

#: Values drawn ahead per feature (a power of two: a piece is picked with one random call).
POOL_BITS = 12
POOL = 1 << POOL_BITS


def parse_instances(text: str, source: str) -> list[Instance]:
    """Instances from a ``--data`` file: one JSON object, a Vertex-style ``{"instances": [...]}``,
    a JSON array of objects, or JSON Lines with one object per line."""
    stripped = text.strip()
    if not stripped:
        raise ConfigError(f"{source} is empty; it should hold a JSON object or JSON Lines")
    try:
        value = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        value = None
        lines = [line for line in stripped.splitlines() if line.strip()]
        instances: list[Instance] = []
        for number, line in enumerate(lines, start=1):
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"{source} line {number} is not valid JSON: {exc}") from None
            instances.extend(_as_instances(item, f"{source} line {number}"))
        return instances
    return _as_instances(value, source)


def _as_instances(value: Any, where: str) -> list[Instance]:
    if isinstance(value, dict) and isinstance(value.get("instances"), list):
        value = value["instances"]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return list(value)
    raise ConfigError(f"{where} holds no JSON object (an instance of features) to send")


def example_from_openapi(doc: Mapping[str, Any], url_path: str) -> Instance:
    """The example instance the service documents for the route a URL with ``url_path`` goes
    to (a bare origin: the server's own predict route), read as `request` and `doctor` read it.
    """
    route = ServerContract.from_spec(doc).route_for(url_path, doc)
    try:
        return request_example(doc, route).require()[0]
    except NoExample as exc:
        raise PayloadError(f"{exc}; pass --data FILE") from exc


def is_unique(index: int, ratio: float) -> bool:
    """Whether request ``index`` carries fresh instances; exactly ``ratio`` of any prefix do."""
    if ratio <= 0:
        return False
    if ratio >= 1:
        return True
    return math.floor((index + 1) * ratio) > math.floor(index * ratio)


class PayloadSource:
    """Bodies by global request index: repeated ones pre-encoded, fresh ones drawn.

    ``salt`` and ``stream`` seed the draws: each run against one server (the steps of a
    capacity search) takes a new salt, and each generator process of a run its own stream,
    so that no two of them send the same "fresh" instances.
    """

    def __init__(
        self,
        instances: Sequence[Instance],
        *,
        unique: float = 0.0,
        batch: int = 1,
        salt: int = 0,
        space: InstanceSpace | None = None,
        stream: int = 0,
    ) -> None:
        if not instances:
            raise ConfigError("there are no instances to send")
        if not 0.0 <= unique <= 1.0:
            raise ConfigError(f"--unique is a fraction between 0 and 1, got {unique}")
        if batch < 1:
            raise ConfigError(f"--batch must be at least 1, got {batch}")
        self.instances = [dict(i) for i in instances]
        self.unique = unique
        self.batch = batch
        self.salt = salt
        self.space = space if space is not None else InstanceSpace.from_instances(self.instances)
        if unique > 0 and not self.space.varies:
            raise ConfigError(
                "fresh instances need a feature that varies, and these have none (no number, "
                "no category with more than one value); send them as they are with --repeat"
            )
        self._rng = random.Random(f"{salt}:{stream}")
        self._pools: list[list[bytes]] | None = None
        self._repeated = [self._encode(self._group(j)) for j in range(len(self.instances))]

    def _group(self, j: int) -> list[Instance]:
        n = len(self.instances)
        return [self.instances[(j * self.batch + m) % n] for m in range(self.batch)]

    def _encode(self, group: list[Instance]) -> bytes:
        if self.batch == 1:
            return orjson.dumps(group[0])
        return orjson.dumps({"instances": group})

    def prepare(self) -> None:
        """Draw the pools of fresh values now (before a run starts, not during its first
        request)."""
        if self._pools is None and self.unique > 0:
            self._pools = [
                [orjson.dumps(name) + b":" + orjson.dumps(draw()) for _ in range(POOL)]
                for name, draw in self.space.samplers(self._rng)
            ]

    def _fresh_instance(self) -> bytes:
        if self._pools is None:
            self.prepare()
        assert self._pools is not None
        bits = self._rng.getrandbits
        return b"{" + b",".join([pool[bits(POOL_BITS)] for pool in self._pools]) + b"}"

    def body(self, index: int) -> tuple[bytes, bool]:
        """The body of request ``index`` and whether its instances are fresh."""
        if is_unique(index, self.unique):
            if self.batch == 1:
                return self._fresh_instance(), True
            group = b",".join(self._fresh_instance() for _ in range(self.batch))
            return b'{"instances":[' + group + b"]}", True
        return self._repeated[index % len(self._repeated)], False
