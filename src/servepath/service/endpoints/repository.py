"""The model repository routes (``--model-control explicit``): swap, canary and shadow at
run time, for admin keys only.

* ``POST /v2/repository/index``: every version and its state (``READY``, ``LOADING``,
  ``UNAVAILABLE`` with the reason), as the Open Inference Protocol's repository extension
  lists them, plus the role each ready version has.
* ``POST /v2/repository/models/{name}/load`` with ``{"parameters": {"version": "2"}}``:
  loads the version beside what serves, verifies it as at start, then switches (200 with
  the new version), or refuses with the reason while the old version keeps serving.
  ``"role": "candidate"`` (with ``"weight"``, percent of callers) or ``"role": "shadow"``
  (with ``"share"``, a fraction of requests) loads it in that role instead.
* ``…/unload`` with ``{"parameters": {"version": "1"}}``: a version that is not the primary.
* ``…/promote`` (the candidate becomes the primary) and ``…/rollback`` (the candidate goes).

Versions load only from ``--model-repository``, never from a location in a request: a
request names a folder, and a folder is a label (no ``/``, no ``..``).
"""

from __future__ import annotations

import math
from typing import Any

from servepath.config import Settings
from servepath.errors import ControlForbidden, FieldError, InvalidInput, clip
from servepath.service.asgi import (
    Receive,
    Response,
    Scope,
    json_response,
    parse_json,
    read_body,
)
from servepath.service.control import Coordinator
from servepath.service.dataplane import DataPlane
from servepath.service.deployments import Role
from servepath.service.endpoints import Routes
from servepath.service.request import RequestContext
from servepath.service.routes import Handler, repository_model_name

#: A control request's body is a few parameters.
MAX_CONTROL_BODY = 16 * 1024
_ROLES = ("primary", "candidate", "shadow")


class UnknownModelName(Exception):
    """A repository route names a model this server does not serve: 404."""


class Repository:
    """The repository routes over the data plane and the workers' coordinator."""

    def __init__(self, settings: Settings, plane: DataPlane, coordinator: Coordinator) -> None:
        self.settings = settings
        self.plane = plane
        self.coordinator = coordinator
        self.admins = settings.admin_key_names

    def routes(self) -> Routes:
        return {"/v2/repository/index": {"POST": self.index}}

    def model_routes(self) -> dict[str, Handler]:
        return {
            "load": self.load,
            "unload": self.unload,
            "promote": self.promote,
            "rollback": self.rollback,
        }

    def _admit(self, ctx: RequestContext) -> None:
        # The shell has already checked the key; only some keys may change the model.
        if ctx.caller not in self.admins:
            raise ControlForbidden(
                f"key {ctx.caller!r} may not call model control; admin keys are named by "
                "--admin-keys"
            )

    async def _parameters(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        raw = await read_body(scope, receive, MAX_CONTROL_BODY)
        if not raw.strip():
            return {}
        # Read as JSON whatever its declared type: `curl -d` declares a form.
        body = parse_json(raw)
        if not isinstance(body, dict):
            raise InvalidInput([FieldError((), "expected an object", "type")])
        parameters = body.get("parameters", {})
        if not isinstance(parameters, dict):
            raise InvalidInput([FieldError(("parameters",), "expected an object", "type")])
        return parameters

    def _name(self, scope: Scope) -> Response | None:
        name = repository_model_name(scope["path"])
        served = self.plane.model.name if self.plane.model is not None else None
        expected = served or (self.plane.repository.name if self.plane.repository else None)
        if name != expected:
            return json_response(
                404, {"error": f"model {clip(name)!r} not found; this server serves {expected!r}"}
            )
        return None

    async def index(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        self._admit(ctx)
        await self._parameters(scope, receive)
        return json_response(200, self.plane.index())

    async def load(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        self._admit(ctx)
        if (missing := self._name(scope)) is not None:
            return missing
        parameters = await self._parameters(scope, receive)
        version = _text(parameters, "version")
        role = parameters.get("role", "primary")
        if role not in _ROLES:
            raise InvalidInput(
                [FieldError(("parameters", "role"), f"one of {', '.join(_ROLES)}", "enum")]
            )
        weight = _number(parameters, "weight", 0, 100)
        share = _number(parameters, "share", 0, 1)
        plane = self.plane

        async def action() -> None:
            if role == "candidate" and weight is not None:
                plane.candidate_weight = weight
            if role == "shadow" and share is not None:
                plane.shadow_share = share
            role_: Role = role
            if version is None:
                if role == "primary":
                    raise InvalidInput(
                        [FieldError(("parameters", "version"), "required", "missing")]
                    )
                if getattr(plane, role) is None:
                    raise InvalidInput(
                        [FieldError(("parameters", "version"), f"no {role} yet", "missing")]
                    )
                return  # only its weight or share changed
            await plane.load_label(version, role_)

        workers = await self.coordinator.change(action)
        return json_response(200, self._summary(workers))

    async def unload(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        self._admit(ctx)
        if (missing := self._name(scope)) is not None:
            return missing
        parameters = await self._parameters(scope, receive)
        version = _text(parameters, "version")
        if version is None:
            raise InvalidInput([FieldError(("parameters", "version"), "required", "missing")])

        async def action() -> None:
            self.plane.unload(version)

        return json_response(200, self._summary(await self.coordinator.change(action)))

    async def promote(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        self._admit(ctx)
        if (missing := self._name(scope)) is not None:
            return missing
        await self._parameters(scope, receive)

        async def action() -> None:
            self.plane.promote()

        return json_response(200, self._summary(await self.coordinator.change(action)))

    async def rollback(self, scope: Scope, receive: Receive, ctx: RequestContext) -> Response:
        self._admit(ctx)
        if (missing := self._name(scope)) is not None:
            return missing
        await self._parameters(scope, receive)

        async def action() -> None:
            self.plane.rollback()

        return json_response(200, self._summary(await self.coordinator.change(action)))

    def _summary(self, workers: dict[str, Any]) -> dict[str, Any]:
        plane = self.plane
        return {
            "serving": {d.role: d.describe() for d in plane.serving_versions()},
            "candidate_weight": plane.candidate_weight,
            "shadow_share": plane.shadow_share,
            **workers,
        }


def _text(parameters: dict[str, Any], key: str) -> str | None:
    value = parameters.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise InvalidInput([FieldError(("parameters", key), "expected a string", "type")])
    return value


def _number(parameters: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = parameters.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise InvalidInput(
            [FieldError(("parameters", key), f"a number from {low:g} to {high:g}", "range")]
        )
    return float(value)
