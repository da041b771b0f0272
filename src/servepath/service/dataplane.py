"""The data plane: one model's lifecycle and everything the endpoints ask of it, with no ASGI.

It owns the model's state (loading → ready, or failed), installs a loaded model behind the
micro-batcher and the predict pipeline, answers readiness and health, runs admission control
(and installs it into the server's :class:`~servepath.service.gate.Gate`, so that the HTTP
layer sheds on the head with the same decision), and owns the background tasks: the event
loop's lag sampler, the workers' state publisher, the pipeline's deferred writes. Each
endpoint family (:mod:`servepath.service.endpoints`) is a thin delegate to these methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from servepath import __version__
from servepath.cache.base import Cache
from servepath.config import Settings
from servepath.errors import (
    ControlRefused,
    ModelDigestMismatch,
    ModelLoadError,
    ModelNotReady,
    ModelTooLarge,
    ModelVerificationFailed,
    Overloaded,
    PayloadTooLarge,
    TooManyInstances,
    UnknownVersion,
    VersionRefused,
)
from servepath.model.batcher import MicroBatcher
from servepath.model.convert import file_digest
from servepath.model.loaded import LoadedModel, Row, engines_dir, load_model
from servepath.model.prepare import prepare_elsewhere
from servepath.model.repository import LABEL_RULE, ModelRepository, check_label
from servepath.model.source import ModelSource
from servepath.service.admission import (
    Admission,
    AdmissionLimits,
    AdmissionSnapshot,
    Decision,
    Diagnostics,
    Ticket,
)
from servepath.service.deployments import (
    DEFAULT_CANDIDATE_WEIGHT,
    DEFAULT_SHADOW_SHARE,
    Deployment,
    Role,
    VersionState,
    in_share,
)
from servepath.service.gate import Gate
from servepath.service.livedrift import DriftMonitor
from servepath.service.metrics import Metrics, Sample
from servepath.service.predict import Prediction, PredictPipeline, TracedPipeline
from servepath.service.request import RequestMeta
from servepath.service.shadow import ShadowRunner
from servepath.service.state import state_samples
from servepath.store.base import PredictionLog, Route

log = logging.getLogger(__name__)

ModelState = Literal["loading", "ready", "failed"]
#: How often the event loop's lag is sampled, seconds.
LAG_INTERVAL = 0.01
#: How often a worker writes its state (log, cache, admission) where every worker's scrape
#: reads it, seconds.
PUBLISH_INTERVAL = 1.0
#: What a caller from elsewhere without a key reads where the server's own details would be.
WITHHELD = "withheld from callers without an API key; the server's log has it"


class DataPlane:
    """See the module docstring. ``model_loader`` loads the configured model (in a thread)."""

    def __init__(
        self,
        settings: Settings,
        *,
        gate: Gate,
        cache: Cache,
        store: PredictionLog,
        model: LoadedModel | None = None,
        model_loader: Callable[[], LoadedModel] | None = None,
        drift: DriftMonitor | None = None,
    ) -> None:
        self.settings = settings
        #: Live drift against the reference profile (None: no profile given).
        self.drift = drift
        self.gate = gate
        self.cache = cache
        self.store = store
        self.metrics: Metrics = gate.metrics
        self.metrics.watch(self._samples)
        if drift is not None:
            self.metrics.watch_whole(drift.samples)
        self.admission = Admission(
            AdmissionLimits(
                max_in_flight=settings.max_in_flight,
                max_body_bytes=max(64 * 1024 * 1024, 4 * settings.max_body_bytes),
                max_wait=settings.max_queue_wait,
            ),
            max_batch=settings.max_batch,
        )
        #: The live page's data and the path echo: a budget of their own.
        self.diagnostics = Diagnostics(self.admission)
        self._loader = model_loader or (lambda: load_configured_model(settings))
        self._loader_is_configured = model_loader is None
        self.repository = repository_of(settings)
        #: The versions in service, by role (see :mod:`servepath.service.deployments`).
        self.primary: Deployment | None = None
        self.candidate: Deployment | None = None
        self.shadow: Deployment | None = None
        #: Percent of callers the candidate answers; fraction of requests the shadow sees.
        self.candidate_weight = settings.candidate_weight
        self.shadow_share = settings.shadow_share
        #: Every version asked for since start, by label: what the repository index reports.
        self.versions: dict[str, VersionStatus] = {}
        self._loading: str | None = None
        self.state: ModelState = "loading"
        self.load_error: str | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._watchers: list[asyncio.Task[None]] = []
        #: Called with each model installed as primary (the OpenAPI document is rebuilt).
        self.on_install: list[Callable[[LoadedModel], None]] = []
        self.shadows = ShadowRunner(self)
        if model is not None:
            if drift is not None:
                drift.check(model)
            self.install(model)
        gate.install(self.admit_early)
        gate.on_reload(self.reload_model)

    @property
    def model(self) -> LoadedModel | None:
        """The primary version's model: what answers a caller no other role takes."""
        primary = self.primary
        return primary.model if primary is not None else None

    @property
    def batcher(self) -> MicroBatcher | None:
        primary = self.primary
        return primary.batcher if primary is not None else None

    @property
    def pipeline(self) -> PredictPipeline | None:
        primary = self.primary
        return primary.pipeline if primary is not None else None

    @property
    def draining(self) -> bool:
        return self.gate.draining

    # --- the model's lifecycle ---------------------------------------------------------

    def install(
        self,
        model: LoadedModel,
        *,
        calibrate: bool = True,
        label: str | None = None,
        role: Role = "primary",
    ) -> Deployment:
        """Serve ``model`` in ``role`` from now on, with a batcher and a pipeline of its own;
        the version that held the role is retired (closed after its last request)."""
        if calibrate and role == "primary":
            calibrate_admission(self.admission, model)
        deployment = self._deploy(model, label or model.version, role)
        old: Deployment | None = getattr(self, role)
        setattr(self, role, deployment)
        self.versions[deployment.label] = VersionStatus("READY", version=model.version, role=role)
        if old is not None and old is not deployment:
            self._retire(old)
        if role == "primary":
            self.state = "ready"
            self.load_error = None
            for callback in self.on_install:
                callback(model)
        return deployment

    def _deploy(self, model: LoadedModel, label: str, role: Role) -> Deployment:
        name = model.name
        admission = self.admission
        metrics = self.metrics
        serving = role != "shadow"

        def on_call(ms: float, rows: int) -> None:
            metrics.observe_model_call(name, ms / 1000, rows)
            if serving:  # shadow calls are not the service time callers wait for
                admission.observe_call(rows, ms / 1000)

        s = self.settings
        batcher = MicroBatcher(
            model.predict_rows,
            max_batch=s.max_batch,
            on_call=on_call,
            on_drop=lambda reason, rows: metrics.count_dropped(reason),
            inline=model.inline,
        )
        # With tracing, a variant that notes each step on the request's trace; without it,
        # the request path is the plain pipeline's.
        kind = PredictPipeline if s.otlp_endpoint is None else TracedPipeline
        pipeline = kind(
            model=model,
            batcher=batcher,
            cache=self.cache,
            store=self.store,
            metrics=metrics,
            spawn=self.spawn,
            cache_prefix=s.cache_prefix,
            cache_ttl=s.cache_ttl,
            cache_timeout=s.cache_timeout,
            durable=s.durable,
            label=label,
            role=role,
        )
        deployment = Deployment(label, model, batcher, pipeline, role=role)
        if self.drift is not None and serving:  # a shadow's rows are copies, already noted
            deployment.sketch = self.drift.sketch_for(model, role)
        return deployment

    def _retire(self, deployment: Deployment) -> None:
        label = deployment.label
        if not any(d is not None and d.label == label for d in self.serving_versions()):
            self.versions[label] = VersionStatus(
                "UNAVAILABLE", version=deployment.version, reason="unloaded"
            )
        deployment.retire()

    def version_split(self) -> list[dict[str, Any]]:
        """The versions in service, with how many answers each gave (this process)."""
        return [
            {
                "label": d.label,
                "version": d.version,
                "role": d.role,
                "answered": d.answered,
                "weight": self.candidate_weight if d.role == "candidate" else None,
            }
            for d in self.serving_versions()
        ]

    def serving_versions(self) -> list[Deployment]:
        """The deployments in service: primary, candidate, shadow (those that exist)."""
        return [d for d in (self.primary, self.candidate, self.shadow) if d is not None]

    async def load(self) -> None:
        """Load the configured versions off the event loop; a failure is the state, not a
        crash."""
        try:
            label, model = await asyncio.to_thread(self._load_primary)
            if self.drift is not None:
                # A profile of other inputs is refused as a model that does not load is.
                self.drift.check(model)
        except Exception as exc:
            self.state = "failed"
            self.load_error = str(exc)
            log.error("model failed to load: %s", exc)
            if self.settings.on_model_failure == "exit":
                self.gate.fail(str(exc))
            else:
                log.error("serving on, unready (--on-model-failure stay): health answers 503")
            return
        # Timed off the event loop: a slow model's calls would stall it.
        await asyncio.to_thread(calibrate_admission, self.admission, model)
        self.install(model, calibrate=False, label=label)
        configured = (("candidate", self.settings.candidate), ("shadow", self.settings.shadow))
        others = [(role, spec) for role, spec in configured if spec]
        if others:
            # Ready once the configured versions serve, not before: a replica taken into the
            # load balancer with its candidate still loading would answer every caller with
            # the primary, and the canary's share would silently be 0. (Without them,
            # install() has made it ready.)
            self.state = "loading"
            for role, spec in others:
                try:
                    await self.load_spec(spec, role)  # type: ignore[arg-type]
                except Exception as exc:
                    log.error("the %s %s failed to load: %s", role, spec, exc)
                    if self.settings.on_model_failure == "exit":
                        self.gate.fail(f"the {role} {spec} failed to load: {exc}")
                        return
            self.state = "ready"
        settle_heap()
        log.info(
            "model %s version %s ready: %s, served with %s",
            model.name,
            model.version if label is None else f"{label} ({model.version})",
            model.format,
            model.engine_note or model.engine,
        )

    def _load_primary(self) -> tuple[str | None, LoadedModel]:
        if self.repository is None:
            return None, self._loader()
        label = self.settings.model_label or self.repository.latest()
        return label, load_version(self.settings, self.repository, label)

    def reload_model(self) -> None:
        """SIGHUP: serve the artifact behind ``--model`` again if it changed (or, with a
        repository and no ``--model``, its highest version if that is new), swapped in as
        a control call would; an unchanged artifact is left alone."""
        if self.primary is None or self._loading is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._reload_model())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reload_model(self) -> None:
        primary = self.primary
        assert primary is not None
        settings = self.settings
        repository = self.repository
        try:
            if repository is not None:
                label = settings.model_label or ""
                if not label:
                    label = await asyncio.to_thread(repository.latest)
                if label != primary.label:
                    await self.load_label(label, "primary")
                    return
                chosen = label

                def spec_loader() -> LoadedModel:
                    return load_version(settings, repository, chosen, prepare=True)

            else:
                label = primary.label
                if self._loader_is_configured:

                    def spec_loader() -> LoadedModel:
                        return load_configured_model(settings, prepare=True)

                else:
                    spec_loader = self._loader
            changed = await asyncio.to_thread(self._artifact_changed, primary)
            if changed:
                await self._load_beside(
                    label, "primary", spec_loader, force=True, labelled=repository is not None
                )
            else:
                log.info("SIGHUP: model %s unchanged, still serving it", primary.version)
        except Exception as exc:
            log.error("SIGHUP: the model was not reloaded, the old one serves on: %s", exc)

    def _artifact_changed(self, primary: Deployment) -> bool:
        path = primary.model.path
        if self.settings.model_uri is not None and self.repository is None:
            return True  # a remote artifact: fetching tells (an unchanged one is cached)
        try:
            return file_digest(path)[:12] != primary.version
        except OSError:
            return True  # gone or unreadable: the load says why

    # --- model control -------------------------------------------------------------------

    async def load_spec(self, spec: str, role: Role) -> Deployment:
        """Load ``spec`` (a repository version's label, else a path or a URI) beside what
        serves, verify it as at start, then switch ``role`` to it."""
        repository = self.repository
        if repository is not None and is_label(spec):
            return await self.load_label(spec, role)
        return await self._load_beside(
            spec, role, lambda: load_path(self.settings, spec, prepare=True), labelled=False
        )

    async def load_label(self, label: str, role: Role = "primary") -> Deployment:
        """Load version ``label`` of the model repository in ``role`` (see :meth:`load_spec`).
        Raises :class:`UnknownVersion`, :class:`ControlRefused` or :class:`VersionRefused`;
        on any failure what serves is unchanged."""
        repository = self.repository
        if repository is None:
            raise ControlRefused("this server has no --model-repository to load versions from")
        if not is_label(label):
            raise UnknownVersion(label, f"a version label is {LABEL_RULE}")
        return await self._load_beside(
            label, role, lambda: load_version(self.settings, repository, label, prepare=True)
        )

    async def _load_beside(
        self,
        label: str,
        role: Role,
        loader: Callable[[], LoadedModel],
        *,
        force: bool = False,
        labelled: bool = True,
    ) -> Deployment:
        if self._loading is not None:
            raise ControlRefused(
                f"version {self._loading!r} is loading; one load at a time, try again when it "
                "is done"
            )
        primary = self.primary
        if role == "primary" and not force and primary is not None and primary.label == label:
            return primary
        self._loading = label
        previous = self.versions.get(label)
        self.versions[label] = VersionStatus("LOADING")
        try:
            with brief_turns():
                model = await asyncio.to_thread(loader)
        except UnknownVersion:
            self._restore(label, previous)
            raise
        except Exception as exc:
            reason, detail = refusal_of(exc)
            self.versions[label] = VersionStatus("UNAVAILABLE", reason=f"{reason}: {detail}")
            log.error("version %s refused (%s): %s", label, reason, detail)
            raise VersionRefused(label, reason, detail) from exc
        finally:
            self._loading = None
        if role == "primary":
            with brief_turns():
                await asyncio.to_thread(calibrate_admission, self.admission, model)
        if role == "candidate" and self.candidate_weight <= 0:
            self.candidate_weight = self.settings.candidate_weight or DEFAULT_CANDIDATE_WEIGHT
        if role == "shadow" and self.shadow_share <= 0:
            self.shadow_share = self.settings.shadow_share or DEFAULT_SHADOW_SHARE
        # A version loaded by its path or URI is known by its content version.
        named = label if labelled and is_label(label) else None
        deployment = self.install(model, calibrate=False, label=named, role=role)
        settle_heap(full=False)
        log.info("version %s (%s) now serves as %s", deployment.label, model.version, role)
        return deployment

    def _restore(self, label: str, previous: VersionStatus | None) -> None:
        if previous is None:
            self.versions.pop(label, None)
        else:
            self.versions[label] = previous

    def unload(self, label: str) -> None:
        """Take version ``label`` out of its role; the primary cannot be (load another)."""
        for role in ("candidate", "shadow"):
            deployment: Deployment | None = getattr(self, role)
            if deployment is not None and deployment.label == label:
                setattr(self, role, None)
                self._retire(deployment)
                return
        primary = self.primary
        if primary is not None and primary.label == label:
            raise ControlRefused(
                f"version {label!r} is the primary: load another version first (or promote "
                "the candidate), then unload this one"
            )
        if label not in self.versions:
            raise UnknownVersion(label, self.known_versions())
        self.versions[label] = VersionStatus(
            "UNAVAILABLE", version=self.versions[label].version, reason="unloaded"
        )

    def promote(self) -> Deployment:
        """The candidate becomes the primary (every caller); the old primary is retired."""
        candidate = self.candidate
        if candidate is None:
            raise ControlRefused("there is no candidate to promote")
        self.candidate = None
        self.candidate_weight = 0.0
        candidate.role = "primary"
        candidate.pipeline.role = "primary"
        old = self.primary
        self.primary = candidate
        self.versions[candidate.label] = VersionStatus(
            "READY", version=candidate.version, role="primary"
        )
        if old is not None:
            self._retire(old)
        for callback in self.on_install:
            callback(candidate.model)
        log.info("candidate %s promoted to primary", candidate.label)
        return candidate

    def rollback(self) -> None:
        """The candidate leaves; every caller is answered by the primary again."""
        candidate = self.candidate
        if candidate is None:
            raise ControlRefused("there is no candidate to roll back")
        self.candidate = None
        self.candidate_weight = 0.0
        self._retire(candidate)
        log.info("candidate %s rolled back", candidate.label)

    def known_versions(self) -> str:
        serving = ", ".join(f"{d.label} ({d.role})" for d in self.serving_versions())
        return f"this server serves {serving or 'nothing yet'}"

    def index(self) -> list[dict[str, Any]]:
        """The repository's versions and their states, as the repository extension lists
        them: every folder in the repository, and every version loaded from elsewhere."""
        labels: list[str] = []
        if self.repository is not None:
            with contextlib.suppress(Exception):  # an unreadable repository lists what it has
                labels = self.repository.labels()
        name = self.model.name if self.model is not None else (
            self.repository.name if self.repository is not None else "model"
        )  # fmt: skip
        entries = []
        for label in dict.fromkeys([*labels, *self.versions]):
            status = self.versions.get(label)
            entry: dict[str, Any] = {"name": name, "version": label}
            if status is None:
                entry["state"] = "UNAVAILABLE"
                entry["reason"] = "not loaded"
            else:
                entry.update(status.to_json())
            entries.append(entry)
        return entries

    # --- routing ---------------------------------------------------------------------------

    def route(self, identity: str | None, wanted: str | None = None) -> Deployment:
        """The version that answers this caller: the one asked for (``X-Model-Version``, a
        label or the 12-hex version), else the candidate for its share of callers, else the
        primary. Raises :class:`ModelNotReady`, or :class:`UnknownVersion` for a version
        not in service."""
        primary = self.primary
        if primary is None:
            raise ModelNotReady(self.state if self.state != "failed" else "failed to load")
        if wanted is not None:
            for deployment in (primary, self.candidate):
                if deployment is not None and wanted in (deployment.label, deployment.version):
                    return deployment
            raise UnknownVersion(wanted, self.known_versions())
        candidate = self.candidate
        if candidate is not None and in_share(identity or "", self.candidate_weight):
            return candidate
        return primary

    async def startup(self) -> None:
        await self.cache.start()
        await self.store.start()
        self._watchers.append(asyncio.create_task(self._watch_lag(), name="servepath-lag"))
        if self.drift is not None:
            self.drift.start()
        if self.metrics.multiprocess:
            self._watchers.append(
                asyncio.create_task(self._publish_state(), name="servepath-publish")
            )
        if self.model is None:
            if self.settings.workers > 1:
                # Workers share one listening socket: a worker that accepted connections while
                # loading would answer 503 to requests a ready sibling could serve. Load first;
                # uvicorn starts accepting only once startup returns.
                await self.load()
            else:
                # One process listens at once so that health answers 503 "loading" meanwhile.
                self.spawn(self.load())

    async def shutdown(self) -> None:
        self.gate.draining = True
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.store.close()
        await self.cache.close()
        if self.drift is not None:
            await self.drift.stop()
        for task in self._watchers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watchers.clear()
        if self.metrics.multiprocess:
            self.metrics.publish()
            self.metrics.forget_process()
        for deployment in self.serving_versions():
            deployment.batcher.close()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background; shutdown waits for it."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watch_lag(self) -> None:
        """Sample how late the event loop runs a timer: the wait every request shares."""
        loop = asyncio.get_running_loop()
        observe = self.admission.observe_lag
        while True:
            due = loop.time() + LAG_INTERVAL
            await asyncio.sleep(LAG_INTERVAL)
            observe(loop.time() - due)
            # The scaling signal follows the building between decisions too: when requests
            # stop coming, nobody else would bring it back to 0.
            self._note_saturation()

    async def _publish_state(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL)
            self.metrics.publish()

    # --- readiness and health ----------------------------------------------------------

    def serving(self) -> tuple[bool, str]:
        """Whether predictions can be answered now, and if not, why (for readiness)."""
        if self.state != "ready":
            return False, self.state
        if self.draining:
            return False, "draining"
        if self.settings.durable:
            status = self.store.status()
            if not status.accepting:
                return False, f"the prediction log cannot keep records: {status.detail}"
        return True, "ok"

    def health(self, *, full: bool = True) -> dict[str, Any]:
        """The health document; ``full`` false withholds the server's own details."""
        status = {"ready": "ok", "loading": "loading", "failed": "failed"}[self.state]
        if self.draining and self.state == "ready":
            status = "draining"
        primary = self.primary
        model = primary.model.describe() | {"label": primary.label} if primary else None
        return {
            "status": status,
            "model": model,
            "versions": {d.role: d.describe() for d in self.serving_versions()},
            "error": self.load_error if full or not self.load_error else WITHHELD,
            "cache": told(self.cache.status().to_json(), full),
            "store": told(self.store.status().to_json(), full),
            "load": self.load_snapshot().to_json(),
            # What a proxy in front must stay below (`servepath doctor --local` compares).
            "keepalive_timeout_s": self.settings.keepalive_timeout,
            "version": __version__,
        }

    def ready_model(self) -> LoadedModel:
        if self.model is None:
            raise ModelNotReady(self.state if self.state != "failed" else "failed to load")
        return self.model

    def _samples(self) -> list[Sample]:
        """The state a scrape reports: prediction log, cache, admission."""
        batcher = self.batcher
        return state_samples(
            self.store,
            self.cache,
            self.load_snapshot(),
            batcher.queued_rows if batcher is not None else 0,
        )

    # --- admission -----------------------------------------------------------------------

    def _observe_model(self) -> None:
        """Tell admission control what the model's queue holds now (the candidate's too:
        both answer callers, and they share the process's core)."""
        primary = self.primary
        if primary is None:
            return
        batcher = primary.batcher
        candidate = self.candidate
        if candidate is None:
            self.admission.observe_queue(
                batcher.queued_rows,
                batcher.queued_requests,
                batcher.busy_rows,
                batcher.busy_requests,
                batcher.busy_since,
            )
            return
        other = candidate.batcher
        since = [t for t in (batcher.busy_since, other.busy_since) if t is not None]
        self.admission.observe_queue(
            batcher.queued_rows + other.queued_rows,
            batcher.queued_requests + other.queued_requests,
            batcher.busy_rows + other.busy_rows,
            batcher.busy_requests + other.busy_requests,
            min(since) if since else None,
        )

    def _note_saturation(self) -> None:
        if self.primary is None:
            return
        self._observe_model()
        self.metrics.set_saturation(self.admission.saturation(time.perf_counter()))

    def load_snapshot(self) -> AdmissionSnapshot:
        self._observe_model()
        return self.admission.snapshot(time.perf_counter())

    def _decide(self, body_bytes: int) -> tuple[float, Decision]:
        self._observe_model()
        now = time.perf_counter()
        return now, self.admission.decide(now, body_bytes=body_bytes)

    def admit(self, body_bytes: int = 0) -> Ticket:
        """Let one prediction request into the building, or raise :class:`Overloaded` (or
        :class:`PayloadTooLarge`). Whoever holds the ticket gives it back to :meth:`leave`."""
        limit = self.settings.max_body_bytes
        if body_bytes > limit:
            # Refused for its size (413: do not retry), not for the load (503: retry).
            raise PayloadTooLarge(limit, body_bytes)
        now, decision = self._decide(body_bytes)
        if not decision.admitted:
            self._count_shed(decision)
            raise Overloaded(decision.detail, decision.retry_after)
        return self.admission.enter(now, body_bytes, receiving=True)

    def admit_early(self, body_bytes: int = 0) -> Ticket | Decision | None:
        """For the HTTP layer, as soon as a prediction request's head has arrived: a ticket
        (hand it to the app with the request), the refusal to answer 503 at once, or None
        when there is nothing to decide yet (no model: the app says so)."""
        if self.primary is None or body_bytes > self.settings.max_body_bytes:
            return None  # the app answers (503 loading, 413 too large)
        now, decision = self._decide(body_bytes)
        if decision.admitted:
            return self.admission.enter(now, body_bytes, receiving=True)
        self._count_shed(decision)
        return decision

    def _count_shed(self, decision: Decision) -> None:
        metrics = self.metrics
        metrics.count_shed(decision.reason or "overloaded")
        # Shedding is saturation by definition: 1 at once, not at the next tick.
        metrics.set_saturation(1.0)

    def received(self, ticket: Ticket) -> Ticket:
        """The admitted request's body has all arrived (see :meth:`Admission.received`)."""
        return self.admission.received(time.perf_counter(), ticket)

    def leave(self, ticket: Ticket) -> None:
        self.admission.leave(time.perf_counter(), ticket)

    def admit_diagnostic(self, route: str) -> None:
        """Let one request to a diagnostic route in, or raise :class:`Overloaded` (503 with
        Retry-After) and count it."""
        self._observe_model()
        decision = self.diagnostics.decide(time.perf_counter())
        if not decision.admitted:
            self.metrics.count_diagnostic_refused(route, decision.reason or "rate")
            raise Overloaded(decision.detail, decision.retry_after)

    # --- prediction ----------------------------------------------------------------------

    def check_count(self, count: int) -> None:
        if count > self.settings.max_instances:
            raise TooManyInstances(count, self.settings.max_instances)

    async def predict(
        self,
        rows: Sequence[Row],
        route: Route,
        meta: RequestMeta,
        deployment: Deployment | None = None,
    ) -> Prediction:
        """Predict validated ``rows`` through ``deployment`` (the one :meth:`route` chose;
        None: the primary) — its cache entries, its batcher — and the log; then hand a copy
        to the shadow, if there is one, for after the answer."""
        if deployment is None:
            deployment = self.primary
            if deployment is None:
                raise ModelNotReady(self.state if self.state != "failed" else "failed to load")
        sketch = deployment.sketch
        if sketch is not None:
            sketch.note(rows)
        deployment.enter()
        try:
            prediction = await deployment.pipeline.run(rows, route, meta)
        finally:
            deployment.leave()
        deployment.answered += 1
        if self.shadow is not None and self.shadow_share > 0:
            self.shadows.offer(rows, prediction, meta, deployment, route)
        return prediction


@dataclass(frozen=True)
class VersionStatus:
    """A version's state in the repository index, and why it is not ready when it is not."""

    state: VersionState
    version: str | None = None  # the artifact's 12-hex content version, once loaded
    role: Role | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"state": self.state}
        if self.version is not None:
            data["model_version"] = self.version
        if self.role is not None:
            data["role"] = self.role
        if self.reason is not None:
            data["reason"] = self.reason
        return data


def repository_of(settings: Settings) -> ModelRepository | None:
    if settings.model_repository is None:
        return None
    return ModelRepository(
        settings.model_repository,
        gcs_endpoint=settings.gcs_endpoint,
        s3_endpoint=settings.s3_endpoint,
    )


def is_label(text: str) -> bool:
    try:
        check_label(text)
    except ModelLoadError:
        return False
    return True


def load_version(
    settings: Settings, repository: ModelRepository, label: str, *, prepare: bool = False
) -> LoadedModel:
    """Version ``label`` of ``repository``, fetched, loaded and verified (in a thread);
    ``prepare``: converted and raced in a child process first (see :mod:`~servepath.model.
    prepare`), as a version swapped in while the server answers requests is."""
    try:
        source = repository.source(label)
    except ModelLoadError as exc:
        if "no version" in exc.reason:
            raise UnknownVersion(label, exc.reason) from exc
        raise
    return load_source(settings, source, settings.model_name or repository.name, prepare=prepare)


def load_path(settings: Settings, spec: str, *, prepare: bool = False) -> LoadedModel:
    """A version named by its path or URI (``--candidate``, ``--shadow`` without a
    repository), under the primary's name."""
    source = ModelSource.parse(spec)
    return load_source(settings, source, settings.model_name or source.name, prepare=prepare)


def load_source(
    settings: Settings, source: ModelSource, name: str | None, *, prepare: bool = False
) -> LoadedModel:
    """Fetch, bound, load and verify one artifact: what a version must pass to serve."""
    path = source.local_path(
        settings.data_dir,
        gcs_endpoint=settings.gcs_endpoint,
        s3_endpoint=settings.s3_endpoint,
        allow_http=settings.allow_http_model,
    )
    limit = settings.max_model_bytes
    if limit is not None:
        size = path.stat().st_size
        if size > limit:
            raise ModelTooLarge(str(path), size, limit)
    if prepare:
        prepare_elsewhere(path, settings.data_dir, probabilities=settings.probabilities)
    model = load_model(
        path, name, cache_dir=engines_dir(settings.data_dir), probabilities=settings.probabilities
    )
    verify_model(model)
    return model


def verify_model(model: LoadedModel) -> None:
    """The model answers its own example, with the outputs it declares: what start-up and
    every swap check before a version serves."""
    try:
        outputs = model.predict_rows([model.schema.example()])
    except Exception as exc:
        raise ModelVerificationFailed(
            str(model.path), f"the model failed on its own example: {exc}"
        ) from exc
    if len(outputs) != 1 or not isinstance(outputs[0], dict):
        raise ModelVerificationFailed(str(model.path), "one example gave no single answer")
    missing = [key for key in model.outputs if key not in outputs[0]]
    if missing:
        raise ModelVerificationFailed(str(model.path), f"its answer lacks {', '.join(missing)}")


def refusal_of(exc: Exception) -> tuple[str, str]:
    """A failed load as (one word for the kind, the whole story)."""
    if isinstance(exc, ModelTooLarge):
        return "too_large", exc.reason
    if isinstance(exc, ModelVerificationFailed):
        return "verification_failed", exc.reason
    if isinstance(exc, ModelDigestMismatch):
        return "digest_mismatch", str(exc)
    if isinstance(exc, ModelLoadError):
        return "load_failed", exc.reason
    if isinstance(exc, MemoryError):
        return "out_of_memory", "the process ran out of memory loading it"
    return "load_failed", f"{type(exc).__name__}: {exc}"


def load_configured_model(settings: Settings, *, prepare: bool = False) -> LoadedModel:
    """The model the settings name (see :mod:`servepath.model.source`), loaded and verified;
    ``prepare``: converted and raced in a child process first (a reload while serving)."""
    path = settings.model_source.local_path(
        settings.data_dir,
        gcs_endpoint=settings.gcs_endpoint,
        s3_endpoint=settings.s3_endpoint,
        sha256=settings.model_sha256,
        allow_http=settings.allow_http_model,
    )
    if prepare:
        prepare_elsewhere(
            path,
            settings.data_dir,
            probabilities=settings.probabilities,
            schema=settings.model_schema,
        )
    return load_model(
        path,
        settings.model_name,
        cache_dir=engines_dir(settings.data_dir),
        schema_path=settings.model_schema,
        probabilities=settings.probabilities,
    )


def calibrate_admission(admission: Admission, model: LoadedModel, batch: int = 8) -> None:
    """Time the model on its example instance, alone and in a small batch, so that admission
    control knows its service time before the first burst (the fit then follows real calls)."""
    try:
        row = model.schema.example()
        for rows in ([row], [row] * batch):
            started = time.perf_counter()
            model.predict_rows(rows)
            admission.observe_call(len(rows), time.perf_counter() - started)
    except Exception as exc:  # an example the model refuses: learn from real calls instead
        log.debug("could not time the model on its example: %s", exc)


def settle_heap(*, full: bool = True) -> None:
    """Hide what is alive once the model has loaded from the cyclic garbage collector.

    The model, its libraries and their modules are a few hundred thousand objects that live
    as long as the process. A full collection walks all of them: about 50 ms on the example
    model, a stall every request in flight waits out, and the prediction log and the
    response cache keep enough objects alive long enough to set one off every few seconds
    under load. Frozen objects are skipped by every collection (refcounting still frees
    them), so a full collection then costs well under a millisecond.

    ``full=False`` (a version loaded while requests are answered): collect the young
    generations only before freezing. A full collection would walk every object of the
    version just loaded, on the event loop (about 10 ms here); what it could free is the
    load's own cyclic garbage that already reached the old generation, little and once.
    """
    gc.collect() if full else gc.collect(1)
    gc.freeze()


#: The interpreter's switch interval while a version loads beside requests (seconds).
LOADING_SWITCH_INTERVAL = 0.0005


@contextlib.contextmanager
def brief_turns() -> Iterator[None]:
    """Shorten the interpreter's switch interval (5 ms by default) while a thread loads a
    version beside the event loop.

    Loading runs Python on the GIL for tens of milliseconds (unpickling, building the
    engines, verifying): each time the event loop gives up the GIL to wait for its
    sockets, the loader keeps it for up to a whole switch interval, and every request in
    flight waits that out. With turns of half a millisecond the loop gets the GIL back
    ten times sooner; the load takes a little longer.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, LOADING_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def told(status: dict[str, Any], full: bool) -> dict[str, Any]:
    """A backend's status as a caller may see it: its detail (addresses, paths, a database's
    error text) only for an insider, and only when there is one."""
    if full or not status.get("detail"):
        return status
    return {**status, "detail": WITHHELD}
