"""A real control plane (etcd and kube-apiserver) with the webhook installed as an
administrator installs it (tests/support/in_cluster.py)."""

from collections.abc import Iterator

import pytest

from tests.support.control_plane import ControlPlane, start_control_plane
from tests.support.in_cluster import install, start_webhook
from tests.support.service import RunningService, stop_service


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    running = start_control_plane(tmp_path_factory.mktemp("control-plane"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> ControlPlane:
    install(control_plane)
    return control_plane


@pytest.fixture(scope="session")
def webhook(installed: ControlPlane,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    service, registered = start_webhook(installed, tmp_path_factory.mktemp("webhook"))
    installed.kubectl("apply", "-f", "-", stdin=registered)
    yield service
    installed.kubectl("delete", "-f", "-", "--ignore-not-found", stdin=registered)
    stop_service(service)
