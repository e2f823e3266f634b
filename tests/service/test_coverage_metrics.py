"""The coverage series of `/metrics` (issue 20, docs/metrics.md "Coverage"), scraped from the
real service: policies by status, VMIs governed and matched per policy (what `coverage -o
json` says), `--per-policy-metrics=false`, and a state directory that changes."""

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.policy.precedence import Precedence
from tests.support.coverage_oracle import (
    State,
    coverage_by_scan,
    random_state,
    status_by_scan,
    write_state,
)
from tests.support.live_cluster import METRICS_PREFIX, scrape, value
from tests.support.service import SAMPLE_CLUSTER, free_port, run_cli, running_service

DEADLINE = 30.0
STATUSES = ("active", "shadowed", "unused", "no-selectors")
PER_POLICY = ("policy_governed_vmis", "policy_matched_vmis")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def by_status(samples: Samples) -> dict[str, float | None]:
    return {status: value(samples, "policies", status=status) for status in STATUSES}


def per_policy(samples: Samples, name: str) -> dict[str, float]:
    """policy -> value of one per-policy series."""
    found = {}
    for (series, labels), number in samples.items():
        if series == METRICS_PREFIX + name:
            found[dict(labels)["policy"]] = number
    return found


def figures(samples: Samples) -> dict[str, Any]:
    """What the coverage series say: policies by status, governed and matched per policy."""
    return {"status": by_status(samples),
            "governed": per_policy(samples, "policy_governed_vmis"),
            "matched": per_policy(samples, "policy_matched_vmis")}


def figures_of_document(document: dict[str, Any]) -> dict[str, Any]:
    """The same figures from `coverage -o json`."""
    policies = document["policies"]
    return {"status": {status: float(sum(policy["status"] == status for policy in policies))
                       for status in STATUSES},
            "governed": {policy["name"]: float(policy["governs"]) for policy in policies},
            "matched": {policy["name"]: float(policy["matches"]) for policy in policies}}


def figures_by_scan(state: State) -> dict[str, Any]:
    shares = coverage_by_scan(state.policies, state.vmis, state.namespaces,
                              Precedence.DOCUMENTED)
    by_name = {policy.name: policy for policy in state.policies}
    statuses = [status_by_scan(by_name[name], share) for name, share in shares.items()]
    return {"status": {status: float(statuses.count(status)) for status in STATUSES},
            "governed": {name: float(share["governs"]) for name, share in shares.items()},
            "matched": {name: float(share["matches"]) for name, share in shares.items()}}


def eventually(probe: Callable[[], Any], wanted: Any) -> Any:
    """Poll until `probe()` equals `wanted`; the deadline only ends a failure."""
    deadline = time.monotonic() + DEADLINE
    while True:
        found = probe()
        if found == wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def scrape_after_a_pass(http: httpx.Client) -> Samples:
    """A scrape once the first coverage pass has reported (readiness waits for its view
    of the VMIs, made just before its report)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        samples = scrape(http)
        if by_status(samples)["active"] is not None or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


# --- the sample state ------------------------------------------------------------------------

def test_the_sample_s_policies_by_status(client: httpx.Client) -> None:
    assert by_status(scrape_after_a_pass(client)) == {"active": 3.0, "shadowed": 1.0, "unused": 1.0,
                                         "no-selectors": 0.0}


def test_the_series_are_gauges_with_help(client: httpx.Client) -> None:
    text = client.get("/metrics").text
    for name in ("policies", *PER_POLICY):
        assert f"# TYPE {METRICS_PREFIX}{name} gauge" in text
        assert f"# HELP {METRICS_PREFIX}{name} " in text


def test_per_policy_figures_are_what_coverage_prints(client: httpx.Client) -> None:
    done = run_cli("coverage", "-o", "json")
    assert done.returncode == 0, done.stderr
    expected = figures_of_document(json.loads(done.stdout))
    assert figures(scrape_after_a_pass(client)) == expected
    assert expected["governed"] == {"gold-tier-db-policy": 1, "my-awesome-policy": 1,
                                    "staging-policy": 0, "team-web-policy": 0,
                                    "web-app-policy": 1}
    assert expected["matched"]["my-awesome-policy"] == 2


def test_without_per_policy_metrics_only_the_statuses_are_left(tmp_path: Path) -> None:
    """Also on the plain-HTTP metrics port, the one the manifests scrape."""
    port = free_port()
    with running_service(tmp_path, ["--per-policy-metrics=false", "--metrics-bind-address",
                                    f"127.0.0.1:{port}"]) as service:
        with service.client() as http:
            over_tls = scrape_after_a_pass(http)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as plain:
            over_http = scrape(plain)
    for samples in (over_tls, over_http):
        names = {series for series, _ in samples}
        assert not {METRICS_PREFIX + name for name in PER_POLICY} & names
        assert by_status(samples) == {"active": 3.0, "shadowed": 1.0, "unused": 1.0,
                                      "no-selectors": 0.0}


def test_per_policy_metrics_on_the_plain_http_port_too(tmp_path: Path) -> None:
    port = free_port()
    with running_service(tmp_path, ["--metrics-bind-address", f"127.0.0.1:{port}"]), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as plain:
        found = figures(scrape_after_a_pass(plain))
    assert found["governed"]["web-app-policy"] == 1.0
    assert found["matched"]["team-web-policy"] == 1.0


# --- states that change ----------------------------------------------------------------------

def test_a_generated_state_and_its_replacement_are_counted_as_a_plain_scan(
        tmp_path: Path) -> None:
    """The metrics of a seeded state equal the plain scan's; the directory rewritten with
    another seed's state, they follow after a pass."""
    first, second = random_state(11), random_state(12)
    directory = write_state(tmp_path / "state", first)
    assert figures_by_scan(first) != figures_by_scan(second)
    with running_service(tmp_path, ["--state", str(directory), "--coverage-interval",
                                    "0.2"]) as service, service.client() as http:
        assert figures(scrape_after_a_pass(http)) == figures_by_scan(first)
        write_state(directory, second)
        assert eventually(lambda: figures(scrape(http)), figures_by_scan(second)) == \
            figures_by_scan(second)


def test_a_vmi_and_a_policy_changed_in_the_directory_show_after_a_pass(
        tmp_path: Path) -> None:
    """A VMI only team-web-policy matches makes it active; staging-policy taken out of the
    directory loses its series."""
    state = tmp_path / "cluster"
    shutil.copytree(SAMPLE_CLUSTER, state)
    with running_service(tmp_path, ["--state", str(state), "--coverage-interval", "0.2"]) \
            as service, service.client() as http:
        before = scrape_after_a_pass(http)
        assert value(before, "policy_governed_vmis", policy="team-web-policy") == 0.0
        (state / "team-vmi.yaml").write_text(yaml.safe_dump(
            {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
             "metadata": {"name": "team-vmi", "namespace": "prod",
                          "labels": {"team": "web"}}}))
        assert eventually(lambda: by_status(scrape(http)),
                          {"active": 4.0, "shadowed": 0.0, "unused": 1.0,
                           "no-selectors": 0.0})["active"] == 4.0
        after = scrape(http)
        assert value(after, "policy_governed_vmis", policy="team-web-policy") == 1.0
        assert value(after, "policy_matched_vmis", policy="team-web-policy") == 2.0
        documents = [document for document in yaml.safe_load_all(
            (state / "policies.yaml").read_text())
            if document["metadata"]["name"] != "staging-policy"]
        (state / "policies.yaml").write_text(yaml.safe_dump_all(documents))
        left = ["gold-tier-db-policy", "my-awesome-policy", "team-web-policy",
                "web-app-policy"]
        assert eventually(lambda: sorted(per_policy(scrape(http), "policy_matched_vmis")),
                          left) == left
        assert sorted(per_policy(scrape(http), "policy_governed_vmis")) == left
        assert by_status(scrape(http)) == {"active": 4.0, "shadowed": 0.0, "unused": 0.0,
                                           "no-selectors": 0.0}
