"""Shared fixtures: the real service on the bundled sample cluster state, over real TLS."""

from collections.abc import Iterator

import httpx
import pytest

from tests.support.service import RunningService, running_service


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The service on the bundled sample cluster state, as `make run` starts it."""
    with running_service(tmp_path_factory.mktemp("service")) as running:
        yield running


@pytest.fixture(scope="session")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http
