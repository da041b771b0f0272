"""Write the scenario of a load run as a Locust file, for load one machine cannot generate.

The file carries the same payloads (embedded, or in a JSON Lines file beside it when large),
the same share of fresh instances drawn from the same instance space, the same batching,
and the SLO: a ``quitting`` hook sets Locust's exit code to
1 when the run missed it. It runs headless (``locust -f OUT.py --headless -u 10 -r 10 -t 1m
--host URL``) and in master/worker mode, where only the master judges the SLO.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from servepath.errors import ConfigError
from servepath.load.capacity import SLO
from servepath.load.payloads import Instance
from servepath.load.sampling import CLIP, SPREAD, InstanceSpace

#: Payloads larger than this go to a JSON Lines file beside the locustfile.
EMBED_LIMIT = 256 * 1024


@dataclass(frozen=True)
class LocustScenario:
    host: str
    predict_path: str
    instances: tuple[Instance, ...]
    unique: float = 0.0
    batch: int = 1
    slo: SLO | None = None
    rate: float | None = None
    users: int = 10
    timeout: float = 10.0
    space: InstanceSpace | None = None  # where fresh instances come from (else the instances)


def write_locustfile(scenario: LocustScenario, path: Path) -> list[Path]:
    """Write ``path`` (and a payload file beside it when needed); return the files written."""
    if not scenario.instances:
        raise ConfigError("there are no instances to put in the locustfile")
    space = scenario.space or InstanceSpace.from_instances(scenario.instances)
    if scenario.unique > 0 and not space.varies:
        raise ConfigError("fresh instances need a feature that varies, and these have none")
    if scenario.users < 1:
        raise ConfigError("the locustfile needs at least one user")
    lines = b"\n".join(orjson.dumps(i) for i in scenario.instances).decode()
    written = [path]
    if len(lines) <= EMBED_LIMIT:
        source = f"_INSTANCES_JSONL = {lines!r}\n"
    else:
        data = path.with_suffix(".instances.jsonl")
        data.write_text(lines + "\n")
        written.append(data)
        source = f"_INSTANCES_JSONL = (Path(__file__).parent / {data.name!r}).read_text()\n"
    slo = scenario.slo
    path.write_text(
        _TEMPLATE.format(
            host=scenario.host,
            predict_path=scenario.predict_path,
            instances_source=source,
            unique=scenario.unique,
            batch=scenario.batch,
            space=orjson.dumps(space.to_json()).decode(),
            spread=SPREAD,
            clip=CLIP,
            rate=scenario.rate,
            users=scenario.users,
            timeout=scenario.timeout,
            slo_percentile=slo.percentile if slo else None,
            slo_ms=slo.threshold_ms if slo else None,
            error_budget=slo.error_budget if slo else 0.0,
            slo_label=repr(slo.label) if slo else repr("no errors"),
        )
    )
    return written


def scenario_summary(scenario: LocustScenario, files: Sequence[Path]) -> str:
    main = files[0]
    pace = (
        f" paced at {scenario.rate:g} req/s in total over {scenario.users} users"
        if scenario.rate
        else ""
    )
    return (
        f"wrote {', '.join(str(f) for f in files)}{pace}; run it with\n"
        f"  locust -f {main} --headless -u {scenario.users} -r {scenario.users} -t 1m "
        f"--host {scenario.host}\n"
        f"or distributed: locust -f {main} --master --headless -u {scenario.users} "
        f"-r {scenario.users} -t 1m --expect-workers N --host {scenario.host}, "
        f"and on each worker machine: locust -f {main} --worker --master-host MASTER"
    )


_TEMPLATE = '''"""Locust scenario for POST {predict_path}, written by `servepath load --locustfile`.

Run headless:   locust -f THIS_FILE --headless -u {users} -r {users} -t 1m --host {host}
Distributed:    locust -f THIS_FILE --master --headless -u {users} -r {users} -t 1m \\
                    --expect-workers N --host {host}
                locust -f THIS_FILE --worker --master-host MASTER   (on each worker)

When the run ends, the master (or the single process) checks the SLO below and exits with
code 1 when it was missed.
"""

import itertools
import json
import math
import random
from pathlib import Path

from locust import HttpUser, constant, constant_throughput, events, task
from locust.runners import WorkerRunner

PREDICT_PATH = {predict_path!r}
UNIQUE = {unique!r}  # share of requests carrying instances the server has not seen
BATCH = {batch!r}  # instances per request; above 1 the body is {{"instances": [...]}}
# Where fresh instances are drawn from: per feature, a category among "choices", a number
# spread around "center" (within "low" .. "high"), an integer, a boolean, or a fixed value.
SPACE = json.loads({space!r})
SPREAD, CLIP = {spread!r}, {clip!r}
RATE = {rate!r}  # total requests per second over USERS users; None: each user sends back to back
USERS = {users!r}
TIMEOUT = {timeout!r}
SLO_PERCENTILE = {slo_percentile!r}  # e.g. 99.0; None: only the error budget is checked
SLO_MS = {slo_ms!r}
ERROR_BUDGET = {error_budget!r}  # allowed share of failed requests
SLO_LABEL = {slo_label}

{instances_source}INSTANCES = [json.loads(ln) for ln in _INSTANCES_JSONL.splitlines() if ln.strip()]

# Each process draws its own fresh instances, so workers do not repeat each other.
_COUNTER = itertools.count()
_RNG = random.Random()


def _number(feature):
    low, high, center = feature["low"], feature["high"], feature["center"] or 0.0
    if low is not None and high is not None:
        return _RNG.uniform(low, high)
    if center == 0.0:
        drawn = _RNG.expovariate(1.0 if feature["kind"] == "integer" else 2.0)
        drawn = math.floor(drawn) if feature["kind"] == "integer" else drawn
    else:
        drawn = center * min(max(_RNG.lognormvariate(0.0, SPREAD), 1 / CLIP), CLIP)
    if low is not None:
        drawn = max(drawn, low)
    if high is not None:
        drawn = min(drawn, high)
    return drawn


def _draw(feature):
    kind = feature["kind"]
    if kind == "fixed":
        return feature["value"]
    if kind == "category":
        return _RNG.choice(feature["choices"])
    if kind == "boolean":
        return _RNG.random() < 0.5
    if kind == "integer":
        return int(round(_number(feature)))
    return round(_number(feature), feature["decimals"])


def _fresh():
    return {{f["name"]: _draw(f) for f in SPACE["features"]}}


def _is_unique(index):
    if UNIQUE <= 0:
        return False
    if UNIQUE >= 1:
        return True
    return math.floor((index + 1) * UNIQUE) > math.floor(index * UNIQUE)


def _body(index):
    n = len(INSTANCES)
    j = index % n
    group = [INSTANCES[(j * BATCH + m) % n] for m in range(BATCH)]
    if _is_unique(index):
        group = [_fresh() for _ in range(BATCH)]
    return json.dumps(group[0] if BATCH == 1 else {{"instances": group}})


class ServepathUser(HttpUser):
    host = {host!r}
    wait_time = constant_throughput(RATE / USERS) if RATE else constant(0)

    @task
    def predict(self):
        body = _body(next(_COUNTER))
        with self.client.post(
            PREDICT_PATH,
            data=body,
            headers={{"Content-Type": "application/json", "X-Servepath-Traffic": "load"}},
            name=PREDICT_PATH,
            timeout=TIMEOUT,
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code == 0:
                response.failure(f"no response: {{response.error}}")
            elif response.status_code >= 400:
                response.failure(f"HTTP {{response.status_code}}")
            else:
                response.success()


@events.quitting.add_listener
def check_slo(environment, **_kwargs):
    if isinstance(environment.runner, WorkerRunner):
        return  # workers see only their share; the master judges the whole run
    total = environment.stats.total
    problems = []
    if total.num_requests == 0:
        problems.append("no request was sent")
    else:
        if total.fail_ratio > ERROR_BUDGET:
            problems.append(
                f"{{total.num_failures}} of {{total.num_requests}} requests failed "
                f"({{total.fail_ratio:.3%}}, budget {{ERROR_BUDGET:.3%}})"
            )
        if SLO_PERCENTILE is not None:
            observed = total.get_response_time_percentile(SLO_PERCENTILE / 100)
            if observed > SLO_MS:
                problems.append(f"p{{SLO_PERCENTILE:g}} {{observed}} ms > {{SLO_MS:g}} ms")
    if problems:
        print(f"SLO ({{SLO_LABEL}}) missed: " + "; ".join(problems))
        environment.process_exit_code = 1
    else:
        print(f"SLO ({{SLO_LABEL}}) met over {{total.num_requests}} requests")
'''
