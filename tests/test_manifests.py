"""manifests/: valid Kubernetes objects (checked offline against the API's schemas with
kubernetes-validate), wired to what `serve` really listens on, as contract §7 asks."""

import base64
import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from conftest import REPO, SAMPLE_REVIEWS, run_cli

from app.certs_command import SECRET_NAME
from app.cli import build_parser
from app.webhook_config import NAME, webhook_configurations
from app.webhooks import MUTATE_PATH, VALIDATE_PATH

MANIFESTS = REPO / "manifests"
NAMESPACE = "migration-policy-webhook"
SERVICE_ACCOUNT = "migration-policy-webhook"
# The oldest Kubernetes the manifests target (CEL rules in the CRD are on by default from
# 1.25, GA in 1.29) and a recent one; kubernetes-validate ships both schemas.
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
KUSTOMIZED = ["namespace.yaml", "serviceaccount.yaml", "rbac.yaml", "service.yaml",
              "deployment.yaml", "pdb.yaml"]
LEFT_OUT = {
    "webhooks.yaml": "the caBundle comes from `certs`: apply DIR/webhooks.yaml",
    "crd.yaml": "only for clusters without KubeVirt",
}
RBAC = MANIFESTS / "rbac.yaml"
NO_RBAC = "manifests/rbac.yaml is not written yet (another engineer's part of issue 5)"

Doc = dict[str, Any]


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def one(name: str, kind: str) -> Doc:
    found = [doc for doc in documents(MANIFESTS / name) if doc["kind"] == kind]
    assert len(found) == 1, f"{name}: expected one {kind}, found {len(found)}"
    return found[0]


def manifest_files() -> list[Path]:
    return sorted(path for path in MANIFESTS.glob("*.yaml") if path.name != "kustomization.yaml")


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
    shipped = documents(MANIFESTS / "webhooks.yaml")
    assert shipped == webhook_configurations(NAME, NAMESPACE, "")
    assert blank_ca_bundles(documents(cluster_certs / "webhooks.yaml")) == shipped


def webhook(kind: str) -> Doc:
    hooks = one("webhooks.yaml", kind)["webhooks"]
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
        review = json.loads((SAMPLE_REVIEWS / sample).read_text())
        answer = client.post(path, json=review)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.json()["response"]["uid"] == review["request"]["uid"]
        assert answer.json()["response"]["allowed"] is True


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


def test_probes_are_https_on_the_serving_port() -> None:
    probes = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in probes.items():
        check = container()[probe]["httpGet"]
        assert check["path"] == path
        assert check["scheme"] == "HTTPS"
        assert service_port(check["port"]) == serve_args().port


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


def test_resources_are_requested_and_limited() -> None:
    resources = container()["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"]


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


def test_namespaced_objects_live_in_the_webhook_namespace() -> None:
    assert one("namespace.yaml", "Namespace")["metadata"]["name"] == NAMESPACE
    sa = one("serviceaccount.yaml", "ServiceAccount")["metadata"]
    assert (sa["name"], sa["namespace"]) == (SERVICE_ACCOUNT, NAMESPACE)
    for name in ("deployment.yaml", "service.yaml", "pdb.yaml"):
        for doc in documents(MANIFESTS / name):
            assert doc["metadata"]["namespace"] == NAMESPACE, name


def test_the_secret_certs_writes_is_the_one_the_deployment_mounts(cluster_certs: Path) -> None:
    secret = documents(cluster_certs / "secret.yaml")[0]
    assert secret["metadata"] == {"name": SECRET_NAME, "namespace": NAMESPACE}
    assert base64.b64decode(secret["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE")


# kustomization.yaml.


def kustomization() -> Doc:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())


def test_kustomization_lists_the_workload_and_leaves_out_what_certs_provides() -> None:
    resources = kustomization()["resources"]
    assert resources == KUSTOMIZED
    files = {path.name for path in manifest_files()}
    assert files - set(KUSTOMIZED) - {"rbac.yaml"} == set(LEFT_OUT)
    for name in KUSTOMIZED:
        if name != "rbac.yaml":
            assert (MANIFESTS / name).is_file(), name


def test_kustomization_sets_the_deployment_image() -> None:
    images = {image["name"] for image in kustomization()["images"]}
    assert container()["image"].split(":")[0] in images


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds(tmp_path: Path) -> None:
    if not RBAC.exists():
        # Build a copy without rbac.yaml, so the rest is still checked.
        shutil.copytree(MANIFESTS, tmp_path / "manifests")
        directory = tmp_path / "manifests"
        kustomize = kustomization()
        kustomize["resources"].remove("rbac.yaml")
        (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomize))
    else:
        directory = MANIFESTS
    built = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(built.stdout) if doc)
    expected = ["Deployment", "Namespace", "PodDisruptionBudget", "Service", "ServiceAccount"]
    if RBAC.exists():
        expected += ["ClusterRole", "ClusterRoleBinding"]
    assert kinds == sorted(expected)
    assert "ValidatingWebhookConfiguration" not in built.stdout


# RBAC (written by another engineer): no more than get/list/watch on three resources.


@pytest.mark.skipif(not RBAC.exists(), reason=NO_RBAC)
def test_rbac_grants_only_reading_the_three_resources() -> None:
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
                       ("kubevirt.io", "virtualmachineinstances"), ("", "namespaces")}


@pytest.mark.skipif(not RBAC.exists(), reason=NO_RBAC)
def test_rbac_binds_the_role_to_the_service_account() -> None:
    binding = one("rbac.yaml", "ClusterRoleBinding")
    assert binding["metadata"]["name"] == NAME
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": NAME}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                                    "namespace": NAMESPACE}]
