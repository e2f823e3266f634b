"""The API stand-in every live-cluster test runs the service against."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kubeapi import KubeApiServer


@pytest.fixture
def api(tmp_path: Path) -> Iterator[KubeApiServer]:
    server = KubeApiServer(tmp_path / "kubeapi").start()
    yield server
    server.release_gets()
    server.stop()
