"""What a user sees in kubectl, proven with the real kubectl.

Each test starts the API fixture (`KubeApiServer` with `AdmissionFront`, tests/support/kubeapi/:
discovery, OpenAPI, create/apply/get/delete of MigrationPolicies, and the validating webhook
called over TLS as the API server calls it), registers the ValidatingWebhookConfiguration the
project ships (`app/admission/configurations.py`) pointed at the real service, started as in
a cluster with `--state kube` against the same fixture, and runs `kubectl` with a kubeconfig for it.
Assertions are on what kubectl prints and its exit code, and on what reached the webhook.
"""

import base64
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.admission.configurations import webhook_configurations
from app.serving.certificates import KeyType, make_ca
from tests.support.crd_schema import schema_errors, schema_validator
from tests.support.kubeapi import MIGRATION_POLICIES, KubeApiServer
from tests.support.kubeapi.admission import AdmissionFront, Webhook
from tests.support.service import REPO, SAMPLES, RunningService, start_service, stop_service

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not on PATH: this test runs the real kubectl")

POLICIES = SAMPLES / "policies"
WEBHOOK = "validate.migrationpolicies.migrations.kubevirt.io"
VALIDATE = "/validate-migrationpolicy"
GROUP = "migrations.kubevirt.io"
AWESOME = "samples/policies/my-awesome-policy.yaml"
BELOW_1MI = ('Warning: spec.bandwidthPerMigration "217Ki" is below 1Mi per second: '
             "KubeVirt raises it to 1Mi")


def validating_configuration(ca_pem: bytes) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration `certs` writes, trusting `ca_pem`."""
    validating, _ = webhook_configurations("migration-policy-webhook",
                                           "migration-policy-webhook",
                                           base64.b64encode(ca_pem).decode())
    return validating


@dataclass
class Cluster:
    api: KubeApiServer
    front: AdmissionFront
    kubeconfig: Path
    home: Path
    service: RunningService | None = None

    def kubectl(self, *args: str, merged: bool = False) -> subprocess.CompletedProcess[str]:
        """Run kubectl in the repository; `merged` gives stderr and stdout in one stream,
        in the order a terminal shows them."""
        assert KUBECTL is not None
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), "LANG": "C.UTF-8"}
        command = [KUBECTL, "--kubeconfig", str(self.kubeconfig),
                   "--cache-dir", str(self.home / "cache"), *args]
        return subprocess.run(command, cwd=REPO, env=env, text=True, timeout=60,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT if merged else subprocess.PIPE)

    def stored(self, name: str) -> dict[str, Any] | None:
        return self.api.get(MIGRATION_POLICIES, name)

    def requests(self) -> list[dict[str, Any]]:
        """The `request` of every AdmissionReview sent to the webhook, in order."""
        return [call.review["request"] for call in self.front.reviews(WEBHOOK)]


def make_cluster(tmp: Path, base_url: str, ca_pem: bytes) -> Cluster:
    api = KubeApiServer(tmp / "api").start()
    hooks = Webhook.from_configuration(validating_configuration(ca_pem), base_url)
    front = AdmissionFront(api, hooks)
    home = tmp / "home"
    home.mkdir()
    return Cluster(api, front, api.write_kubeconfig(tmp / "kubeconfig"), home)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The fixture API server and the webhook service watching it, as installed."""
    if KUBECTL is None:
        pytest.skip("kubectl is not on PATH: this test runs the real kubectl")
    api = KubeApiServer(tmp_path / "api").start()
    (tmp_path / "service").mkdir()
    try:
        service = start_service(tmp_path / "service", [
            "--state", "kube", "--kubeconfig",
            str(api.write_kubeconfig(tmp_path / "service-kubeconfig"))])
    except BaseException:
        api.stop()
        raise
    hooks = Webhook.from_configuration(validating_configuration(service.ca_file.read_bytes()),
                                       service.base_url)
    home = tmp_path / "home"
    home.mkdir()
    running = Cluster(api, AdmissionFront(api, hooks),
                      api.write_kubeconfig(tmp_path / "kubeconfig"), home, service)
    yield running
    stop_service(service)
    api.stop()


def edited(tmp: Path, sample: str, old: str, new: str) -> str:
    """The path of a copy of a sample policy with one edit."""
    text = (POLICIES / sample).read_text()
    assert old in text
    path = tmp / f"{uuid.uuid4().hex[:8]}-{sample}"
    path.write_text(text.replace(old, new))
    return str(path)


def causes(stderr: str) -> list[tuple[str, str]]:
    """kubectl's `* <field>: <message>` lines as (field, message)."""
    return [tuple(line[2:].split(": ", 1)) for line in stderr.splitlines()  # type: ignore[misc]
            if line.startswith("* ")]


# --- a refused policy ------------------------------------------------------------------------

def test_a_refused_apply_names_every_field_and_value_and_exits_1(cluster: Cluster) -> None:
    result = cluster.kubectl("apply", "-f", "samples/policies/two-mistakes.yaml")
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    # kubectl's own words for a 422 Invalid with causes; the webhook's message is not shown.
    assert lines[0] == 'The MigrationPolicy "two-mistakes" is invalid: '
    [bandwidth, label_key] = causes(result.stderr)
    assert bandwidth == ("spec.bandwidthPerMigration",
                         '"-1Gi" is negative: use 0 (unlimited) or a larger quantity, such as 64Mi')
    assert label_key[0] == "spec.selectors.namespaceSelector"
    assert label_key[1].startswith('label key "hpc workloads": ')
    assert len(lines) == 3
    assert "denied the request" not in result.stderr
    assert cluster.stored("two-mistakes") is None
    [request] = cluster.requests()
    assert request["operation"] == "CREATE"
    assert request["name"] == "two-mistakes"
    assert request["kind"] == {"group": GROUP, "version": "v1alpha1", "kind": "MigrationPolicy"}
    assert request["object"]["spec"]["bandwidthPerMigration"] == "-1Gi"
    assert request["oldObject"] is None
    assert request["options"]["fieldManager"] == "kubectl-client-side-apply"


def test_every_mistake_of_three_is_a_line_of_kubectl_create(cluster: Cluster) -> None:
    """The webhook's causes as kubectl prints them. (On a real cluster the CRD's schema
    refuses the string timeout and the boolean label value first, in the API server's words:
    tests/unit/test_crd_schema.py; the README's example is one whose mistakes reach the webhook.)"""
    result = cluster.kubectl("create", "-f", "samples/policies/three-mistakes.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == 'The MigrationPolicy "three-mistakes" is invalid: '
    found = causes(result.stderr)
    assert [field for field, _ in found] == [
        "spec.bandwidthPerMigration", "spec.completionTimeoutPerGiB",
        "spec.selectors.namespaceSelector[hpc-workloads]"]
    assert '"-1Gi"' in found[0][1]
    assert 'the string "23"' in found[1][1]
    assert "the boolean true" in found[2][1]
    assert cluster.stored("three-mistakes") is None


def test_the_refused_example_passes_the_crd_schema_so_the_webhook_is_what_refuses_it() -> None:
    """So the README's example shows what a real cluster shows, not the schema's message."""
    validator = schema_validator()
    policy = yaml.safe_load((POLICIES / "two-mistakes.yaml").read_text())
    assert schema_errors(validator, policy) == []
    three = yaml.safe_load((POLICIES / "three-mistakes.yaml").read_text())
    assert schema_errors(validator, three) != []


# --- an accepted policy, then changes to it -------------------------------------------------

def test_an_accepted_apply_prints_created_and_the_webhook_warning(cluster: Cluster) -> None:
    result = cluster.kubectl("apply", "-f", AWESOME)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "migrationpolicy.migrations.kubevirt.io/my-awesome-policy created\n"
    assert result.stderr == BELOW_1MI + "\n"
    stored = cluster.stored("my-awesome-policy")
    assert stored is not None
    assert stored["apiVersion"] == f"{GROUP}/v1alpha1"  # the storage version
    assert stored["spec"]["bandwidthPerMigration"] == "217Ki"
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
    [request] = cluster.requests()
    # The file says v1beta1 and the webhook's rules name it: the review is in v1beta1.
    assert request["kind"]["version"] == request["requestKind"]["version"] == "v1beta1"
    assert request["object"]["apiVersion"] == f"{GROUP}/v1beta1"
    assert request["object"]["metadata"]["uid"] == stored["metadata"]["uid"]
    listed = cluster.kubectl("get", "migrationpolicies", "-o", "name")
    assert listed.stdout == "migrationpolicy.migrations.kubevirt.io/my-awesome-policy\n"


# --- the webhook out of reach ---------------------------------------------------------------

@needs_kubectl
def test_a_webhook_out_of_reach_fails_the_write_closed(tmp_path: Path) -> None:
    """failurePolicy Fail: no service listening, the API server refuses the write."""
    # The port stays bound, not listening, for the whole test: connections to it are
    # refused, and nothing else (the API fixture's own port 0) can be given it meanwhile.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        ca_pem = make_ca("a CA", days=1, key_type=KeyType.ECDSA).certificate_pem()
        cluster = make_cluster(tmp_path, f"https://127.0.0.1:{port}", ca_pem)
        try:
            result = cluster.kubectl("apply", "-f", AWESOME)
        finally:
            cluster.api.stop()
    assert result.returncode == 1
    url = f"https://127.0.0.1:{port}{VALIDATE}?timeout=5s"
    assert result.stderr == (
        'Error from server (InternalError): error when creating '
        '"samples/policies/my-awesome-policy.yaml": Internal error occurred: failed calling '
        f'webhook "{WEBHOOK}": failed to call webhook: Post "{url}": dial tcp '
        f"127.0.0.1:{port}: connect: connection refused\n")
    assert cluster.stored("my-awesome-policy") is None


# --- the documentation shows this output ----------------------------------------------------

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def section(markdown: str, heading: str) -> str:
    start = markdown.index(f"\n{heading}\n")
    level = heading.split(" ")[0]
    following = re.search(rf"\n#{{1,{len(level)}}} ", markdown[start + len(heading) + 2:])
    end = start + len(heading) + 2 + following.start() if following else len(markdown)
    return markdown[start:end]


def examples(text: str) -> list[tuple[str, str]]:
    """Each `kubectl ...` sh block with the plain block that follows it: (command, output)."""
    blocks = [(match.group(1), match.group(2)) for match in FENCE.finditer(text)]
    found = []
    for (language, code), (next_language, output) in pairwise(blocks):
        if language == "sh" and code.startswith("kubectl ") and next_language == "":
            found.append((code.strip(), output))
    return found


def test_the_readme_shows_what_kubectl_prints(cluster: Cluster) -> None:
    shown = examples(section((REPO / "README.md").read_text(), "## What kubectl shows"))
    assert [command for command, _ in shown] == [
        "kubectl apply -f samples/policies/two-mistakes.yaml",
        "kubectl apply -f samples/policies/my-awesome-policy.yaml"]
    for command, output in shown:
        result = cluster.kubectl(*shlex.split(command)[1:], merged=True)
        # Line by line, trailing blanks aside (kubectl ends its first line with "invalid: ").
        assert [line.rstrip() for line in result.stdout.splitlines()] == \
            [line.rstrip() for line in output.splitlines()], command


def test_the_install_guide_shows_what_kubectl_prints(cluster: Cluster) -> None:
    """docs/install.md's rejected apply: its manifest is the sample, its output kubectl's."""
    text = section((REPO / "docs" / "install.md").read_text(),
                   "## 5. Register the webhooks, last")
    blocks = [(match.group(1), match.group(2)) for match in FENCE.finditer(text)]
    [heredoc] = [code for language, code in blocks if language == "sh" and "<<'EOF'" in code]
    manifest = heredoc.split("<<'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    assert yaml.safe_load(manifest) == yaml.safe_load((POLICIES / "two-mistakes.yaml").read_text())
    [shown] = [code for language, code in blocks if language == "" and "is invalid" in code]
    result = cluster.kubectl("apply", "-f", "samples/policies/two-mistakes.yaml")
    assert [line.rstrip() for line in result.stderr.splitlines()] == \
        [line.rstrip() for line in shown.splitlines()]


# --- what travels in the Status -------------------------------------------------------------

def test_cause_types_reach_the_client(cluster: Cluster) -> None:
    policy = yaml.safe_load((POLICIES / "two-mistakes.yaml").read_text())
    with httpx.Client(verify=ssl.create_default_context(cafile=cluster.api.ca_file), headers={
            "Authorization": f"Bearer {cluster.api.token}"}) as client:
        answer = client.post(f"{cluster.api.url}/apis/{GROUP}/v1alpha1/migrationpolicies",
                             json=policy)
    assert answer.status_code == 422
    body = answer.json()
    assert body["reason"] == "Invalid"
    assert body["message"].startswith(f'admission webhook "{WEBHOOK}" denied the request: ')
    assert [cause.get("reason") for cause in body["details"]["causes"]] == [
        "FieldValueInvalid", "FieldValueInvalid"]
