"""Request bodies for a load run: which instances, how often they repeat, how they batch.

The cache hit ratio a run sees is decided here. ``unique`` is the exact fraction of requests
that carry instances the server has never seen: one numeric feature is nudged by a relative
1e-12 step per request, which leaves the prediction unchanged but the cache key new.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from servepath.contract import ServerContract, example_for, instances_of
from servepath.errors import ConfigError, ServepathError

Instance = dict[str, Any]

#: Relative size of one uniqueness step; far below any feature's meaningful precision.
UNIQUE_STEP = 1e-12


class PayloadError(ServepathError):
    """The payloads of a load run could not be found or built."""


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
    example = example_for(doc, route)
    if example is None:
        paths = doc.get("paths")
        if not (isinstance(paths, Mapping) and route in paths):
            raise PayloadError(
                f"the OpenAPI document has no JSON request body for POST {route}; pass --data FILE"
            )
        raise PayloadError(
            f"the OpenAPI document shows no example for POST {route}; pass --data FILE"
        )
    instances = instances_of(example)
    if instances is None:
        raise PayloadError(
            f"the example of POST {route} holds no JSON object (an instance of features) to "
            "send; pass --data FILE"
        )
    return instances[0]


def unique_feature(instance: Mapping[str, Any]) -> str | None:
    """The feature nudged to make an instance unique: a float if there is one (so the value's
    type is unchanged), else the integer of largest magnitude; None when nothing is numeric."""
    floats = [(abs(v), k) for k, v in instance.items() if isinstance(v, float) and math.isfinite(v)]
    if floats:
        return max(floats)[1]
    ints = [
        (abs(v), k) for k, v in instance.items() if isinstance(v, int) and not isinstance(v, bool)
    ]
    return max(ints)[1] if ints else None


def is_unique(index: int, ratio: float) -> bool:
    """Whether request ``index`` carries fresh instances; exactly ``ratio`` of any prefix do."""
    if ratio <= 0:
        return False
    if ratio >= 1:
        return True
    return math.floor((index + 1) * ratio) > math.floor(index * ratio)


class PayloadSource:
    """Bodies by global request index: repeated ones pre-encoded, fresh ones built on demand.

    ``salt`` shifts the uniqueness tokens so that consecutive runs against the same server
    (the steps of a capacity search) do not repeat each other's fresh instances.
    """

    def __init__(
        self,
        instances: Sequence[Instance],
        *,
        unique: float = 0.0,
        batch: int = 1,
        salt: int = 0,
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
        self._features = [unique_feature(i) for i in self.instances]
        if unique > 0 and any(f is None for f in self._features):
            raise ConfigError(
                "--unique needs a numeric feature in every instance to vary, and some have none"
            )
        self._repeated = [self._encode(self._group(j), None) for j in range(len(self.instances))]

    def _group(self, j: int) -> list[Instance]:
        n = len(self.instances)
        return [self.instances[(j * self.batch + m) % n] for m in range(self.batch)]

    def _encode(self, group: list[Instance], token: int | None) -> bytes:
        if token is not None:
            group = [self._vary(inst, token * self.batch + m) for m, inst in enumerate(group)]
        if self.batch == 1:
            return orjson.dumps(group[0])
        return orjson.dumps({"instances": group})

    def _vary(self, instance: Instance, token: int) -> Instance:
        feature = unique_feature(instance)
        assert feature is not None
        value = instance[feature]
        varied = dict(instance)
        if isinstance(value, float):
            varied[feature] = value + max(abs(value), 1.0) * UNIQUE_STEP * (token + 1)
        else:
            # An integer feature can only move in whole steps; leave the salt out so it drifts
            # by no more than the run's request count.
            varied[feature] = value + (token - self.salt * self.batch) + 1
        return varied

    def body(self, index: int) -> tuple[bytes, bool]:
        """The body of request ``index`` and whether its instances are fresh."""
        j = index % len(self._repeated)
        if is_unique(index, self.unique):
            return self._encode(self._group(j), self.salt + index), True
        return self._repeated[j], False
