"""A control plane of its own whose kube-apiserver writes an audit log of every request
made by a ServiceAccount of the webhook's namespace: the calls the service made, as the real
API server saw them (verb, URI with its query, user, when received and when answered),
where the stand-in's call log was the only witness before (issue 19).

The log backend runs in `blocking` mode: an event is written before the request goes on,
so a request the service has had answered is in the log (its ResponseComplete event may
follow a moment later: `completed` waits for it).
"""

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.control_plane import ControlPlane, start_control_plane
from tests.support.in_cluster import NAMESPACE
from tests.support.live_cluster import wait_for

POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts:{NAMESPACE}"]
- level: None
"""


def start_audited_control_plane(directory: Path) -> ControlPlane:
    """etcd and kube-apiserver (tests/support/control_plane.py), the API server restarted
    with the audit policy above before anything is installed."""
    plane = start_control_plane(directory)
    try:
        plane.stop_apiserver()
        (directory / "audit-policy.yaml").write_text(POLICY)
        plane.args += ["--audit-policy-file", str(directory / "audit-policy.yaml"),
                       "--audit-log-path", str(directory / "audit.log"),
                       "--audit-log-format", "json", "--audit-log-mode", "blocking"]
        plane.start_apiserver()
    except BaseException:
        plane.stop()
        raise
    return plane


@dataclass(frozen=True)
class Call:
    """One request as the API server's audit log shows it."""

    verb: str
    resource: str
    name: str
    query: dict[str, str]
    received: datetime
    answered: datetime | None
    """When its response was complete; None while it runs (a watch)."""


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _events(plane: ControlPlane, user: str) -> list[dict[str, Any]]:
    path = plane.directory / "audit.log"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        if event["user"]["username"] == user:
            events.append(event)
    return events


def calls(plane: ControlPlane, user: str, verb: str, resource: str) -> list[Call]:
    """Every `verb` on `resource` that `user` made, in the order received."""
    found: dict[str, Call] = {}
    for event in _events(plane, user):
        reference = event.get("objectRef") or {}
        if event["verb"] != verb or reference.get("resource") != resource:
            continue
        query = {key: values[-1] for key, values in
                 parse_qs(urlsplit(event["requestURI"]).query).items()}
        answered = (_time(event["stageTimestamp"]) if event["stage"] == "ResponseComplete"
                    else None)
        earlier = found.get(event["auditID"])
        if earlier is None or answered is not None:
            found[event["auditID"]] = Call(verb, resource, reference.get("name", ""), query,
                                           _time(event["requestReceivedTimestamp"]), answered)
    return sorted(found.values(), key=lambda call: call.received)


def completed(plane: ControlPlane, user: str, verb: str, resource: str) -> list[Call]:
    """`calls`, once every one of them has its response complete in the log."""
    return wait_for(lambda: calls(plane, user, verb, resource),
                    lambda made: all(call.answered is not None for call in made))


def most_at_once(made: list[Call]) -> int:
    """The most calls the API server was answering at the same moment."""
    edges = sorted([(call.received, 1) for call in made]
                   + [(call.answered, -1) for call in made if call.answered is not None])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def service_account_user(account: str) -> str:
    return f"system:serviceaccount:{NAMESPACE}:{account}"
