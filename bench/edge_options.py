"""What each way of routing the admission POSTs costs, in process: `python bench/edge_options.py`.

Calls each ASGI app directly with the same review (no sockets), so the figure is the
framework's own cost per request on top of the same work: parse, answer, encode. Options:
a bare ASGI callable (the floor of this measurement), the service's dispatcher in front of
FastAPI (what `serve` runs), a Starlette route, and a FastAPI route taking `Request` and
returning `Response`. Prints µs per request; asserts nothing.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.applications import Starlette
from starlette.routing import Route

from app.admission.handlers import VALIDATE_PATH, build_handlers
from app.admission.review import encode_review, parse_review
from app.policy.precedence import Precedence
from app.serving.app import create_service
from app.settings import Settings
from app.state import view_of
from app.state.files import DirectoryState

REPO = Path(__file__).resolve().parent.parent
BODY = (REPO / "samples" / "reviews" / "policy-valid-example.json").read_bytes()
ROUNDS = 20_000

App = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


STATE = DirectoryState(REPO / "samples" / "cluster", Precedence.DOCUMENTED)
VIEW = view_of(STATE)
HANDLER = build_handlers(Settings(), STATE, lambda: VIEW)[VALIDATE_PATH]


def answer(body: bytes) -> bytes:
    """The same work for every option: the validating handler of the sample state."""
    request = parse_review(body)
    return encode_review(request.api_version, request.uid, HANDLER(request))


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    body = answer(message["body"])
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _endpoint(request: Request) -> Response:
    return Response(answer(await request.body()), media_type="application/json")


def starlette_app() -> Starlette:
    return Starlette(routes=[Route(VALIDATE_PATH, _endpoint, methods=["POST"])])


def fastapi_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route(VALIDATE_PATH, _endpoint, methods=["POST"])
    return app


async def per_request(app: App) -> float:
    """µs per request, best of three runs of ROUNDS."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "https", "path": VALIDATE_PATH, "raw_path":
             VALIDATE_PATH.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(BODY)).encode())],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8443)}
    message = {"type": "http.request", "body": BODY, "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_: dict[str, Any]) -> None:
        return None

    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(ROUNDS):
            await app(dict(scope), receive, send)
        best = min(best, (time.perf_counter() - started) / ROUNDS * 1e6)
    return best


async def main() -> None:
    state = DirectoryState(REPO / "samples" / "cluster", Precedence.DOCUMENTED)
    options: list[tuple[str, App]] = [
        ("bare ASGI callable (same work)", bare),
        ("serve's dispatcher + ReviewEndpoint", create_service(Settings(), state).app),
        ("Starlette route, Request -> Response", starlette_app()),
        ("FastAPI route, Request -> Response", fastapi_app()),
    ]
    floor = None
    print(f"{'option':40} {'µs/request':>10} {'over bare':>10}")
    for name, app in options:
        cost = await per_request(app)
        floor = cost if floor is None else floor
        print(f"{name:40} {cost:10.1f} {cost - floor:+10.1f}")
    print(f"(best of 3 x {ROUNDS} requests each, in process, no sockets)")


if __name__ == "__main__":
    asyncio.run(main())
