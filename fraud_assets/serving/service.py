"""BentoML service ``FraudScoring``: parse -> online features -> model -> decision -> log.

Start it from the repo root::

    FRAUD_BUNDLE=path/to/bundle FRAUD_SERVING_STATE=serving_state \\
    FRAUD_ADMIN_KEY=secret bentoml serve fraud_assets.serving.service:FraudScoring

- ``FRAUD_BUNDLE``: bundle folder (``fraud_assets.lib.bundle``); default ``bundle/`` next to
  this file (where a Bento built with the bundle in its sources finds it).
- ``FRAUD_SERVING_STATE``: where prediction, error and feedback logs and the control plane
  (``lib/control.py``: deployment pointer, terminal refreshes, heartbeats) live; made absolute,
  and required absolute when a built Bento is served (it runs inside BentoML's store).
- ``FRAUD_ONLINE_STORE``: ``embedded`` (default) or ``redis://host:port/db`` (shared by
  every worker and replica); ``FRAUD_SERVING_WORKERS``: worker processes (>1 needs Redis).
- ``FRAUD_STORE_MAX_LAG_S``: traffic this far past the store's day makes ``/readyz`` say
  ``degraded`` and counts ``fraud_store_stale_requests`` (default a day).
- ``FRAUD_ADMIN_KEY``: enables /admin/reload and /admin/rollback (header ``x-api-key``);
  unset, admin actions answer 403.
- ``FRAUD_HOT_PATH_TELEMETRY=1``: trace and access-log /score and /score_batch too (off by
  default: see below).

APIs: POST /score, /score_batch, /feedback, /admin/reload, /admin/rollback; GET or POST
/models; built in: /livez, /readyz (with a status body: ``health``), /metrics. Each worker
follows the control plane (``follower``): rollouts, rollbacks and terminal refreshes reach it
within about a second. With the embedded store a restart first replays the prediction log
since the store's seed day, so nothing scored is forgotten.
The APIs are async and do their (sub-millisecond) CPU work on the event loop: no thread hop
per request. A batch yields to the loop every 250 rows (~1-2 ms of work), so single
transactions do not wait behind it; SHAP explanations (~15-50 ms), feedback fsyncs and
reloads run in threads. Batch bodies are parsed by ``schemas.parse_batch`` (msgspec first,
pydantic for anything it does not accept in full: same answers, same errors).

This module stays thin: logic lives in schemas / scoring / routing / logs / http.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread
import bentoml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fraud_assets.lib import contracts, control
from fraud_assets.lib.bundle import BundleError
from fraud_assets.lib.online_store import StoreBusy, open_store
from fraud_assets.serving import lifecycle
from fraud_assets.serving.follower import Follower
from fraud_assets.serving.health import ReadinessDetail, max_store_lag, store_status
from fraud_assets.serving.http import (
    ErrorLogging,
    RequestLimits,
    error_response,
    json_response,
    raw_json_input,
)
from fraud_assets.serving.logs import DayLog, FeedbackLog
from fraud_assets.serving.openapi import (
    RELOAD_ANSWERS,
    ROLLBACK_ANSWERS,
    SCORING_ANSWERS,
    OpenAPIDocs,
)
from fraud_assets.serving.schemas import (
    MAX_BODY_BYTES,
    BatchRequest,
    BatchResponse,
    EmptyRequest,
    FeedbackRequest,
    FeedbackResponse,
    RequestError,
    ScoreRequest,
    ScoreResponse,
    parse,
    parse_batch,
    parse_optional,
)
from fraud_assets.serving.scoring import NothingToRollBack, Scorer

lifecycle.use_instance_metrics_dir()  # at import, before BentoML creates its metrics

HOT_PATH_TELEMETRY_ENV = "FRAUD_HOT_PATH_TELEMETRY"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the source tree, or the Bento's src/
DEFAULT_BUNDLE = SOURCE_ROOT / contracts.SERVICE_BUNDLE_DIR


def _workers() -> int:
    """Worker processes from ``FRAUD_SERVING_WORKERS`` (default 1); more than one needs a
    shared online store, since each worker would otherwise hold its own copy of the state."""
    raw = os.environ.get(contracts.WORKERS_ENV, "").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{contracts.WORKERS_ENV} must be a whole number >= 1, got {raw!r}")
    workers = int(raw)
    store = os.environ.get(contracts.ONLINE_STORE_ENV, "").strip()
    if workers > 1 and store in ("", "embedded"):
        raise RuntimeError(
            f"{contracts.WORKERS_ENV}={workers} needs a shared online store: the embedded store "
            f"lives in one process, so each worker would score on its own copy of every card's "
            f"history. Set {contracts.ONLINE_STORE_ENV}=redis://host:port/0, or use one worker."
        )
    return workers


def _state_root() -> Path:
    """Where the logs and the control plane live: ``FRAUD_SERVING_STATE``, made absolute.

    Relative to the folder the service runs in, which for ``bentoml serve TAG`` is the Bento
    inside BentoML's store, where no monitoring asset would look: refused there."""
    raw = os.environ.get(contracts.SERVING_STATE_ENV, "").strip()
    path = Path(raw or contracts.DEFAULT_SERVING_STATE)
    if not path.is_absolute() and "bentos" in Path.cwd().parts:
        raise RuntimeError(
            f"{contracts.SERVING_STATE_ENV} must be an absolute path when a built Bento is "
            f"served (it runs from {Path.cwd()}, where monitoring never looks); set it to the "
            "serving_state folder the pipeline reads, e.g. $PWD/serving_state"
        )
    return path.resolve()


WORKERS = _workers()
STATE_ROOT = _state_root()
STALE_REQUESTS = bentoml.metrics.Counter(
    name="fraud_store_stale_requests",
    documentation="Requests scored while the traffic was past the store's day by more than "
    "FRAUD_STORE_MAX_LAG_S (the daily terminal refresh is late)",
    labelnames=["route"],
)
STORE_LAG = bentoml.metrics.Gauge(
    name="fraud_store_lag_seconds",
    documentation="How far the newest scored transaction is past the end of the store's day",
)
# Collect the young generation every 10k net allocations instead of 700. Measured on a batch
# replay: with the defaults, collections cost ~12 us per scored transaction (~20% of the
# batch path) and a full collection paused the worker for ~150 ms; with the loaded state
# frozen (below) and this threshold, ~1.5 us and ~5 ms pauses.
GC_THRESHOLD = (10_000, 20, 20)


# Per-request telemetry on the hot routes costs ~1 ms of CPU (OpenTelemetry spans, an access
# log line) for a ~0.5 ms scoring path. By default the scoring routes skip both: the prediction
# log records every scored request with its latency, and /metrics still counts requests by
# status code and times them. FRAUD_HOT_PATH_TELEMETRY=1 (read at import) turns both back on.
_HOT_ROUTES = ["/score", "/score_batch"]
_FULL_TELEMETRY = os.environ.get(HOT_PATH_TELEMETRY_ENV, "") not in ("", "0", "false")
_QUIET = [] if _FULL_TELEMETRY else _HOT_ROUTES


@bentoml.service(
    name="fraud_scoring",
    workers=WORKERS,
    traffic={"timeout": 60, "max_concurrency": 1024},
    logging={"access": {"enabled": True, "skip_paths": ["/livez", "/readyz", "/metrics", *_QUIET]}},
    tracing={"excluded_urls": [f"{route}$" for route in _QUIET]},
)
class FraudScoring:
    """Scores card transactions online with the champion (and challenger) of a bundle."""

    def __init__(self) -> None:
        lifecycle.bind_to_server()  # a worker never outlives its `bentoml serve`
        self._ready = False
        # The deployment pointer (a rollout's) wins over the packaged bundle: a worker started
        # after a rollout serves what the others serve. The first service on a state root
        # records its packaged bundle there, so the first rollout can be rolled back.
        packaged = Path(os.environ.get(contracts.BUNDLE_ENV) or DEFAULT_BUNDLE)
        pointer = control.adopt_deployment(STATE_ROOT, packaged, reason="first service start")
        self.bundle_path = Path(pointer["bundle"])
        self.admin_key = os.environ.get(contracts.ADMIN_KEY_ENV) or None
        self.predictions = DayLog(STATE_ROOT, contracts.PREDICTIONS_LOG)
        self.feedback_log = FeedbackLog(STATE_ROOT)
        self.max_lag_s = max_store_lag()
        self.scorer = Scorer(self.bundle_path, open_store(), self.predictions)
        self.follower = Follower(self.scorer, STATE_ROOT)
        self.follower.start()
        ReadinessDetail.status = self.status
        self._admin_lock = asyncio.Lock()
        # Models, the store seed and the imports live as long as the worker: move them out of
        # the collector's sight (a reload's new state is not frozen; it is collected normally).
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLD)
        self._ready = True

    async def __is_ready__(self) -> bool:
        return self._ready

    def status(self) -> dict[str, object]:
        """What ``/readyz`` answers once ready (``health``)."""
        lag = self.scorer.store_lag()
        return {
            "status": store_status(lag, self.max_lag_s),
            "bundle_id": self.scorer.current.bundle_id,
            "store_as_of": self.scorer.store.as_of.isoformat() if self.scorer.store.as_of else None,
            "store_lag_s": lag,
            "max_lag_s": self.max_lag_s,
            "control_error": self.follower.error,
        }

    def _count_staleness(self, route: str) -> None:
        lag = self.scorer.store_lag()
        if lag is not None:
            STORE_LAG.set(lag)
            if lag > self.max_lag_s:
                STALE_REQUESTS.labels(route=route).inc()

    @bentoml.on_shutdown
    def _close_logs(self) -> None:
        self.follower.stop()
        self.predictions.close()
        self.feedback_log.close()
        self.scorer.store.close()

    # -------------------------------------------------------------------------- scoring

    @bentoml.api(
        route="/score",
        input_spec=raw_json_input(ScoreRequest, answers=SCORING_ANSWERS),
        output_spec=ScoreResponse,
    )
    async def score(self, request: Request, /) -> Response:
        """Score one transaction; ``explain`` adds the top SHAP contributions."""
        started = time.perf_counter()
        try:
            body = parse(ScoreRequest, await request.body())
        except RequestError as error:
            return error_response(error)
        try:
            scored = self.scorer.score(body.transaction, started)
        except RequestError as error:  # refused before it changed any state (admission)
            return error_response(error)
        except StoreBusy as exc:
            return error_response(RequestError(503, "store_busy", None, str(exc)))
        self._count_staleness("/score")
        if not body.explain:
            return json_response(scored.result)
        reasons = await anyio.to_thread.run_sync(self.scorer.explain, scored)
        features = self.scorer.features_of(scored)
        return json_response({**scored.result, "reasons": reasons, "features": features})

    @bentoml.api(
        route="/score_batch",
        input_spec=raw_json_input(BatchRequest, answers=SCORING_ANSWERS),
        output_spec=BatchResponse,
    )
    async def score_batch(self, request: Request, /) -> Response:
        """Score up to 1000 transactions in order, one model call per variant."""
        started = time.perf_counter()
        try:
            rows = parse_batch(await request.body())
        except RequestError as error:
            return error_response(error)
        steps = self.scorer.score_batch_steps(rows, started)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                self._count_staleness("/score_batch")
                return json_response({"results": done.value})
            except RequestError as error:  # raised before the first row changed state
                return error_response(error)
            except StoreBusy as exc:
                return error_response(RequestError(503, "store_busy", None, str(exc)))
            await asyncio.sleep(0)  # let single transactions in between chunks

    @bentoml.api(
        route="/feedback",
        input_spec=raw_json_input(FeedbackRequest),
        output_spec=FeedbackResponse,
    )
    async def feedback(self, request: Request, /) -> JSONResponse:
        """Store a label durably (fsync) before answering."""
        try:
            body = parse(FeedbackRequest, await request.body())
        except RequestError as error:
            return error_response(error)
        row = {"received_at": datetime.now(UTC).isoformat(), **body.model_dump()}
        await anyio.to_thread.run_sync(self.feedback_log.append, row)
        return JSONResponse({"stored": True})

    @bentoml.api(route="/models", input_spec=raw_json_input(None), output_spec=dict)
    async def models(self, request: Request, /) -> JSONResponse:
        """Loaded variants, versions, thresholds, traffic split and online store state."""
        try:
            parse_optional(EmptyRequest, await request.body())
        except RequestError as error:
            return error_response(error)
        return JSONResponse(self.scorer.describe())

    # ---------------------------------------------------------------------------- admin

    def _authorize(self, request: Request) -> None:
        if self.admin_key is None:
            raise RequestError(
                403,
                "forbidden",
                "x-api-key",
                f"admin actions are disabled: start the service with {contracts.ADMIN_KEY_ENV} set",
            )
        key = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(key.encode(), self.admin_key.encode()):
            raise RequestError(401, "unauthorized", "x-api-key", "missing or wrong admin key")

    async def _admin_request(self, request: Request) -> JSONResponse | None:
        """The error response for an unauthorised or malformed admin call, else None."""
        try:
            self._authorize(request)
            parse_optional(EmptyRequest, await request.body())
        except RequestError as error:
            return error_response(error)
        return None

    @bentoml.api(
        route="/admin/reload",
        input_spec=raw_json_input(None, answers=RELOAD_ANSWERS, admin=True),
        output_spec=dict,
    )
    async def admin_reload(self, request: Request, /) -> JSONResponse:
        """Re-read the bundle folder and swap it in; requests in flight finish on the old."""
        if (refused := await self._admin_request(request)) is not None:
            return refused
        async with self._admin_lock:
            try:
                await anyio.to_thread.run_sync(self.scorer.reload)
            except (BundleError, OSError) as exc:
                message = f"{exc}; still serving the previous bundle"
                return JSONResponse(
                    {"error": "reload_failed", "field": None, "message": message},
                    status_code=500,
                )
        return JSONResponse({"action": "reload", **self.scorer.describe()})

    @bentoml.api(
        route="/admin/rollback",
        input_spec=raw_json_input(None, answers=ROLLBACK_ANSWERS, admin=True),
        output_spec=dict,
    )
    async def admin_rollback(self, request: Request, /) -> JSONResponse:
        """Swap back to the deployment loaded before the last reload (kept in memory)."""
        if (refused := await self._admin_request(request)) is not None:
            return refused
        async with self._admin_lock:
            try:
                self.scorer.rollback()
            except NothingToRollBack as exc:
                return JSONResponse(
                    {"error": "nothing_to_roll_back", "field": None, "message": str(exc)},
                    status_code=409,
                )
        return JSONResponse({"action": "rollback", **self.scorer.describe()})


_API_ROUTES = tuple(method.route for method in FraudScoring.apis.values())
_GET_ROUTES = ("/models",)
FraudScoring.add_asgi_middleware(ErrorLogging, state_root=str(STATE_ROOT), api_routes=_API_ROUTES)
FraudScoring.add_asgi_middleware(ReadinessDetail)
FraudScoring.add_asgi_middleware(
    RequestLimits,
    max_body_bytes=MAX_BODY_BYTES,
    api_routes=_API_ROUTES,
    get_routes=_GET_ROUTES,
)
FraudScoring.add_asgi_middleware(
    OpenAPIDocs,
    inputs={method.route: method.input_spec for method in FraudScoring.apis.values()},
    get_routes=_GET_ROUTES,
)
