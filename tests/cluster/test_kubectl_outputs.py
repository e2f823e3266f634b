"""What a user sees in kubectl, with kubectl and kube-apiserver of the same release and the
webhook registered as shipped: the README's and the install guide's outputs (every
`kubectl` example of the README's section, run as shown, from the repository, the impact
warning compared by its form), what the API server sends the webhook for a write (seen by a
recording webhook registered with the same rules), where an accepted policy is stored, and
the Status a client gets for a refusal.
"""

import base64
import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.control_plane import ControlPlane
from tests.support.kubectl_user import run_kubectl
from tests.support.recorders import RecordingWebhook, recording_policy_reviews
from tests.support.service import REPO, SAMPLES, RunningService

POLICIES = SAMPLES / "policies"
POLICY_FILE = "samples/policies/my-awesome-policy.yaml"
GROUP = "migrations.kubevirt.io"
WEBHOOK = "validate.migrationpolicies.migrations.kubevirt.io"
NAMES = ("two-mistakes", "three-mistakes", "my-awesome-policy")
"""The policies of the samples these tests write."""
BELOW_1MI = ('Warning: spec.bandwidthPerMigration "217Ki" is below 1Mi per second: '
             "KubeVirt raises it to 1Mi")
IMPACT = "Warning: impact: "
"""How the webhook's impact warning of a policy to be stored begins (--impact-warnings)."""
@pytest.fixture
def plane(webhook: RunningService, installed: ControlPlane) -> Iterator[ControlPlane]:
    """The control plane with the webhook registered and no policy stored; the sample
    policies a test wrote are deleted after it."""
    left = installed.kubectl("get", "migrationpolicies", "-o", "name").stdout
    assert left == "", f"policies left by an earlier test: {left}"
    yield installed
    installed.kubectl("delete", "migrationpolicies", *NAMES, "--ignore-not-found")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME: kubectl reads no kubeconfig but the one a test gives."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def recorder(plane: ControlPlane, tmp_path: Path) -> Iterator[RecordingWebhook]:
    with recording_policy_reviews(plane, tmp_path / "recorder") as recording:
        yield recording


def kubectl(plane: ControlPlane, home: Path, *args: str, merged: bool = False,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl as the admin, from the repository (paths print as the docs show them)."""
    return run_kubectl(plane, *args, home=home, env={"KUBECONFIG": str(plane.kubeconfig)},
                       merged=merged, stdin=stdin)


def causes(stderr: str) -> list[tuple[str, str]]:
    """kubectl's `* <field>: <message>` lines as (field, message)."""
    found = []
    for line in stderr.splitlines():
        if line.startswith("* "):
            field, message = line[2:].split(": ", 1)
            found.append((field, message))
    return found


def stored(plane: ControlPlane, name: str) -> dict[str, Any] | None:
    """The policy as the API server serves it (its preferred version), None if absent."""
    with plane.client() as client:
        answer = client.get(f"/apis/{GROUP}/v1alpha1/migrationpolicies/{name}")
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return dict(answer.json())


def in_etcd(plane: ControlPlane, name: str) -> dict[str, Any]:
    """The policy as etcd holds it (custom resources are stored as JSON), through etcd's
    JSON gateway."""
    key = f"/registry/{GROUP}/migrationpolicies/{name}".encode()
    answer = httpx.post(f"{plane.etcd_url}/v3/kv/range",
                        json={"key": base64.b64encode(key).decode()}, timeout=10)
    answer.raise_for_status()
    [kv] = answer.json()["kvs"]
    return dict(json.loads(base64.b64decode(kv["value"])))


# --- a refused policy ------------------------------------------------------------------------

def test_a_refused_apply_is_the_file_s_create_as_the_webhook_gets_it_and_stores_nothing(
        plane: ControlPlane, recorder: RecordingWebhook, home: Path) -> None:
    """kubectl prints each cause on its line and exits 1; the review is the CREATE of the
    file's version, as client-side apply sends it."""
    result = kubectl(plane, home, "apply", "-f", "samples/policies/two-mistakes.yaml")
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
    assert stored(plane, "two-mistakes") is None
    [request] = recorder.requests("two-mistakes")
    assert request["operation"] == "CREATE"
    assert request["kind"] == {"group": GROUP, "version": "v1alpha1", "kind": "MigrationPolicy"}
    assert request["object"]["spec"]["bandwidthPerMigration"] == "-1Gi"
    assert request["oldObject"] is None
    assert request["options"]["fieldManager"] == "kubectl-client-side-apply"


def test_type_mistakes_are_each_a_line_in_the_api_server_s_words_and_never_reach_the_webhook(
        plane: ControlPlane, recorder: RecordingWebhook, home: Path) -> None:
    """The CRD's schema refuses the string timeout and the boolean label value before any
    webhook is called, so the negative bandwidth (the webhook's to find) is not mentioned.
    (`lint` shows all three mistakes, offline.)"""
    result = kubectl(plane, home, "create", "-f", "samples/policies/three-mistakes.yaml")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == 'The MigrationPolicy "three-mistakes" is invalid: '
    found = dict(causes(result.stderr))  # the schema's errors come in no fixed order
    assert sorted(found) == ["<nil>", "spec.completionTimeoutPerGiB",
                             "spec.selectors.namespaceSelector.hpc-workloads"]
    assert found["spec.completionTimeoutPerGiB"].endswith('must be of type integer: "string"')
    assert found["spec.selectors.namespaceSelector.hpc-workloads"].endswith(
        'must be of type string: "boolean"')
    assert "some validation rules were not checked" in found["<nil>"]
    assert "-1Gi" not in result.stderr
    assert recorder.requests("three-mistakes") == []
    assert stored(plane, "three-mistakes") is None


# --- an accepted policy ----------------------------------------------------------------------

def test_an_accepted_apply_prints_created_and_the_warning_and_is_stored_in_v1alpha1(
        plane: ControlPlane, recorder: RecordingWebhook, home: Path) -> None:
    """The file says v1beta1 and the webhook's rules name it: the review is in v1beta1;
    etcd holds the storage version, v1alpha1."""
    result = kubectl(plane, home, "apply", "-f", "samples/policies/my-awesome-policy.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "migrationpolicy.migrations.kubevirt.io/my-awesome-policy created\n"
    below, impact = result.stderr.splitlines()
    assert below == BELOW_1MI
    # its figures depend on the VMIs the session's cluster holds: tests/unit/test_impact.py
    assert impact.startswith(IMPACT)
    served = stored(plane, "my-awesome-policy")
    assert served is not None
    assert served["spec"]["bandwidthPerMigration"] == "217Ki"
    assert "kubectl.kubernetes.io/last-applied-configuration" in served["metadata"]["annotations"]
    kept = in_etcd(plane, "my-awesome-policy")
    assert kept["apiVersion"] == f"{GROUP}/v1alpha1"
    assert kept["metadata"]["uid"] == served["metadata"]["uid"]
    [request] = recorder.requests("my-awesome-policy")
    assert request["kind"]["version"] == request["requestKind"]["version"] == "v1beta1"
    assert request["object"]["apiVersion"] == f"{GROUP}/v1beta1"
    assert request["object"]["metadata"]["uid"] == served["metadata"]["uid"]
    listed = kubectl(plane, home, "get", "migrationpolicies", "-o", "name")
    assert listed.stdout == "migrationpolicy.migrations.kubevirt.io/my-awesome-policy\n"


# --- the documentation shows this output ----------------------------------------------------

FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def section(markdown: str, heading: str) -> str:
    """From `heading` to the next heading of the same level or higher."""
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


def as_shown(text: str) -> list[str]:
    """Lines as the docs show them: trailing blanks aside (kubectl ends its first line of a
    refusal with "invalid: "), an impact warning by its form (its figures are the cluster's)."""
    return [IMPACT + "..." if line.startswith(IMPACT) else line.rstrip()
            for line in text.splitlines()]


README_EXAMPLES = examples(section((REPO / "README.md").read_text(), "## What kubectl shows"))


def test_the_readme_s_kubectl_examples_are_the_two_sample_applies() -> None:
    """A new example in the section is run by the test below too; this says which there are."""
    assert [command for command, _ in README_EXAMPLES] == [
        "kubectl apply -f samples/policies/two-mistakes.yaml",
        "kubectl apply -f samples/policies/my-awesome-policy.yaml"]


@pytest.mark.parametrize(("command", "output"), [
    pytest.param(command, output, id=command.rsplit("/", 1)[-1])
    for command, output in README_EXAMPLES])
def test_a_kubectl_example_of_the_readme_prints_what_it_shows(
        plane: ControlPlane, home: Path, command: str, output: str) -> None:
    """Run as shown, from the repository, stderr and stdout as a terminal interleaves them."""
    result = kubectl(plane, home, *shlex.split(command)[1:], merged=True)
    assert as_shown(result.stdout) == as_shown(output)


def install_try_it() -> tuple[str, list[tuple[str, str]]]:
    """docs/install.md's "Try it" section, and its fenced blocks as (language, code)."""
    text = section((REPO / "docs" / "install.md").read_text(),
                   "## 5. Register the webhooks, last")
    return text, [(match.group(1), match.group(2)) for match in FENCE.finditer(text)]


def test_the_install_guide_shows_what_kubectl_prints_for_the_refused_policy(
        plane: ControlPlane, home: Path) -> None:
    """Its second apply, run as shown (the manifest on stdin, the sample's): its block is
    what kubectl prints."""
    _, blocks = install_try_it()
    [heredoc] = [code for language, code in blocks if language == "sh" and "<<'EOF'" in code]
    rest = heredoc.split("\n", 1)[1]
    assert rest.startswith("kubectl apply -f - <<'EOF'\n")
    manifest = rest.split("<<'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    assert yaml.safe_load(manifest) == yaml.safe_load((POLICIES / "two-mistakes.yaml").read_text())
    [shown] = [code for language, code in blocks if language == "" and "is invalid" in code]
    refused = kubectl(plane, home, "apply", "-f", "-", stdin=manifest + "\n")
    assert refused.returncode == 1
    assert as_shown(refused.stderr) == as_shown(shown)


def test_the_install_guide_says_what_kubectl_prints_for_the_accepted_policy(
        plane: ControlPlane, home: Path) -> None:
    """Its first apply: every line kubectl prints is quoted in the text that follows."""
    text, blocks = install_try_it()
    [heredoc] = [code for language, code in blocks if language == "sh" and "<<'EOF'" in code]
    first = heredoc.split("\n", 1)[0]
    assert first.split("#")[0].split() == ["kubectl", "apply", "-f", POLICY_FILE]
    accepted = kubectl(plane, home, "apply", "-f", POLICY_FILE)
    assert accepted.returncode == 0, accepted.stderr
    prose = " ".join(text.split())
    for line in (accepted.stderr + accepted.stdout).splitlines():
        quoted = f"`{IMPACT}" if line.startswith(IMPACT) else f"`{line}`"
        assert quoted in prose, line


# --- what travels in the Status -------------------------------------------------------------

def test_the_status_of_a_refusal_carries_each_cause_s_type(plane: ControlPlane) -> None:
    """A client other than kubectl gets the causes one by one, typed, and the webhook named."""
    policy = yaml.safe_load((POLICIES / "two-mistakes.yaml").read_text())
    with plane.client() as client:
        answer = client.post(f"/apis/{GROUP}/v1alpha1/migrationpolicies", json=policy)
    assert answer.status_code == 422
    body = answer.json()
    assert body["reason"] == "Invalid"
    assert body["message"].startswith(f'admission webhook "{WEBHOOK}" denied the request: ')
    assert [(cause.get("reason"), cause.get("field")) for cause in body["details"]["causes"]] == [
        ("FieldValueInvalid", "spec.bandwidthPerMigration"),
        ("FieldValueInvalid", "spec.selectors.namespaceSelector")]
