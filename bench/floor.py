"""The floor: the least an admission webhook in Python can do, as a raw ASGI app.

It reads the body, parses it once with orjson and answers "allowed" with the request's uid,
in the review's apiVersion. No routing, no validation, no metrics, no logging. The benchmark
runs it on uvicorn with httptools and uvloop, with the service's TLS certificate:

    python -m uvicorn floor:app --app-dir bench --http httptools --loop uvloop ...
"""

from typing import Any

import orjson

HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every HTTP request as an allowed admission review; accept the lifespan."""
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    review = orjson.loads(b"".join(chunks))
    answer = orjson.dumps({
        "apiVersion": review["apiVersion"], "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": True},
    })
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": answer})
