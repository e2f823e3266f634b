"""manifests/overlays: each builds with `kubectl kustomize` (the real-cluster tier's kubectl:
tests/support/tools.py), is valid (the Kubernetes schemas through kubernetes-validate; the
cert-manager and Prometheus Operator objects, whose CRDs it does not have, by their required
fields), and carries what its certificate path or monitoring needs. Also the alert rules, the
same in the rule file and the PrometheusRule."""

import copy
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.admission.configurations import NAME
from app.commands.certs import SECRET_NAME, service_dns_names
from app.commands.cli import build_parser
from app.settings import Enforcement
from tests.support.service import REPO
from tests.support.tools import kustomize, promtool_binary

MANIFESTS = REPO / "manifests"
OVERLAYS = MANIFESTS / "overlays"
PROMETHEUS_COMPONENT = MANIFESTS / "components" / "prometheus"
RULE_FILE = MANIFESTS / "prometheus-rules.yaml"
INSTALL_DOC = REPO / "docs" / "install.md"
NAMESPACE = "migration-policy-webhook"
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass",
                  *WEBHOOK_KINDS}
ALERTS = {
    "MigrationPolicyWebhookCacheStale":
        "migration_policy_webhook_cache_last_sync_timestamp_seconds",
    "MigrationPolicyWebhookCertificateExpiring":
        "migration_policy_webhook_certificate_expiry_timestamp_seconds",
    "MigrationPolicyWebhookInternalErrors": "migration_policy_webhook_internal_errors_total",
    "MigrationPolicyWebhookPoliciesWithoutEffect": "migration_policy_webhook_policies",
    "MigrationPolicyWebhookStampsDisagree": "migration_policy_webhook_stamp_checks_total",
}

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def built() -> dict[str, list[Doc]]:
    """Every overlay, and the base, as kustomize builds them."""
    overlays = {path.name: kustomize(path) for path in sorted(OVERLAYS.iterdir())}
    return {"base": kustomize(MANIFESTS / "base"), **overlays}


def the(docs: list[Doc], kind: str, name: str = NAME) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(docs: list[Doc]) -> Doc:
    return the(docs, "Deployment")["spec"]["template"]["spec"]


def mounted_secrets(docs: list[Doc]) -> set[str]:
    """The Secrets the webhook container mounts."""
    pod = pod_spec(docs)
    [container] = pod["containers"]
    mounted = {mount["name"] for mount in container["volumeMounts"]}
    return {volume["secret"]["secretName"] for volume in pod["volumes"]
            if "secret" in volume and volume["name"] in mounted}


# Validity: the Kubernetes schemas, and by hand what kubernetes-validate has no CRD for.

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
GO_DURATION = re.compile(r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+")
PROMETHEUS_DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")
CERTIFICATE_USAGES = {"signing", "digital signature", "content commitment", "key encipherment",
                      "key agreement", "data encipherment", "cert sign", "crl sign",
                      "encipher only", "decipher only", "any", "server auth", "client auth",
                      "code signing", "email protection", "s/mime", "ipsec end system",
                      "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
                      "microsoft sgc", "netscape sgc"}


def hours(duration: str) -> float:
    """A Go duration of hours, minutes and seconds, in hours."""
    units = {"h": 1, "m": 1 / 60, "s": 1 / 3600}
    return sum(float(number) * units[unit]
               for number, unit in re.findall(r"([0-9.]+)([hms])", duration))


def has_only(where: str, value: Doc, allowed: set[str], required: set[str] = frozenset()
             ) -> None:
    """No field the CRD does not have (as strict validation refuses), none missing."""
    assert isinstance(value, dict), f"{where}: not an object"
    assert not set(value) - allowed, f"{where}: unknown fields {sorted(set(value) - allowed)}"
    assert not required - set(value), f"{where}: missing {sorted(required - set(value))}"


def check_label_selector(where: str, selector: Doc) -> None:
    has_only(where, selector, {"matchLabels", "matchExpressions"})
    assert all(isinstance(v, str) for v in selector.get("matchLabels", {}).values()), where


def check_issuer(spec: Doc) -> None:
    kinds = {"selfSigned", "ca", "acme", "vault", "venafi"}
    has_only("Issuer.spec", spec, kinds)
    assert len(spec) == 1, f"Issuer.spec: exactly one of {sorted(kinds)}"
    if "ca" in spec:
        has_only("Issuer.spec.ca", spec["ca"], {"secretName", "crlDistributionPoints",
                                                 "ocspServers"}, {"secretName"})


def check_certificate(spec: Doc) -> None:
    has_only("Certificate.spec", spec, {
        "secretName", "issuerRef", "dnsNames", "commonName", "ipAddresses", "uris",
        "emailAddresses", "duration", "renewBefore", "privateKey", "usages", "isCA",
        "subject", "secretTemplate", "revisionHistoryLimit"}, {"secretName", "issuerRef"})
    assert DNS_SUBDOMAIN.fullmatch(spec["secretName"])
    has_only("Certificate.spec.issuerRef", spec["issuerRef"], {"name", "kind", "group"},
             {"name"})
    assert spec["issuerRef"].get("kind", "Issuer") in {"Issuer", "ClusterIssuer"}
    assert spec.keys() & {"dnsNames", "commonName", "ipAddresses", "uris", "emailAddresses"}
    for field in ("duration", "renewBefore"):
        assert GO_DURATION.fullmatch(spec.get(field, "1h")), (field, spec.get(field))
    if "duration" in spec and "renewBefore" in spec:
        assert hours(spec["renewBefore"]) < hours(spec["duration"])
    key = spec.get("privateKey", {})
    has_only("Certificate.spec.privateKey", key, {"algorithm", "size", "encoding",
                                                   "rotationPolicy"})
    assert key.get("algorithm", "RSA") in {"RSA", "ECDSA", "Ed25519"}
    assert key.get("rotationPolicy", "Always") in {"Never", "Always"}
    assert set(spec.get("usages", [])) <= CERTIFICATE_USAGES


def check_service_monitor(spec: Doc) -> None:
    has_only("ServiceMonitor.spec", spec, {"selector", "namespaceSelector", "endpoints",
                                           "jobLabel", "targetLabels", "podTargetLabels"},
             {"selector", "endpoints"})
    check_label_selector("ServiceMonitor.spec.selector", spec["selector"])
    has_only("ServiceMonitor.spec.namespaceSelector", spec.get("namespaceSelector", {}),
             {"any", "matchNames"})
    assert spec["endpoints"], "ServiceMonitor.spec.endpoints: empty"
    for endpoint in spec["endpoints"]:
        has_only("ServiceMonitor endpoint", endpoint, {
            "port", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
            "tlsConfig", "honorLabels", "relabelings", "metricRelabelings"})
        assert endpoint.keys() & {"port", "targetPort"}
        assert endpoint.get("scheme", "http") in {"http", "https"}
        assert PROMETHEUS_DURATION.fullmatch(endpoint.get("interval", "30s"))


def check_rule_groups(where: str, groups: list[Doc]) -> None:
    """Prometheus' rule group format, shared by rule files and PrometheusRule.spec."""
    names = [group["name"] for group in groups]
    assert len(names) == len(set(names)), f"{where}: group names repeat"
    for group in groups:
        has_only(f"{where} group", group, {"name", "interval", "rules", "limit"},
                 {"name", "rules"})
        for rule in group["rules"]:
            has_only(f"{where} rule", rule, {"alert", "record", "expr", "for", "labels",
                                             "annotations", "keep_firing_for"}, {"expr"})
            assert len(rule.keys() & {"alert", "record"}) == 1, rule
            assert PROMETHEUS_DURATION.fullmatch(rule.get("for", "0s")), rule
            for field in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in rule.get(field, {}).values()), rule


def check_prometheus_rule(spec: Doc) -> None:
    has_only("PrometheusRule.spec", spec, {"groups"}, {"groups"})
    check_rule_groups("PrometheusRule.spec", spec["groups"])


CRD_CHECKS: dict[tuple[str, str], Callable[[Doc], None]] = {
    ("cert-manager.io/v1", "Issuer"): check_issuer,
    ("cert-manager.io/v1", "Certificate"): check_certificate,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): check_service_monitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): check_prometheus_rule,
}


def check_custom_resource(doc: Doc) -> None:
    check = CRD_CHECKS.get((doc["apiVersion"], doc["kind"]))
    assert check is not None, f"no check for {doc['apiVersion']} {doc['kind']}"
    has_only(doc["kind"], doc, {"apiVersion", "kind", "metadata", "spec"},
             {"apiVersion", "kind", "metadata", "spec"})
    has_only(f"{doc['kind']}.metadata", doc["metadata"], {"name", "namespace", "labels",
                                                           "annotations"}, {"name"})
    assert DNS_SUBDOMAIN.fullmatch(doc["metadata"]["name"])
    check(doc["spec"])


def validate(doc: Doc, version: str) -> None:
    """Strictly against the Kubernetes schema, or by hand for a CRD kubernetes-validate
    does not know."""
    if doc["apiVersion"].split("/")[0] in {"cert-manager.io", "monitoring.coreos.com"}:
        check_custom_resource(doc)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", sorted(path.name for path in OVERLAYS.iterdir()))
def test_every_overlay_builds_valid_objects(built: dict[str, list[Doc]], overlay: str,
                                            version: str) -> None:
    docs = built[overlay]
    for doc in docs:
        validate(doc, version)
    keys = [(doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
            for doc in docs]
    assert len(keys) == len(set(keys)), "an object appears twice"
    for kind, namespace, name in keys:
        assert namespace == (None if kind in CLUSTER_SCOPED else NAMESPACE), (kind, name)
    assert "Secret" not in {doc["kind"] for doc in docs}, "no key material in manifests"


def test_the_hand_checks_refuse_what_the_crds_would() -> None:
    """The checks above are not vacuous: a typo, a missing field, a bad value fail."""
    certificate = yaml.safe_load((OVERLAYS / "cert-manager" / "certificate.yaml").read_text())
    check_custom_resource(certificate)
    for broken in ({"secretNam": "x"}, {"issuerRef": None}, {"duration": "90d"},
                   {"renewBefore": "3000h"}, {"usages": ["server"]}):
        bad = copy.deepcopy(certificate)
        for field, value in broken.items():
            if value is None:
                del bad["spec"][field]
            else:
                bad["spec"][field] = value
        with pytest.raises(AssertionError):
            check_custom_resource(bad)
    rule = yaml.safe_load((PROMETHEUS_COMPONENT / "prometheusrule.yaml").read_text())
    bad_rule = copy.deepcopy(rule)
    bad_rule["spec"]["groups"][0]["rules"][0]["for"] = "two minutes"
    with pytest.raises(AssertionError):
        check_custom_resource(bad_rule)
    with pytest.raises(AssertionError):
        check_custom_resource({**rule, "kind": "PrometheusRules"})


# Per overlay: the kinds of the base it changes, and the kinds it adds.
CHANGED = {"cert-manager": set(), "openshift": {"Deployment", "Service", "NetworkPolicy"},
           "prometheus": set()}
ADDED = {"cert-manager": {"Issuer", "Certificate", *WEBHOOK_KINDS},
         "openshift": set(WEBHOOK_KINDS), "prometheus": {"ServiceMonitor", "PrometheusRule"}}


@pytest.mark.parametrize("overlay", sorted(CHANGED))
def test_overlays_change_the_base_only_where_they_must(built: dict[str, list[Doc]],
                                                       overlay: str) -> None:
    assert set(CHANGED) == {path.name for path in OVERLAYS.iterdir()}
    docs = built[overlay]
    base_kinds = {doc["kind"] for doc in built["base"]}
    for doc in built["base"]:
        got = the(docs, doc["kind"], doc["metadata"]["name"])
        assert (got == doc) is (doc["kind"] not in CHANGED[overlay]), doc["kind"]
    assert {doc["kind"] for doc in docs} - base_kinds == ADDED[overlay]


# The webhook configurations of the CA-injecting overlays.


def webhooks_yaml() -> list[Doc]:
    return [doc for doc in yaml.safe_load_all((MANIFESTS / "webhooks" / "webhooks.yaml")
                                              .read_text()) if doc]


def check_injected_webhooks(docs: list[Doc], annotations: dict[str, str]) -> None:
    """Both configurations: the injector's annotation, no caBundle (an apply must not blank
    the injected one), otherwise webhooks.yaml."""
    for shipped in webhooks_yaml():
        got = the(docs, shipped["kind"])
        assert got["metadata"]["annotations"] == annotations
        for hook in got["webhooks"]:
            assert "caBundle" not in hook["clientConfig"], shipped["kind"]
        expected = copy.deepcopy(shipped)
        for hook in expected["webhooks"]:
            del hook["clientConfig"]["caBundle"]
        expected["metadata"]["annotations"] = annotations
        assert got == expected


# cert-manager.


def serving_certificate(docs: list[Doc]) -> Doc:
    """The Certificate whose Secret the Deployment mounts."""
    certificates = [doc for doc in docs if doc["kind"] == "Certificate"
                    and doc["spec"]["secretName"] in mounted_secrets(docs)]
    assert len(certificates) == 1, "one Certificate must make the mounted Secret"
    return certificates[0]


def test_cert_manager_certifies_the_service_names_into_the_mounted_secret(
        built: dict[str, list[Doc]]) -> None:
    docs = built["cert-manager"]
    certificate = serving_certificate(docs)
    assert certificate["spec"]["secretName"] == SECRET_NAME
    assert sorted(certificate["spec"]["dnsNames"]) == sorted(service_dns_names(NAME, NAMESPACE))
    assert "server auth" in certificate["spec"]["usages"]
    assert not certificate["spec"].get("isCA", False)
    assert certificate["spec"]["privateKey"]["rotationPolicy"] == "Always"
    service = the(docs, "Service")["metadata"]
    assert f"{service['name']}.{service['namespace']}.svc" in certificate["spec"]["dnsNames"]


def test_cert_manager_signs_with_a_self_signed_ca_of_its_own(
        built: dict[str, list[Doc]]) -> None:
    """Serving certificate <- CA Issuer <- CA Certificate <- self-signed Issuer, all here."""
    docs = built["cert-manager"]
    ref = serving_certificate(docs)["spec"]["issuerRef"]
    assert (ref["group"], ref["kind"]) == ("cert-manager.io", "Issuer")
    ca_issuer = the(docs, "Issuer", ref["name"])
    [ca_certificate] = [doc for doc in docs if doc["kind"] == "Certificate"
                        and doc["spec"]["secretName"] == ca_issuer["spec"]["ca"]["secretName"]]
    assert ca_certificate["spec"]["isCA"] is True
    root = the(docs, "Issuer", ca_certificate["spec"]["issuerRef"]["name"])
    assert root["spec"] == {"selfSigned": {}}
    # The CA outlives many serving certificates, so caBundle rarely changes.
    assert hours(ca_certificate["spec"]["duration"]) > 10 * hours(
        serving_certificate(docs)["spec"]["duration"])


def test_cert_manager_injects_the_ca_into_both_webhooks(built: dict[str, list[Doc]]) -> None:
    docs = built["cert-manager"]
    certificate = serving_certificate(docs)["metadata"]
    check_injected_webhooks(docs, {
        "cert-manager.io/inject-ca-from": f"{certificate['namespace']}/{certificate['name']}"})


def doc_block(heading: str) -> str:
    """The fenced block of docs/install.md whose first line is `# <heading>`."""
    blocks = re.findall(r"```(?:yaml|sh)\n(.*?)```", INSTALL_DOC.read_text(), re.DOTALL)
    found = [block for block in blocks if block.startswith(f"# {heading}\n")]
    assert len(found) == 1, f"docs/install.md: expected one block starting '# {heading}'"
    return found[0]


def user_overlay(tmp_path: Path, heading: str) -> Path:
    """A kustomization from docs/install.md, word for word, in `my-webhook/` beside a
    `migration-policy-webhook/` that is this repository, as the document lays them out
    (kustomize takes no absolute paths)."""
    (tmp_path / "migration-policy-webhook").symlink_to(REPO, target_is_directory=True)
    directory = tmp_path / "my-webhook"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(doc_block(heading))
    return directory


def test_cert_manager_with_a_cluster_issuer_as_install_md_says(tmp_path: Path) -> None:
    docs = kustomize(user_overlay(tmp_path, "my-webhook/kustomization.yaml (ClusterIssuer)"))
    for doc in docs:
        validate(doc, KUBERNETES_VERSIONS[-1])
    certificate = serving_certificate(docs)
    assert certificate["spec"]["issuerRef"] == {"group": "cert-manager.io",
                                                "kind": "ClusterIssuer", "name": "my-ca-issuer"}
    assert not [doc for doc in docs if doc["kind"] == "Issuer"], "the own CA is left out"
    assert [doc["metadata"]["name"] for doc in docs if doc["kind"] == "Certificate"] == [NAME]
    check_injected_webhooks(docs, {"cert-manager.io/inject-ca-from": f"{NAMESPACE}/{NAME}"})


def test_warn_mode_as_install_md_says(tmp_path: Path, built: dict[str, list[Doc]]) -> None:
    """The rollout overlay adds --enforcement=warn, which the real parser takes."""
    docs = kustomize(user_overlay(tmp_path, "my-webhook/kustomization.yaml (warn)"))
    [container] = pod_spec(docs)["containers"]
    [base_container] = pod_spec(built["cert-manager"])["containers"]
    assert container["args"] == [*base_container["args"], "--enforcement=warn"]
    assert build_parser().parse_args(container["args"]).enforcement == Enforcement.WARN
    assert build_parser().parse_args(base_container["args"]).enforcement == Enforcement.DENY


# OpenShift.


def test_openshift_fixes_no_user_or_group(built: dict[str, list[Doc]]) -> None:
    pod = pod_spec(built["openshift"])
    fixed = {"runAsUser", "runAsGroup", "fsGroup"}
    assert not fixed & set(pod["securityContext"])
    for container in pod["containers"]:
        assert not fixed & set(container.get("securityContext", {}))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # Nothing else of the pod differs from the base.
    base_pod = copy.deepcopy(pod_spec(built["base"]))
    for field in fixed:
        base_pod["securityContext"].pop(field)
    assert pod == base_pod


def test_openshift_service_ca_makes_the_mounted_secret(built: dict[str, list[Doc]]) -> None:
    docs = built["openshift"]
    annotations = the(docs, "Service")["metadata"]["annotations"]
    secret = annotations["service.beta.openshift.io/serving-cert-secret-name"]
    assert secret == SECRET_NAME
    assert secret in mounted_secrets(docs)


def test_openshift_service_ca_is_injected_into_both_webhooks(
        built: dict[str, list[Doc]]) -> None:
    check_injected_webhooks(built["openshift"],
                            {"service.beta.openshift.io/inject-cabundle": "true"})


def test_openshift_network_policy_lets_dns_reach_openshift_dns(
        built: dict[str, list[Doc]]) -> None:
    policy = the(built["openshift"], "NetworkPolicy")["spec"]
    [dns, api] = policy["egress"]
    [peer] = dns["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "openshift-dns"}
    assert {(port["protocol"], port["port"]) for port in dns["ports"]} == {
        ("UDP", 5353), ("TCP", 5353)}
    assert api == the(built["base"], "NetworkPolicy")["spec"]["egress"][1]


# Prometheus.


def test_service_monitor_scrapes_the_services_metrics_port(built: dict[str, list[Doc]]) -> None:
    docs = built["prometheus"]
    monitor = the(docs, "ServiceMonitor")["spec"]
    service = the(docs, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["namespace"] in monitor["namespaceSelector"]["matchNames"]
    [endpoint] = monitor["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics"
    assert (endpoint["scheme"], endpoint["path"]) == ("http", "/metrics")


def rule_file_groups() -> list[Doc]:
    return yaml.safe_load(RULE_FILE.read_text())["groups"]


def test_prometheus_rule_carries_the_rule_files_alerts(built: dict[str, list[Doc]]) -> None:
    rule = the(built["prometheus"], "PrometheusRule")
    assert rule["spec"]["groups"] == rule_file_groups()
    check_rule_groups("manifests/prometheus-rules.yaml", rule_file_groups())
    alerts = {r["alert"]: r for group in rule_file_groups() for r in group["rules"]}
    assert set(alerts) == set(ALERTS)
    for name, metric in ALERTS.items():
        assert metric in alerts[name]["expr"], name
        assert alerts[name]["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= set(alerts[name]["annotations"])


def test_the_rule_file_is_not_in_any_kustomization() -> None:
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        assert "prometheus-rules.yaml" not in yaml.safe_load(kustomization.read_text()).get(
            "resources", []), kustomization


def test_monitoring_goes_with_another_certificate_path(tmp_path: Path) -> None:
    """The component added to the cert-manager overlay, as docs/install.md shows."""
    docs = kustomize(user_overlay(tmp_path, "my-webhook/kustomization.yaml (monitoring)"))
    kinds = {doc["kind"] for doc in docs}
    assert {"Certificate", "ServiceMonitor", "PrometheusRule"} <= kinds
    assert the(docs, "PrometheusRule")["spec"]["groups"] == rule_file_groups()


def test_the_release_label_as_install_md_says(tmp_path: Path) -> None:
    docs = kustomize(user_overlay(tmp_path, "my-webhook/kustomization.yaml (release label)"))
    monitoring = [doc for doc in docs if doc["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(doc["kind"] for doc in monitoring) == ["PrometheusRule", "ServiceMonitor"]
    for doc in monitoring:
        assert doc["metadata"]["labels"] == {"app.kubernetes.io/name": NAME,
                                             "release": "kube-prometheus-stack"}


# The alerts, run by promtool: the one `make kube-binaries` builds from hack/promtool into the
# cache (tests/support/tools.py), not whichever is on PATH. Missing, the tests fail.


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool_binary()), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_promtool_accepts_the_rules_and_their_templates(
        built: dict[str, list[Doc]], tmp_path: Path) -> None:
    (tmp_path / "operator.yaml").write_text(yaml.safe_dump(
        {"groups": the(built["prometheus"], "PrometheusRule")["spec"]["groups"]}))
    checked = promtool("check", "rules", str(RULE_FILE), "operator.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(f"SUCCESS: {len(ALERTS)} rules found") == 2


def alert(labels: dict[str, str]) -> Doc:
    return {"exp_labels": {"severity": "warning", "namespace": NAMESPACE, "pod": "p",
                           **labels}}


PROMTOOL_TESTS = {
    "rule_files": ["rules.yaml"],
    "evaluation_interval": "1m",
    "tests": [{
        "interval": "1m",
        "input_series": [
            # A cache last confirmed at time 0, and one confirmed every minute.
            {"series": "migration_policy_webhook_cache_last_sync_timestamp_seconds"
                       f'{{namespace="{NAMESPACE}",pod="p",resource="namespaces"}}',
             "values": "0x30"},
            {"series": "migration_policy_webhook_cache_last_sync_timestamp_seconds"
                       f'{{namespace="{NAMESPACE}",pod="p",resource="migrationpolicies"}}',
             "values": "0+60x30"},
            # Certificates ending 10 and 30 days after time 0.
            {"series": "migration_policy_webhook_certificate_expiry_timestamp_seconds"
                       f'{{namespace="{NAMESPACE}",pod="p"}}', "values": "864000x30"},
            {"series": "migration_policy_webhook_certificate_expiry_timestamp_seconds"
                       f'{{namespace="{NAMESPACE}",pod="q"}}', "values": "2592000x30"},
            # One internal error at minute 3 on the mutating webhook; none on validating.
            {"series": "migration_policy_webhook_internal_errors_total"
                       f'{{namespace="{NAMESPACE}",pod="p",webhook="mutate"}}',
             "values": "0 0 0 1x27"},
            {"series": "migration_policy_webhook_internal_errors_total"
                       f'{{namespace="{NAMESPACE}",pod="p",webhook="validate"}}',
             "values": "0x30"},
            # Two policies shadowed from minute 11 on; active ones do not count.
            {"series": "migration_policy_webhook_policies"
                       f'{{namespace="{NAMESPACE}",pod="p",status="shadowed"}}',
             "values": "0x10 2x100"},
            {"series": "migration_policy_webhook_policies"
                       f'{{namespace="{NAMESPACE}",pod="p",status="active"}}',
             "values": "5x110"},
            # One disagreement at minute 11; agreements all along do not count.
            {"series": "migration_policy_webhook_stamp_checks_total"
                       f'{{namespace="{NAMESPACE}",pod="p",result="disagree"}}',
             "values": "0x10 1x100"},
            {"series": "migration_policy_webhook_stamp_checks_total"
                       f'{{namespace="{NAMESPACE}",pod="p",result="agree"}}',
             "values": "0+3x110"},
        ],
        "alert_rule_test": [
            # Stale from 300 s on, firing 2 minutes later.
            {"eval_time": "6m", "alertname": "MigrationPolicyWebhookCacheStale",
             "exp_alerts": []},
            {"eval_time": "8m", "alertname": "MigrationPolicyWebhookCacheStale",
             "exp_alerts": [alert({"resource": "namespaces"})]},
            {"eval_time": "9m", "alertname": "MigrationPolicyWebhookCertificateExpiring",
             "exp_alerts": []},
            {"eval_time": "11m", "alertname": "MigrationPolicyWebhookCertificateExpiring",
             "exp_alerts": [alert({})]},
            {"eval_time": "2m", "alertname": "MigrationPolicyWebhookInternalErrors",
             "exp_alerts": []},
            {"eval_time": "5m", "alertname": "MigrationPolicyWebhookInternalErrors",
             "exp_alerts": [alert({"webhook": "mutate"})]},
            {"eval_time": "15m", "alertname": "MigrationPolicyWebhookInternalErrors",
             "exp_alerts": []},
            # Shadowed for an hour (from 11m): firing at 71m, not before; per status.
            {"eval_time": "70m", "alertname": "MigrationPolicyWebhookPoliciesWithoutEffect",
             "exp_alerts": []},
            {"eval_time": "72m", "alertname": "MigrationPolicyWebhookPoliciesWithoutEffect",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": NAMESPACE,
                                            "status": "shadowed"}}]},
            # A disagreement in the last hour, for 15 minutes: firing from 26m to 71m.
            {"eval_time": "20m", "alertname": "MigrationPolicyWebhookStampsDisagree",
             "exp_alerts": []},
            {"eval_time": "30m", "alertname": "MigrationPolicyWebhookStampsDisagree",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "namespace": NAMESPACE}}]},
            {"eval_time": "80m", "alertname": "MigrationPolicyWebhookStampsDisagree",
             "exp_alerts": []},
        ],
    }],
}


def test_the_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    """promtool's rule unit tests on made-up series (annotations left out: their templates
    are checked above, their words are for people)."""
    groups = copy.deepcopy(rule_file_groups())
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(PROMTOOL_TESTS, sort_keys=False))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
