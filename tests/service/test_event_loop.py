"""`serve` runs on uvloop with uvicorn's httptools protocol (issue 9): the running loop's
type and the protocol class, as the service logs them at start, and the native modules
loaded in the serving process."""

from pathlib import Path

import pytest

from tests.support.service import RunningService


def runtime_line(service: RunningService) -> str:
    return next(line for line in service.log().splitlines() if " event loop " in line)


def test_the_running_loop_is_uvloop(service: RunningService) -> None:
    assert " event loop uvloop.Loop, " in runtime_line(service)


def test_connections_are_served_by_the_httptools_protocol(service: RunningService) -> None:
    line = runtime_line(service)
    assert ("HTTP protocol uvicorn.protocols.http.httptools_impl.HttpToolsProtocol "
            "(uvicorn 0.55.0) behind app.serving.edge.EdgeConnection") in line


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
def test_the_native_loop_and_parser_are_loaded(service: RunningService) -> None:
    """uvloop's and httptools' compiled modules are mapped into the serving process."""
    maps = Path(f"/proc/{service.process.pid}/maps").read_text()
    assert "/uvloop/loop." in maps
    assert "/httptools/parser/parser." in maps
