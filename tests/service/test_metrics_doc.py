"""docs/metrics.md against what `GET /metrics` serves, both ways: every series its tables
document is served, with the documented type and label names, and every
`migration_policy_webhook_*` family served is documented. Served means by either of two real
services: the one on the sample cluster state (the session's `service`), and one on
`serve --state kube` against the API stand-in, which alone has the watch, direct-GET and
stamp-check series."""

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.kubeapi import KubeApiServer
from tests.support.live_cluster import db_policy, decide, seed, webhook
from tests.support.service import REPO

METRICS_DOC = REPO / "docs" / "metrics.md"
PREFIX = "migration_policy_webhook_"
ROW = re.compile(r"^\| `(migration_policy_webhook_\w+)` \| (\w+) \|([^|]*)\|", re.MULTILINE)


@dataclass(frozen=True)
class Series:
    type: str
    labels: frozenset[str]


def label_names(cell: str) -> frozenset[str]:
    """The label names of a table's labels cell: its backquoted words outside parentheses
    (inside them are the label's values and what they mean)."""
    depth, outside = 0, []
    for char in cell:
        depth += char == "("
        if depth == 0:
            outside.append(char)
        depth -= char == ")"
    return frozenset(re.findall(r"`(\w+)`", "".join(outside)))


def documented() -> dict[str, Series]:
    """Every row of docs/metrics.md's tables, by the name the doc writes (`_total` on
    counters, as Prometheus shows them)."""
    rows = ROW.findall(METRICS_DOC.read_text())
    series = {name: Series(kind, label_names(labels)) for name, kind, labels in rows}
    assert len(series) == len(rows), "a series documented twice"
    return series


DOCUMENTED = documented()


def served_from(text: str) -> dict[str, Series]:
    """The families of one scrape, by the name a query uses for a counter (`_total`), with the
    label names their samples carry (`le` of the histogram buckets left out)."""
    found = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {label for sample in family.samples for label in sample.labels} - {"le"}
        found[name] = Series(family.type, frozenset(labels))
    return found


@pytest.fixture(scope="module")
def kube_scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of `serve --state kube` on the API stand-in, after a migration of a VMI it
    holds (a stamp check) and of one it does not (a direct GET)."""
    directory = tmp_path_factory.mktemp("metrics-doc")
    with KubeApiServer(directory / "kubeapi") as api:
        seed(api, db_policy())
        with webhook(directory, api) as (_, client):
            decide(client, "hpc", "db")
            decide(client, "hpc", "absent")
            answer = client.get("/metrics")
            assert answer.status_code == 200
            yield answer.text


@pytest.fixture(scope="module")
def served(client: httpx.Client, kube_scrape: str) -> dict[str, Series]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    families: dict[str, Series] = {}
    for scrape in (answer.text, kube_scrape):
        for name, series in served_from(scrape).items():
            before = families.get(name)
            families[name] = series if before is None else Series(
                series.type, before.labels | series.labels)
    return families


def test_the_doc_tables_are_read() -> None:
    """The table parser found the sections' rows (so the two tests below cannot pass on a
    doc whose tables it no longer reads), and each row's label cell."""
    assert len(DOCUMENTED) >= 14
    assert DOCUMENTED[PREFIX + "reviews_total"] == Series(
        "counter", frozenset({"webhook", "outcome"}))
    assert DOCUMENTED[PREFIX + "client_disconnects_total"].labels == frozenset()


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_a_documented_series_is_served_as_documented(
        name: str, served: dict[str, Series]) -> None:
    """Catches a series renamed or dropped in app/ but not in the doc, a counter documented
    without `_total`, a gauge documented as a counter, a label added, renamed or dropped."""
    assert name in served, f"docs/metrics.md documents {name}; /metrics does not serve it"
    assert served[name] == DOCUMENTED[name], name


def test_every_served_family_is_documented(served: dict[str, Series]) -> None:
    """Catches a new series shipped without its row in docs/metrics.md."""
    undocumented = sorted(name for name in served
                          if name.startswith(PREFIX) and name not in DOCUMENTED)
    assert undocumented == []


def test_the_standard_collectors_documented_as_a_group_are_served(
        served: dict[str, Series]) -> None:
    """docs/metrics.md's Process section: `process_*` and `python_*` (`python_info`, garbage
    collections). Catches a registry built without the process or platform collectors."""
    text = METRICS_DOC.read_text()
    assert "`process_*`" in text and "`python_*`" in text and "`python_info`" in text
    assert any(name.startswith("process_") for name in served)
    assert "python_info" in served
    assert any(name.startswith("python_gc_") for name in served)


def test_nothing_else_is_served(served: dict[str, Series]) -> None:
    """Every family is the webhook's own or the standard collectors' the doc names as a group."""
    others = sorted(name for name in served
                    if not name.startswith((PREFIX, "process_", "python_")))
    assert others == []


def test_the_doc_names_its_files() -> None:
    """The paths docs/metrics.md sends readers to exist."""
    for path in re.findall(r"`((?:manifests|docs)/[\w./-]+)`", METRICS_DOC.read_text()):
        assert (REPO / path).exists(), path
