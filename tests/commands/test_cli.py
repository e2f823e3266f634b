"""`lint` and `review` as a user runs them: output, field paths and exit codes; the
settings `serve` takes."""

import argparse
import json
from pathlib import Path

import pytest
import yaml

from app.commands.cli import build_parser, settings_from
from app.settings import Enforcement, LoggingFormat, LogLevel, Settings, parse_bind_address
from tests.support.service import SAMPLE_REVIEWS, SAMPLES, run_cli

POLICIES = SAMPLES / "policies"

VALID_POLICY = """\
apiVersion: migrations.kubevirt.io/v1alpha1
kind: MigrationPolicy
metadata:
  name: {name}
spec:
  bandwidthPerMigration: 64Mi
  selectors:
    virtualMachineInstanceSelector:
      workload-type: {workload}
"""

NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: hpc
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lint_three_mistakes():
    result = run_cli("lint", str(POLICIES / "three-mistakes.yaml"))
    assert result.returncode == 1
    assert "MigrationPolicy 'three-mistakes' is invalid:" in result.stdout
    problems = [line for line in result.stdout.splitlines() if line.startswith("  * ")]
    assert len(problems) == 3
    assert problems[0].startswith('  * spec.bandwidthPerMigration: "-1Gi" is negative')
    assert problems[1].startswith("  * spec.completionTimeoutPerGiB: ")
    assert 'the string "23"' in problems[1]
    assert problems[2].startswith("  * spec.selectors.namespaceSelector[hpc-workloads]: ")
    assert "the boolean true" in problems[2]


def test_lint_valid_example():
    result = run_cli("lint", str(POLICIES / "my-awesome-policy.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MigrationPolicy 'my-awesome-policy' is valid" in result.stdout
    assert '  Warning: spec.bandwidthPerMigration "217Ki" is below 1Mi' in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(("content", "fragment"), [
    (b"spec: [\n", "not valid YAML or JSON"),
    (b"a: b\n c: d\n", "not valid YAML or JSON"),
    (b'{"apiVersion": "v1", ', "not valid YAML or JSON"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "cannot read"),
    (b"just a sentence\n", "a manifest must be a mapping, got str"),
    (b"- a\n- b\n", "a manifest must be a mapping, got list"),
], ids=["unclosed", "bad-indent", "truncated-json", "binary", "scalar", "list"])
def test_lint_not_a_manifest(tmp_path, content, fragment):
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    result = run_cli("lint", str(path))
    assert result.returncode == 1
    assert str(path) in result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_lint_missing_file(tmp_path):
    result = run_cli("lint", str(tmp_path / "absent.yaml"))
    assert result.returncode == 1
    assert "absent.yaml: cannot read" in result.stderr


def test_lint_multi_document(tmp_path):
    text = "---\n".join([
        VALID_POLICY.format(name="web", workload="web"),
        (POLICIES / "three-mistakes.yaml").read_text(),
        NAMESPACE,
    ])
    path = write(tmp_path, "many.yaml", text)
    result = run_cli("lint", str(path))
    assert result.returncode == 1
    assert f"{path}#1: MigrationPolicy 'web' is valid" in result.stdout
    assert f"{path}#2: MigrationPolicy 'three-mistakes' is invalid:" in result.stdout
    assert f"{path}#3: skipped, kind Namespace is not MigrationPolicy" in result.stdout
    assert result.stdout.count("  * ") == 3


def test_lint_list_kind(tmp_path):
    items = [
        {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
         "metadata": {"name": "a"}, "spec": {"selectors": {"namespaceSelector": {"x": "y"}}}},
        {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
         "metadata": {"name": "b"}, "spec": {"selectors": {}, "allowPostCopy": "yes"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
    ]
    path = write(tmp_path, "list.json", json.dumps({"apiVersion": "v1", "kind": "List",
                                                    "items": items}))
    result = run_cli("lint", str(path))
    assert result.returncode == 1
    assert f"{path} items[0]: MigrationPolicy 'a' is valid" in result.stdout
    assert f"{path} items[1]: MigrationPolicy 'b' is invalid:" in result.stdout
    assert "  * spec.allowPostCopy: " in result.stdout
    assert f"{path} items[2]: skipped, kind ConfigMap is not MigrationPolicy" in result.stdout


def test_lint_only_other_kinds(tmp_path):
    path = write(tmp_path, "ns.yaml", NAMESPACE)
    result = run_cli("lint", str(path))
    assert result.returncode == 1  # a wrong path in CI must not pass green
    assert "skipped, kind Namespace" in result.stdout
    assert "no MigrationPolicy found" in result.stderr


def test_lint_several_files_exit_1_if_any_is_invalid(tmp_path):
    good = write(tmp_path, "good.yaml", VALID_POLICY.format(name="good", workload="db"))
    result = run_cli("lint", str(good), str(POLICIES / "three-mistakes.yaml"))
    assert result.returncode == 1
    assert "'good' is valid" in result.stdout
    assert "'three-mistakes' is invalid" in result.stdout


GATED = VALID_POLICY.format(name="gated", workload="db") + "  maxDowntimeMs: 300\n"


@pytest.mark.parametrize(("flags", "exit_code"), [
    ([], 1),
    (["--feature-gates", "MigrationDowntimeTuning"], 0),
    (["--feature-gates", "MigrationStallDetection"], 0),
    (["--feature-gates", "MigrationStallDetection,MigrationDowntimeTuning"], 0),
    (["--feature-gates", " MigrationStallDetection , "], 0),
], ids=["no-gates", "tuning", "stall", "both", "spaces"])
def test_lint_feature_gates(tmp_path, flags, exit_code):
    path = write(tmp_path, "gated.yaml", GATED)
    result = run_cli("lint", *flags, str(path))
    assert result.returncode == exit_code, result.stdout + result.stderr
    if exit_code:
        assert "  * spec.maxDowntimeMs: setting it to 300 needs the" in result.stdout


def test_lint_unknown_feature_gate(tmp_path):
    path = write(tmp_path, "gated.yaml", GATED)
    result = run_cli("lint", "--feature-gates", "MigrationStallDetectin", str(path))
    assert result.returncode == 2
    assert "unknown feature gate MigrationStallDetectin" in result.stderr


def test_lint_reads_yaml_as_kubectl_sends_it(tmp_path):
    """Unquoted keys such as `true:` or `1:` are strings once kubectl turns YAML into JSON."""
    text = VALID_POLICY.format(name="keys", workload="db") + (
        "    namespaceSelector:\n"
        "      true: \"yes\"\n"
        "      2024: \"\"\n"
        "  1: x\n"
        "  experimental:\n"
        "    compression: 2024-01-01\n"
    )
    path = write(tmp_path, "keys.yaml", text)
    result = run_cli("lint", str(path))
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("  * ")]
    assert problems == [
        '  * spec.1: unknown field "1": the fields of spec are allowAutoConverge, '
        "allowPostCopy, allowWorkloadDisruption, bandwidthPerMigration, "
        "completionTimeoutPerGiB, experimental, maxDowntimeMs, selectors",
        '  * spec.experimental.compression: "2024-01-01" is not supported: '
        'use "none" or "zstd"',
    ]


def review_json(stdout: str) -> dict:
    return json.loads(stdout.split("decoded patch:\n")[0])


@pytest.mark.parametrize("name", sorted(path.name for path in SAMPLE_REVIEWS.glob("policy-*.json")),
                         ids=lambda name: name.removesuffix(".json"))
def test_review_policy_samples(name):
    path = SAMPLE_REVIEWS / name
    result = run_cli("review", str(path))
    answer = review_json(result.stdout)
    request = json.loads(path.read_text())
    assert answer["apiVersion"] == request["apiVersion"]
    assert answer["response"]["uid"] == request["request"]["uid"]
    allowed = name == "policy-valid-example.json"
    assert answer["response"]["allowed"] is allowed
    assert result.returncode == (0 if allowed else 1)
    if not allowed:
        assert answer["response"]["status"]["code"] == 422
        assert answer["response"]["status"]["details"]["causes"]
    assert "decoded patch:" not in result.stdout


def test_review_with_feature_gates():
    path = SAMPLE_REVIEWS / "policy-maxdowntime-without-gate.json"
    result = run_cli("review", "--feature-gates", "MigrationDowntimeTuning", str(path))
    assert result.returncode == 0
    assert review_json(result.stdout)["response"]["allowed"] is True


def test_review_migration_prints_the_decoded_patch():
    result = run_cli("review", str(SAMPLE_REVIEWS / "migration-db-vmi.json"))
    assert result.returncode == 0, result.stderr
    before, patch_text = result.stdout.split("decoded patch:\n")
    answer = json.loads(before)
    assert answer["response"]["allowed"] is True
    assert answer["response"]["patchType"] == "JSONPatch"
    patch = json.loads(patch_text)
    assert isinstance(patch, list) and patch
    assert patch[0]["op"] == "add"
    assert patch[0]["path"] == "/metadata/annotations"
    assert "migrations.kubevirt.io/policy" in patch[0]["value"]


def test_review_migration_without_policy_has_no_patch():
    result = run_cli("review", str(SAMPLE_REVIEWS / "migration-missing-vmi.json"))
    assert result.returncode == 0
    answer = review_json(result.stdout)
    assert "patch" not in answer["response"]
    assert "decoded patch:" not in result.stdout
    assert answer["response"]["warnings"]


@pytest.mark.parametrize(("content", "fragment"), [
    ("spec: [\n", "not valid YAML or JSON"),
    ((POLICIES / "my-awesome-policy.yaml").read_text(), "expected kind AdmissionReview"),
    ((SAMPLE_REVIEWS / "migration-db-vmi.json").read_text() + "\n---\n{}\n",
     "expected one AdmissionReview, found 2 documents"),
    ("", "expected one AdmissionReview, found 0 documents"),
    ('{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
     "request.uid is missing"),
    ('{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": '
     '{"uid": "x", "operation": "CREATE", "resource": {"group": "migrations.kubevirt.io", '
     '"version": "v1alpha1", "resource": "migrationpolicies"}, '
     '"object": {"spec": {"bandwidthPerMigration": 99999999999999999999999}}}}',
     "cannot be sent as JSON"),
    ("a: &a [*a]\n", "cannot be sent as JSON"),
], ids=["not-yaml", "a-policy-not-a-review", "two-documents", "empty", "no-uid",
        "int-beyond-64-bit", "recursive-alias"])
def test_review_broken_file(tmp_path, content, fragment):
    path = write(tmp_path, "review.yaml", content)
    result = run_cli("review", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert fragment in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


MIGRATIONS = {"group": "kubevirt.io", "version": "v1",
              "resource": "virtualmachineinstancemigrations"}
POLICIES_RESOURCE = {"group": "migrations.kubevirt.io", "version": "v1alpha1",
                     "resource": "migrationpolicies"}


@pytest.mark.parametrize(("request_fields", "allowed", "fragment"), [
    ({"operation": "CREATE", "resource": POLICIES_RESOURCE},
     False, "request.object is missing"),
    ({"operation": "EXPLODE", "resource": POLICIES_RESOURCE, "object": {}},
     False, 'request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got "EXPLODE"'),
    ({"operation": "EXPLODE", "resource": MIGRATIONS, "object": {}},
     True, "no migration policy applied: the review is malformed: request.operation"),
], ids=["policy-without-object", "policy-bad-operation", "migration-bad-operation"])
def test_review_with_a_uid_is_answered_in_the_protocol(tmp_path, request_fields, allowed,
                                                       fragment):
    """As the server answers it: a denial for a policy, a warning for a migration."""
    review = {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
              "request": {"uid": "uid-1", **request_fields}}
    result = run_cli("review", str(write(tmp_path, "review.json", json.dumps(review))))
    assert result.returncode == (0 if allowed else 1), result.stderr
    answer = review_json(result.stdout)
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "uid-1"
    assert answer["response"]["allowed"] is allowed
    if allowed:
        assert answer["response"]["warnings"][0].startswith(fragment)
    else:
        assert answer["response"]["status"]["code"] == 400
        assert fragment in answer["response"]["status"]["message"]


def serve_flags() -> dict[str, argparse.Action]:
    """The `serve` parser's options by destination."""
    parser = build_parser()
    commands = next(action for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    return {action.dest: action for action in commands.choices["serve"]._actions
            if action.option_strings and action.dest != "help"}


def test_every_setting_is_a_serve_flag_with_the_settings_default():
    flags = serve_flags()
    assert set(Settings.model_fields) - set(flags) == {"kube_context"}  # the plugin's --context
    for name, action in flags.items():
        assert action.default == Settings.model_fields[name].default, name
    assert settings_from(build_parser().parse_args(["serve"])) == Settings()


def test_new_serve_flags_reach_the_settings():
    args = build_parser().parse_args([
        "serve", "--enforcement", "warn", "--health-probe-bind-address", ":8081",
        "--metrics-bind-address", "[::1]:8080", "--logging-format", "json",
        "--log-level", "debug", "--request-read-timeout", "2.5", "--keep-alive-timeout", "95",
        "--max-connections", "10", "--max-concurrent-requests", "3",
        "--shutdown-grace-period", "0", "--watch-idle-timeout", "30", "--max-staleness", "60",
        "--host", "::"])
    settings = settings_from(args)
    assert settings.enforcement is Enforcement.WARN
    assert settings.health_probe_address == ("", 8081)
    assert settings.metrics_address == ("::1", 8080)
    assert (settings.logging_format, settings.log_level) == (LoggingFormat.JSON, LogLevel.DEBUG)
    assert (settings.request_read_timeout, settings.keep_alive_timeout) == (2.5, 95.0)
    assert (settings.max_connections, settings.max_concurrent_requests) == (10, 3)
    assert (settings.shutdown_grace_period, settings.watch_idle_timeout,
            settings.max_staleness) == (0.0, 30.0, 60.0)
    assert settings.host == "::"


def test_defaults_of_the_contract():
    settings = Settings()
    assert settings.host == ""  # every address, IPv4 and IPv6
    assert (settings.health_probe_address, settings.metrics_address) == (None, None)
    assert settings.enforcement is Enforcement.DENY
    assert (settings.request_read_timeout, settings.keep_alive_timeout,
            settings.shutdown_grace_period) == (10.0, 120.0, 15.0)
    assert (settings.watch_idle_timeout, settings.max_staleness) == (90.0, 300.0)


@pytest.mark.parametrize(("address", "parsed"), [
    ("0", None), (":8081", ("", 8081)), ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("localhost:1", ("localhost", 1)), ("[::]:65535", ("::", 65535)),
])
def test_bind_addresses(address, parsed):
    assert parse_bind_address(address) == parsed


@pytest.mark.parametrize("address", [
    "8080", "", ":", ":0", ":65536", "::1:8080", "[::1]", "host:port", "a:b:80", " :80",
])
def test_bad_bind_addresses_say_what_is_accepted(address):
    with pytest.raises(ValueError, match=r"is not a bind address: use host:port, :port"):
        parse_bind_address(address)


def test_lint_for_programs_keeps_notes_off_stdout(tmp_path):
    text = "---\n".join([VALID_POLICY.format(name="web", workload="web"), NAMESPACE,
                         (POLICIES / "three-mistakes.yaml").read_text()])
    path = write(tmp_path, "many.yaml", text)
    result = run_cli("lint", "-o", "yaml", str(path))
    assert result.returncode == 1
    document = yaml.safe_load(result.stdout)
    assert (document["valid"], document["invalid"]) == (1, 1)
    assert [(entry["source"], entry["name"], entry["valid"]) for entry in document["policies"]] \
        == [(f"{path}#1", "web", True), (f"{path}#3", "three-mistakes", False)]
    assert len(document["policies"][1]["causes"]) == 3
    assert f"{path}#2: skipped, kind Namespace is not MigrationPolicy" in result.stderr


def test_the_readme_lists_every_serve_flag():
    readme = (SAMPLES.parent / "README.md").read_text()
    section = readme.split("## Flags of `serve`", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    documented = {flag for row in rows for flag in row.split("|")[1].replace("`", "").split(", ")}
    flags = {option for action in serve_flags().values() for option in action.option_strings}
    assert flags - {"--certs-dir"} == {flag.strip() for flag in documented}
