"""The HTTP edge: the FastAPI app, its routes and its limits.

Built by `create_app` from its settings and its cluster state; holds no global state.
"""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.admission import (
    AdmissionRequest,
    AdmissionResponse,
    ReviewError,
    encode_review,
    parse_review,
)
from app.metrics import Metrics
from app.settings import Settings
from app.state import ClusterState, WouldBlock
from app.webhooks import MUTATE_PATH, VALIDATE_PATH, Handler, build_handlers

log = logging.getLogger(__name__)

ENDPOINTS = (f"POST {VALIDATE_PATH}, POST {MUTATE_PATH}, "
             "GET /healthz, GET /readyz, GET /metrics")


class BodyTooLarge(Exception):
    pass


def _json_error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status,
                    media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than `limit` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings, state: ClusterState) -> FastAPI:
    """The webhook service for these settings and this cluster state."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="migration-policy-webhook", lifespan=lifespan, redirect_slashes=False,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = metrics
    app.state.cluster = state

    for path, handler in build_handlers(settings, state).items():
        app.add_api_route(path, _review_endpoint(path, handler, settings, metrics),
                          methods=["POST"])

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        if state.is_ready():
            return Response("ok\n", media_type="text/plain")
        return Response("cluster state not synced yet\n", status_code=503,
                        media_type="text/plain")

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        """404 and 405 in the service's own error shape, listing what it does serve."""
        if error.status_code not in (404, 405):
            return _json_error(error.status_code, str(error.detail))
        what = "no such path" if error.status_code == 404 else f"{request.method} is not allowed on"
        return _json_error(error.status_code, f"{what} {request.url.path}: {ENDPOINTS}")

    return app


async def _answer(handler: Handler, request: AdmissionRequest) -> AdmissionResponse:
    """The handler's answer; a bug in it becomes the handler's errored answer, not a 500."""
    try:
        try:
            return handler(request)
        except WouldBlock:  # a lookup must call the API: not on the event loop
            return await run_in_threadpool(handler, request)
    except ReviewError:
        raise
    except Exception:
        log.exception("answering review %s of %s failed", request.uid, request.resource_name)
        return handler.errored(request)


def _review_endpoint(path: str, handler: Handler, settings: Settings, metrics: Metrics):
    async def review(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_body(request, settings.max_body_bytes)
        except BodyTooLarge:
            metrics.rejected_bodies.labels(path, "413").inc()
            return _json_error(413, f"the body is larger than the limit of "
                                    f"{settings.max_body_bytes} bytes")
        try:
            admission_request = parse_review(body)
            response = await _answer(handler, admission_request)
        except ReviewError as error:
            metrics.rejected_bodies.labels(path, "400").inc()
            return _json_error(400, str(error))
        outcome = "allowed" if response["allowed"] else "denied"
        if "patch" in response:
            outcome = "patched"
        metrics.reviews.labels(path, outcome).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        return Response(encode_review(admission_request.api_version, response),
                        media_type="application/json")

    review.__name__ = "review_" + path.strip("/").replace("-", "_")
    return review
