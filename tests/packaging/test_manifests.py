"""manifests/base and manifests/webhooks: valid Kubernetes objects (checked offline against
the API's schemas with kubernetes-validate), wired to what `serve` really listens on, as
contract §7 asks. The overlays are tests/packaging/test_overlays.py's."""

import base64
import copy
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from app.admission.configurations import NAME, webhook_configurations
from app.admission.handlers import MUTATE_PATH, VALIDATE_PATH
from app.commands.certs import SECRET_NAME
from app.commands.cli import build_parser
from app.settings import parse_bind_address
from tests.support.reviews import post_review, sample_review
from tests.support.service import (
    REPO,
    free_port,
    run_cli,
    start_service,
    stop_service,
)
from tests.support.tools import kustomize

MANIFESTS = REPO / "manifests"
BASE = MANIFESTS / "base"
WEBHOOKS = MANIFESTS / "webhooks" / "webhooks.yaml"
NAMESPACE = "migration-policy-webhook"
SERVICE_ACCOUNT = "migration-policy-webhook"
IGNORE_LABEL = "migration-policy-webhook.kubevirt.io/ignore"
# The oldest Kubernetes the manifests target (CEL rules in the CRD are on by default from
# 1.25, GA in 1.29) and a recent one; kubernetes-validate ships both schemas.
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
KUSTOMIZED = ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "priorityclass.yaml",
              "service.yaml", "deployment.yaml", "pdb.yaml", "networkpolicy.yaml"]
# Beside manifests/kustomization.yaml and out of it, with why.
LEFT_OUT = {
    "webhooks": "the caBundle comes from `certs`: apply DIR/webhooks.yaml",
    "crd.yaml": "only for clusters without KubeVirt",
    "prometheus-rules.yaml": "a Prometheus rule file, not a Kubernetes object",
    "overlays": "the other certificate paths, and monitoring",
    "components": "the monitoring component the overlays share",
}

Doc = dict[str, Any]


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def one(name: str | Path, kind: str) -> Doc:
    """The one object of `kind` in a file of manifests/base, or in the file `name`."""
    path = name if isinstance(name, Path) else BASE / name
    found = [doc for doc in documents(path) if doc["kind"] == kind]
    assert len(found) == 1, f"{name}: expected one {kind}, found {len(found)}"
    return found[0]


def manifest_files() -> list[Path]:
    """Every Kubernetes object file of the base, the webhook configurations and the CRD."""
    base = [path for path in BASE.glob("*.yaml") if path.name != "kustomization.yaml"]
    return sorted([*base, WEBHOOKS, MANIFESTS / "crd.yaml"])


def deployment() -> Doc:
    return one("deployment.yaml", "Deployment")


def container() -> Doc:
    containers = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def serve_args() -> Any:
    """The container's args parsed by the real command line parser."""
    args = build_parser().parse_args(container()["args"])
    assert args.command == "serve"
    return args


def bound_port(address: str) -> int:
    """The port of a bind address flag's value; it must not be off."""
    parsed = parse_bind_address(address)
    assert parsed is not None, f"{address!r} opens no port"
    return parsed[1]


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a metav1.LabelSelector matches `labels`, as the API server evaluates it."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for term in selector.get("matchExpressions", []):
        key, operator, values = term["key"], term["operator"], term.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


# Valid Kubernetes objects, offline.


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda path: path.name)
def test_every_manifest_is_a_valid_kubernetes_object(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_is_strict_and_uses_the_bundled_schemas() -> None:
    versions = kubernetes_validate.utils.all_versions()
    for version in KUBERNETES_VERSIONS:
        assert version.rsplit(".", 1)[0] in {v.rsplit(".", 1)[0] for v in versions}
    typo = copy.deepcopy(deployment())
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(typo, KUBERNETES_VERSIONS[0], strict=True)
    wrong_type = copy.deepcopy(deployment())
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSIONS[0], strict=True)


@pytest.fixture(scope="module")
def cluster_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cluster") / "certs"
    result = run_cli("certs", "--service", NAME, "--namespace", NAMESPACE, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_what_certs_writes_is_valid_kubernetes(cluster_certs: Path, version: str) -> None:
    for name in ("secret.yaml", "webhooks.yaml"):
        for doc in documents(cluster_certs / name):
            kubernetes_validate.validate(doc, version, strict=True)


# The webhook configurations.


def blank_ca_bundles(docs: list[Doc]) -> list[Doc]:
    docs = copy.deepcopy(docs)
    for doc in docs:
        for webhook in doc["webhooks"]:
            webhook["clientConfig"]["caBundle"] = ""
    return docs


def test_webhooks_yaml_is_what_certs_writes_apart_from_the_ca(cluster_certs: Path) -> None:
    shipped = documents(WEBHOOKS)
    assert shipped == webhook_configurations(NAME, NAMESPACE, "")
    assert blank_ca_bundles(documents(cluster_certs / "webhooks.yaml")) == shipped


def webhook(kind: str) -> Doc:
    hooks = one(WEBHOOKS, kind)["webhooks"]
    assert len(hooks) == 1
    return hooks[0]


def test_validating_webhook_fails_closed() -> None:
    hook = webhook("ValidatingWebhookConfiguration")
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["service"]["path"] == VALIDATE_PATH
    assert hook["rules"] == [{
        "apiGroups": ["migrations.kubevirt.io"], "apiVersions": ["v1alpha1", "v1beta1"],
        "operations": ["CREATE", "UPDATE"], "resources": ["migrationpolicies"],
        "scope": "Cluster",
    }]


def test_mutating_webhook_fails_open_and_is_reinvoked_if_needed() -> None:
    hook = webhook("MutatingWebhookConfiguration")
    assert hook["failurePolicy"] == "Ignore"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["clientConfig"]["service"]["path"] == MUTATE_PATH
    assert hook["rules"] == [{
        "apiGroups": ["kubevirt.io"], "apiVersions": ["v1"], "operations": ["CREATE"],
        "resources": ["virtualmachineinstancemigrations"], "scope": "Namespaced",
    }]


def test_mutating_webhook_skips_namespaces_labelled_ignore() -> None:
    selector = webhook("MutatingWebhookConfiguration")["namespaceSelector"]
    assert not selects(selector, {IGNORE_LABEL: "true", "env": "prod"})
    for labels in ({}, {"env": "prod"}, {IGNORE_LABEL: "false"}, {IGNORE_LABEL: ""}):
        assert selects(selector, labels), labels
    # MigrationPolicies are cluster scoped: a namespaceSelector would not apply to them.
    assert "namespaceSelector" not in webhook("ValidatingWebhookConfiguration")


@pytest.mark.parametrize("kind", ["ValidatingWebhookConfiguration",
                                  "MutatingWebhookConfiguration"])
def test_both_webhooks_have_no_side_effects_and_short_timeouts(kind: str) -> None:
    hook = webhook(kind)
    assert hook["sideEffects"] == "None"
    assert 1 <= hook["timeoutSeconds"] <= 10
    assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]


def service_port(port_name_or_number: int | str) -> int:
    """A Service targetPort resolved against the Deployment's container ports."""
    if isinstance(port_name_or_number, int):
        return port_name_or_number
    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    assert port_name_or_number in ports, f"no container port named {port_name_or_number}"
    return ports[port_name_or_number]


@pytest.mark.parametrize("kind", ["ValidatingWebhookConfiguration",
                                  "MutatingWebhookConfiguration"])
def test_webhooks_call_the_service_on_the_port_serve_listens_on(kind: str) -> None:
    target = webhook(kind)["clientConfig"]["service"]
    service = one("service.yaml", "Service")
    assert target["name"] == service["metadata"]["name"]
    assert target["namespace"] == service["metadata"]["namespace"] == NAMESPACE
    [port] = [p for p in service["spec"]["ports"] if p["port"] == target["port"]]
    assert target["port"] == 443
    container_port = service_port(port["targetPort"])
    assert container_port == serve_args().port == 8443
    assert container_port == build_parser().parse_args(["serve"]).port


def test_the_webhook_paths_are_served(client: httpx.Client) -> None:
    """The real service answers an AdmissionReview on each configured path."""
    for kind, sample in (("ValidatingWebhookConfiguration", "policy-valid-example.json"),
                         ("MutatingWebhookConfiguration", "migration-db-vmi.json")):
        path = webhook(kind)["clientConfig"]["service"]["path"]
        response = post_review(client, path, sample_review(sample), allowed=True)
        # The valid policy is admitted as it is; the migration is stamped with its policy.
        assert ("patch" in response) == (kind == "MutatingWebhookConfiguration"), response
        assert "status" not in response, response


# The Deployment.


def test_deployment_runs_two_replicas_or_more_as_the_service_account() -> None:
    spec = deployment()["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == SERVICE_ACCOUNT
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_deployment_serves_the_cluster_state_with_the_mounted_secret() -> None:
    args = serve_args()
    assert args.state == "kube"
    assert "command" not in container(), "the image's ENTRYPOINT is the console script"
    pod = deployment()["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == SECRET_NAME
    [mount] = [m for m in container()["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    mount_path = Path(mount["mountPath"])
    assert args.tls_cert_file == mount_path / "tls.crt"
    assert args.tls_private_key_file == mount_path / "tls.key"
    assert args.client_ca_file is None, "kubelet's probes present no client certificate"


PROBES = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}


def test_probes_are_plain_http_on_the_health_port() -> None:
    health = bound_port(serve_args().health_probe_bind_address)
    assert health == 8081
    for probe, path in PROBES.items():
        check = container()[probe]["httpGet"]
        assert check["path"] == path
        assert check.get("scheme", "HTTP") == "HTTP"
        assert service_port(check["port"]) == health


def test_service_exposes_the_metrics_port_by_name() -> None:
    metrics = bound_port(serve_args().metrics_bind_address)
    assert metrics == 8080
    ports = {port["name"]: port for port in one("service.yaml", "Service")["spec"]["ports"]}
    assert set(ports) == {"https", "metrics"}
    assert service_port(ports["metrics"]["targetPort"]) == metrics
    container_ports = [port["containerPort"] for port in container()["ports"]]
    assert len(container_ports) == len(set(container_ports)) == 3


def test_the_probe_and_metrics_ports_answer_plain_http(tmp_path: Path) -> None:
    """The Deployment's bind address flags, on free local ports, given to the real service:
    kubelet's probe paths and /metrics answer over plain HTTP, apart from the webhook port."""
    health, metrics = free_port(), free_port()
    args = [f"--health-probe-bind-address=127.0.0.1:{health}",
            f"--metrics-bind-address=127.0.0.1:{metrics}"]
    assert [arg.split("=")[0] for arg in args] == [
        arg.split("=")[0] for arg in container()["args"] if "bind-address" in arg]
    running = start_service(tmp_path, args)
    try:
        with httpx.Client(timeout=10) as plain:
            for path in PROBES.values():
                answer = plain.get(f"http://127.0.0.1:{health}{path}")
                assert answer.status_code == 200, (path, answer.text)
            scraped = plain.get(f"http://127.0.0.1:{metrics}/metrics")
            assert scraped.status_code == 200
            assert "migration_policy_webhook_" in scraped.text
    finally:
        stop_service(running)


def test_pod_is_locked_down() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert security.get("privileged", False) is False
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    [secret_volume] = [v for v in pod["volumes"] if "secret" in v]
    assert secret_volume["secret"]["defaultMode"] == 0o440


def test_resources_are_requested_and_memory_is_limited_but_not_cpu() -> None:
    """A CPU limit throttles answers the API server waits for; memory is bounded."""
    resources = container()["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"memory"}


def test_pods_stop_gracefully_within_the_grace_period() -> None:
    """preStop pause (endpoints drop the pod), then SIGTERM and --shutdown-grace-period, all
    inside terminationGracePeriodSeconds, which kubelet counts from the preStop's start."""
    args = serve_args()
    assert "--shutdown-grace-period=15" in container()["args"]
    assert args.shutdown_grace_period == 15 == build_parser().parse_args(
        ["serve"]).shutdown_grace_period
    pre_stop = container()["lifecycle"]["preStop"]
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    pause = int(command[1])
    assert 1 <= pause <= 15
    grace = deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pause + args.shutdown_grace_period


def test_pods_run_at_the_projects_own_high_priority() -> None:
    priority = one("priorityclass.yaml", "PriorityClass")
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == priority["metadata"]["name"] == NAME
    # The highest a non-system class may have; system-cluster-critical stays above.
    assert 1_000_000 <= priority["value"] <= 1_000_000_000
    assert priority["globalDefault"] is False


def test_replicas_spread_over_nodes() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    keys = {constraint["topologyKey"] for constraint in pod["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys
    selector = deployment()["spec"]["selector"]["matchLabels"]
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == selector
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


# Service, PodDisruptionBudget, namespace.


def test_service_selects_the_deployment_pods() -> None:
    service = one("service.yaml", "Service")
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_pdb_keeps_one_pod() -> None:
    pdb = one("pdb.yaml", "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment()["spec"]["selector"][
        "matchLabels"]


def network_policy() -> Doc:
    return one("networkpolicy.yaml", "NetworkPolicy")


def rule_ports(rule: Doc) -> set[tuple[str, int]]:
    """(protocol, container port) a NetworkPolicy rule opens, named ports resolved."""
    return {(port.get("protocol", "TCP"), service_port(port["port"])) for port in rule["ports"]}


def test_network_policy_isolates_the_pods_both_ways() -> None:
    spec = network_policy()["spec"]
    assert spec["podSelector"] == deployment()["spec"]["selector"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]


def test_network_policy_opens_the_webhook_port_and_metrics_to_monitoring_only() -> None:
    args = serve_args()
    webhook_port, metrics = args.port, bound_port(args.metrics_bind_address)
    opened: dict[int, list[Doc]] = {}
    for rule in network_policy()["spec"]["ingress"]:
        for _protocol, port in rule_ports(rule):
            opened.setdefault(port, []).append(rule)
    # The health port needs no rule: traffic from the pod's node (kubelet) is always allowed.
    assert set(opened) == {webhook_port, metrics}
    # The API server is no pod a selector can name: the webhook port is open to any source.
    assert [rule.get("from") for rule in opened[webhook_port]] == [None]
    [metrics_rule] = opened[metrics]
    [peer] = metrics_rule["from"]
    assert set(peer) == {"namespaceSelector"}
    assert selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": "monitoring"})
    assert not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": "default"})


def test_network_policy_lets_out_dns_and_the_api_server_only() -> None:
    [dns, api] = network_policy()["spec"]["egress"]
    assert {(port["protocol"], port["port"]) for port in dns["ports"]} == {
        ("UDP", 53), ("TCP", 53)}
    [peer] = dns["to"]
    assert selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": "kube-system"})
    assert selects(peer["podSelector"], {"k8s-app": "kube-dns"})
    assert {(port["protocol"], port["port"]) for port in api["ports"]} == {
        ("TCP", 443), ("TCP", 6443)}


def test_namespaced_objects_live_in_the_webhook_namespace() -> None:
    assert one("namespace.yaml", "Namespace")["metadata"]["name"] == NAMESPACE
    sa = one("serviceaccount.yaml", "ServiceAccount")["metadata"]
    assert (sa["name"], sa["namespace"]) == (SERVICE_ACCOUNT, NAMESPACE)
    for name in ("deployment.yaml", "service.yaml", "pdb.yaml", "networkpolicy.yaml"):
        for doc in documents(BASE / name):
            assert doc["metadata"]["namespace"] == NAMESPACE, name


def test_the_secret_certs_writes_is_the_one_the_deployment_mounts(cluster_certs: Path) -> None:
    secret = documents(cluster_certs / "secret.yaml")[0]
    assert secret["metadata"] == {"name": SECRET_NAME, "namespace": NAMESPACE}
    assert base64.b64decode(secret["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE")


# kustomization.yaml.


def kustomization(directory: Path) -> Doc:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def test_kustomization_installs_the_base_and_leaves_out_what_certs_provides() -> None:
    assert kustomization(MANIFESTS)["resources"] == ["base"]
    beside = {path.name for path in MANIFESTS.iterdir()} - {"kustomization.yaml", "base"}
    assert beside == set(LEFT_OUT)
    assert kustomization(BASE)["resources"] == KUSTOMIZED
    assert {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"} == set(
        KUSTOMIZED)


def test_kustomization_sets_the_deployment_image() -> None:
    images = {image["name"] for image in kustomization(BASE)["images"]}
    assert container()["image"].split(":")[0] in images


def test_kustomize_builds_the_workload_without_the_webhook_configurations() -> None:
    built = kustomize(MANIFESTS)
    kinds = sorted(doc["kind"] for doc in built)
    assert kinds == sorted(["ClusterRole", "ClusterRoleBinding", "Deployment", "Namespace",
                            "NetworkPolicy", "PodDisruptionBudget", "PriorityClass", "Service",
                            "ServiceAccount"])
    assert built == kustomize(BASE)
    [deployed] = [doc for doc in built if doc["kind"] == "Deployment"]
    assert deployed["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "migration-policy-webhook:0.1.0")


# RBAC: no more than get/list/watch on three resources, and list/watch on migrations.


def test_rbac_grants_only_reading_the_four_resources() -> None:
    role = one("rbac.yaml", "ClusterRole")
    assert role["metadata"]["name"] == NAME
    granted = set()
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
        assert "*" not in rule.get("apiGroups", []) + rule.get("resources", [])
        assert not rule.get("nonResourceURLs"), rule
        assert not rule.get("resourceNames"), rule
        granted |= {(group, resource) for group in rule["apiGroups"]
                    for resource in rule["resources"]}
    assert granted == {("migrations.kubevirt.io", "migrationpolicies"),
                       ("kubevirt.io", "virtualmachineinstances"), ("", "namespaces"),
                       ("kubevirt.io", "virtualmachineinstancemigrations")}
    migrations = [rule for rule in role["rules"]
                  if "virtualmachineinstancemigrations" in rule["resources"]]
    assert [sorted(rule["verbs"]) for rule in migrations] == [["list", "watch"]]


def test_rbac_binds_the_role_to_the_service_account() -> None:
    binding = one("rbac.yaml", "ClusterRoleBinding")
    assert binding["metadata"]["name"] == NAME
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": NAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                                    "namespace": NAMESPACE}]
