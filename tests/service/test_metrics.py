"""The Prometheus series, as a scrape of a real `serve` sees them."""

import time

import pytest
from cryptography import x509

from tests.support.reviews import VALIDATE, post_review, sample_review
from tests.support.service import start_service, stop_service

SERIES = (
    "migration_policy_webhook_reviews_total",
    "migration_policy_webhook_review_duration_seconds_bucket",
    "migration_policy_webhook_bad_requests_total",
    "migration_policy_webhook_internal_errors_total",
    "migration_policy_webhook_client_disconnects_total",
    "migration_policy_webhook_cache_objects",
    "migration_policy_webhook_cache_last_sync_timestamp_seconds",
    "migration_policy_webhook_certificate_expiry_timestamp_seconds",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "python_info",
    "python_gc_collections_total",
)


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for every sample line of a scrape."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


@pytest.fixture(scope="module")
def warn_service(tmp_path_factory):
    service = start_service(tmp_path_factory.mktemp("warn"), ["--enforcement", "warn"])
    yield service
    stop_service(service)


def test_every_series_is_exported_and_none_is_created(client):
    text = client.get("/metrics").text
    names = {series.split("{")[0] for series in samples(text)}
    assert set(SERIES) <= names
    assert not [name for name in names if name.endswith("_created")]


def test_cache_sizes_and_freshness_of_the_sample_state(client):
    scrape = samples(client.get("/metrics").text)
    sizes = {resource: scrape[f'migration_policy_webhook_cache_objects{{resource="{resource}"}}']
             for resource in ("migrationpolicies", "virtualmachineinstances", "namespaces")}
    assert sizes == {"migrationpolicies": 5, "virtualmachineinstances": 4, "namespaces": 3}
    synced = scrape['migration_policy_webhook_cache_last_sync_timestamp_seconds'
                    '{resource="migrationpolicies"}']
    assert time.time() - 3600 < synced <= time.time()


def test_certificate_expiry_is_the_serving_certificates(service, client):
    certificate = x509.load_pem_x509_certificate(
        (service.ca_file.parent / "tls.crt").read_bytes())
    scrape = samples(client.get("/metrics").text)
    expiry = scrape["migration_policy_webhook_certificate_expiry_timestamp_seconds"]
    assert expiry == certificate.not_valid_after_utc.timestamp()


def test_an_invalid_policy_admitted_in_warn_mode_counts_as_warned(warn_service):
    series = ('migration_policy_webhook_reviews_total'
              '{outcome="warned",webhook="/validate-migrationpolicy"}')
    with warn_service.client() as client:
        before = samples(client.get("/metrics").text)[series]
        answer = post_review(client, VALIDATE, sample_review("policy-negative-bandwidth.json"))
        after = samples(client.get("/metrics").text)[series]
    assert answer["allowed"] is True
    assert answer["warnings"][0] == (
        'would be refused: spec.bandwidthPerMigration: "-1Gi" is negative: use 0 (unlimited) '
        "or a larger quantity, such as 64Mi")
    assert "status" not in answer
    assert after == before + 1


def test_a_valid_policy_in_warn_mode_is_just_allowed(warn_service):
    with warn_service.client() as client:
        answer = post_review(client, VALIDATE, sample_review("policy-valid-example.json"))
    assert answer["allowed"] is True
    assert not any(w.startswith("would be refused") for w in answer.get("warnings", []))
