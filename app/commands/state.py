"""The cluster state as the one-shot commands (`review`, `explain`, `audit`) reach it."""

import asyncio
import time
from pathlib import Path

from app.settings import KUBE_STATE, Settings
from app.state import ClusterState
from app.state.files import DirectoryState, StateError

SYNC_TIMEOUT_SECONDS = 30.0


def open_state(settings: Settings, *, check_stamps: bool = False) -> ClusterState:
    """The state of `--state`; `check_stamps`: with `--state kube`, also follow migrations
    and check their stamps against KubeVirt's choice (what `serve` does)."""
    if settings.state == KUBE_STATE:
        from app.state.kube import KubeState

        return KubeState.from_settings(settings, check_stamps=check_stamps)
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
