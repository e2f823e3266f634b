"""The HTTP edge: the service's ASGI apps, built from its settings and its cluster state.

The two admission POST paths are answered by `ReviewEndpoint`s dispatched in front of the
FastAPI app, which serves everything else (health, readiness, metrics, error pages).
Holds no global state: `create_service` builds everything a `serve` needs.
"""

import asyncio
import contextlib
import gc
from collections.abc import Awaitable
from dataclasses import dataclass, field

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.admission.handlers import MUTATE_PATH, VALIDATE_PATH, build_handlers
from app.serving.asgi import Receive, Scope, Send
from app.serving.coverage_keeper import CoverageCollector, CoverageKeeper
from app.serving.metrics import Metrics
from app.serving.review_endpoint import ReviewEndpoint, json_error
from app.serving.review_log import ReviewLog
from app.settings import Settings
from app.state import ClusterState

ENDPOINTS = (f"POST {VALIDATE_PATH}, POST {MUTATE_PATH}, "
             "GET /healthz, GET /readyz, GET /metrics")


@dataclass
class Readiness:
    """Ready once the cluster state has synced and the first view of its VMIs is made (the
    impact warnings read it), and no longer once shutdown has begun."""

    state: ClusterState
    coverage: CoverageKeeper
    stopping: bool = False

    def ready(self) -> bool:
        return (not self.stopping and self.state.is_ready()
                and self.coverage.view is not None)


@dataclass
class Service:
    """What `serve` runs: the HTTPS app and the plain-HTTP probe and metrics apps, and the
    background work they need (`start`, `stop`)."""

    app: "AdmissionDispatcher"
    health_app: FastAPI
    metrics_app: FastAPI
    metrics: Metrics
    readiness: Readiness = field(repr=False)
    state: ClusterState = field(repr=False)
    review_log: ReviewLog = field(repr=False)
    coverage: CoverageKeeper = field(repr=False)
    tasks: list["asyncio.Task[None]"] = field(default_factory=list, repr=False)

    async def start(self) -> None:
        """Load the cluster state; start the review log's writer, the gc freeze and the
        coverage passes."""
        await self.state.start()
        self.tasks = [asyncio.create_task(self.review_log.run(), name="review-log"),
                      asyncio.create_task(_freeze_when_ready(self.state), name="gc-freeze"),
                      asyncio.create_task(self.coverage.run(), name="coverage")]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.state.stop()

    def begin_shutdown(self) -> None:
        """Readiness turns false at once, so endpoints drop this pod before it stops."""
        self.readiness.stopping = True

    def count_refused(self, path: str, status: int) -> None:
        """A request refused before its app (413, 503): counted for the webhook paths."""
        if path in self.app.endpoints:
            self.metrics.rejected_bodies.labels(path, str(status)).inc()


class AdmissionDispatcher:
    """The HTTPS app: the admission POSTs straight to their endpoints, the rest to FastAPI."""

    def __init__(self, endpoints: dict[str, ReviewEndpoint], fallback: FastAPI) -> None:
        self.endpoints = endpoints
        self.fallback = fallback
        self._not_allowed = {
            path: json_error(405, f"only POST is allowed on {path}: {ENDPOINTS}")
            for path in endpoints
        }

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The awaitable of the app that answers (not a coroutine of its own: one frame
        less on every request)."""
        if scope["type"] == "http":
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                if scope["method"] == "POST":
                    return endpoint(scope, receive, send)
                return _send_405(send, *self._not_allowed[scope["path"]])
        return self.fallback(scope, receive, send)


async def _send_405(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"allow", b"POST")]})
    await send({"type": "http.response.body", "body": body})


def create_service(settings: Settings, state: ClusterState) -> Service:
    """Everything `serve` runs, for these settings and this cluster state."""
    keeper = CoverageKeeper(state, interval=settings.coverage_interval)
    handlers = build_handlers(settings, state, lambda: keeper.view)
    metrics = Metrics(tuple(handlers))
    review_log = ReviewLog(settings.logging_format)
    metrics.registry.register(state.collector())
    metrics.registry.register(CoverageCollector(keeper, per_policy=settings.per_policy_metrics))
    readiness = Readiness(state, keeper)
    main = _probe_app(readiness)
    _add_metrics(main, metrics)
    endpoints = {
        path: ReviewEndpoint(path, handler, metrics=metrics, review_log=review_log,
                             max_body_bytes=settings.max_body_bytes)
        for path, handler in handlers.items()
    }
    metrics_app = _bare_app()
    _add_metrics(metrics_app, metrics)
    return Service(app=AdmissionDispatcher(endpoints, main), health_app=_probe_app(readiness),
                   metrics_app=metrics_app, metrics=metrics, readiness=readiness, state=state,
                   review_log=review_log, coverage=keeper)


async def _freeze_when_ready(state: ClusterState) -> None:
    """Once the state has loaded, move what exists then out of the garbage collector's
    reach (`gc.freeze`): a cache of 100,000 VMIs and policies is long-lived, and scanning it
    at every full collection cost the request path tens of µs per request on average."""
    while not state.is_ready():
        await asyncio.sleep(0.1)
    gc.freeze()


def _bare_app() -> FastAPI:
    app = FastAPI(title="migration-policy-webhook", redirect_slashes=False, docs_url=None,
                  redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """404 and 405 in the service's own error shape, listing what it does serve."""
        if error.status_code not in (404, 405):
            return _json_response(error.status_code, str(error.detail))
        what = "no such path" if error.status_code == 404 else f"{request.method} is not allowed on"
        return _json_response(error.status_code, f"{what} {request.url.path}: {ENDPOINTS}")

    return app


def _json_response(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status,
                    media_type="application/json")


def _probe_app(readiness: Readiness) -> FastAPI:
    app = _bare_app()

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        if readiness.ready():
            return Response("ok\n", media_type="text/plain")
        why = "shutting down" if readiness.stopping else "cluster state not synced yet"
        return Response(f"{why}\n", status_code=503, media_type="text/plain")

    return app


def _add_metrics(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
