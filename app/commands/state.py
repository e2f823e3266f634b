"""The cluster state as the one-shot commands (`review`, `explain`, `audit`) reach it."""

import asyncio
import time
from pathlib import Path

from kubernetes.client import ApiClient, Configuration
from kubernetes.config import ConfigException, load_kube_config

from app.settings import KUBE_STATE, Settings
from app.state import ClusterState
from app.state.files import DirectoryState, StateError
from app.state.kube_api import KubeApi, KubeConfigError

SYNC_TIMEOUT_SECONDS = 30.0


def kube_api(settings: Settings) -> KubeApi:
    """The API of `--kubeconfig` (in-cluster without it), in `--context` when one is given.

    KubeApi.from_kubeconfig takes no context yet; this does what it does, with one.
    """
    if settings.kube_context is None or settings.kubeconfig is None:
        return KubeApi.from_kubeconfig(settings.kubeconfig)
    configuration = Configuration()
    try:
        load_kube_config(config_file=str(settings.kubeconfig), context=settings.kube_context,
                         client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, ValueError) as error:
        raise KubeConfigError(f"--context {settings.kube_context}: cannot use it from "
                              f"kubeconfig {settings.kubeconfig}: {error}") from error
    # As KubeApi.from_kubeconfig: the pool holds the three watches and the lookups at once.
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 8)
    return KubeApi(ApiClient(configuration))


def open_state(settings: Settings) -> ClusterState:
    if settings.state == KUBE_STATE:
        from app.state.kube import KubeState

        if settings.kube_context is None:
            return KubeState.from_settings(settings)
        return KubeState(kube_api(settings), settings.precedence,
                         watch_idle_timeout=settings.watch_idle_timeout,
                         max_staleness=settings.max_staleness)
    return DirectoryState(Path(settings.state), settings.precedence)


def synced_state(settings: Settings) -> ClusterState:
    """The cluster state, loaded once for a one-shot command."""
    state = open_state(settings)
    if settings.state == KUBE_STATE:
        asyncio.run(_wait_until_ready(state))
    return state


async def _wait_until_ready(state: ClusterState) -> None:
    await state.start()
    deadline = time.monotonic() + SYNC_TIMEOUT_SECONDS
    while not state.is_ready():
        if time.monotonic() > deadline:
            raise StateError(f"the cluster state did not sync within {SYNC_TIMEOUT_SECONDS:.0f} s")
        await asyncio.sleep(0.05)
