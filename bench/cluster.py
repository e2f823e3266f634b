"""The benchmark's cluster and reviews, generated the same way on every run (fixed seeds).

Namespaces `ns-00000`... carry `env` (three in four are `prod`), `team` and their name label.
VMIs `vm-000000`... carry labels that many policies use (`app`, `tier`, `os`, `release`,
`zone`) besides KubeVirt's own. Policy 0 is a cluster default for `env: prod`; every other
policy also selects `env: prod` in its namespaceSelector, plus labels of its own, so all of
them are candidates for every VMI in a prod namespace: the hard case for a lookup that
scores every candidate. Selectors are all different, as KubeVirt's user guide asks.

The reviews are what the API server sends: about 2.4 KB, with userInfo, options,
requestKind/requestResource, and an object with managedFields and kubectl's
last-applied-configuration annotation.
"""

import copy
import json
import random
from pathlib import Path
from typing import Any

import orjson

Object = dict[str, Any]

REPO = Path(__file__).resolve().parent.parent
REFERENCE_REVIEW = REPO / "samples" / "reviews" / "policy-valid-example.json"

ENVS = ("prod", "prod", "prod", "staging")
TIERS = ("gold", "silver", "bronze")
OSES = ("linux", "windows")
TEAMS = 200
APPS = 1000
RELEASES = 10
ZONES = 10
CREATED = "2026-11-30T09:12:44Z"


def namespace_name(index: int) -> str:
    return f"ns-{index:05}"


def namespace(index: int) -> Object:
    name = namespace_name(index)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "creationTimestamp": CREATED,
        "labels": {"kubernetes.io/metadata.name": name, "env": ENVS[index % len(ENVS)],
                   "team": f"team-{index % TEAMS}"}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def vmi_name(index: int) -> str:
    return f"vm-{index:06}"


def vmi_namespace(index: int, namespaces: int) -> str:
    return namespace_name(index % namespaces)


def vmi(index: int, namespaces: int) -> Object:
    name = vmi_name(index)
    node = f"node-{index % 100:03}"
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance", "metadata": {
        "name": name, "namespace": vmi_namespace(index, namespaces),
        "creationTimestamp": CREATED,
        "labels": {"app": f"app-{index % APPS}", "tier": TIERS[index % 3],
                   "os": OSES[index % 2], "release": f"r-{index % RELEASES}",
                   "zone": f"zone-{index // 7 % ZONES}", "kubevirt.io/domain": name,
                   "kubevirt.io/nodeName": node, "vm.kubevirt.io/name": name},
        "annotations": {"kubevirt.io/latest-observed-api-version": "v1",
                        "kubevirt.io/storage-observed-api-version": "v1"},
        "ownerReferences": [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                             "name": name, "uid": f"00000000-0000-4000-8000-{index:012}",
                             "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"domain": {"cpu": {"cores": 2}, "memory": {"guest": "4Gi"}}},
        "status": {"phase": "Running", "nodeName": node}}


def policy_selectors(index: int, namespaces: int) -> Object:
    """Policy `index`'s selectors: `env: prod` always, then one of four shapes."""
    if index == 0:
        return {"namespaceSelector": {"env": "prod"}}
    shape, number = index % 4, index // 4
    if shape == 0:  # an application, in one team's namespaces
        return {"namespaceSelector": {"env": "prod", "team": f"team-{number % TEAMS}"},
                "virtualMachineInstanceSelector": {"app": f"app-{number // TEAMS % APPS}"}}
    if shape == 1:  # an application's tier in one release
        return {"namespaceSelector": {"env": "prod"},
                "virtualMachineInstanceSelector": {
                    "app": f"app-{number % APPS}", "tier": TIERS[number // APPS % 3],
                    "release": f"r-{number // (APPS * 3)}"}}
    if shape == 2:  # one namespace, one application
        return {"namespaceSelector": {"env": "prod", "kubernetes.io/metadata.name":
                                      namespace_name(number % namespaces)},
                "virtualMachineInstanceSelector": {"app": f"app-{number // namespaces}"}}
    return {"namespaceSelector": {"env": "prod", "team": f"team-{number % TEAMS}"},  # broad
            "virtualMachineInstanceSelector": {
                "os": OSES[number // TEAMS % 2], "tier": TIERS[number // (TEAMS * 2) % 3],
                "zone": f"zone-{number // (TEAMS * 6)}"}}


def policy(index: int, namespaces: int) -> Object:
    spec: Object = {"allowAutoConverge": index % 2 == 0,
                    "bandwidthPerMigration": f"{64 << index % 4}Mi",
                    "completionTimeoutPerGiB": 150 + index % 700,
                    "selectors": policy_selectors(index, namespaces)}
    if index % 3 == 0:
        spec["allowPostCopy"] = index % 2 == 1
    name = "prod-default" if index == 0 else f"policy-{index:06}"
    return {"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
            "metadata": {"name": name, "creationTimestamp": CREATED}, "spec": spec}


def _user_info(rng: random.Random) -> Object:
    return {
        "username": "oidc:ops-engineer@example.com",
        "uid": f"5f1a7c1e-0d4b-4c53-9e7a-{rng.randrange(1 << 48):012x}",
        "groups": ["oidc:platform-operators", "oidc:virtualization-admins",
                   "system:authenticated"],
        "extra": {"authentication.kubernetes.io/credential-id": [
            f"JTI={rng.randrange(1 << 64):016x}-{rng.randrange(1 << 64):016x}"],
            "scopes.authorization.openshift.io": ["user:full"]},
    }


def _applied(obj: Object, *, manager: str, fields: Object) -> Object:
    """`obj` as `kubectl apply` sends it: last-applied annotation and managedFields."""
    applied = copy.deepcopy(obj)
    metadata = applied["metadata"]
    last = json.dumps(obj, separators=(",", ":")) + "\n"
    metadata.setdefault("annotations", {})[
        "kubectl.kubernetes.io/last-applied-configuration"] = last
    metadata["creationTimestamp"] = None
    metadata["managedFields"] = [{
        "manager": manager, "operation": "Update", "apiVersion": obj["apiVersion"],
        "time": CREATED, "fieldsType": "FieldsV1", "fieldsV1": fields}]
    return applied


def _review(uid: str, kind: Object, resource: Object, name: str, namespace: str | None,
            obj: Object, rng: random.Random) -> Object:
    request: Object = {
        "uid": uid, "kind": kind, "resource": resource, "requestKind": kind,
        "requestResource": resource, "name": name}
    if namespace is not None:
        request["namespace"] = namespace
    request.update({
        "operation": "CREATE", "userInfo": _user_info(rng), "object": obj, "oldObject": None,
        "dryRun": False, "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1",
                                     "fieldManager": "kubectl-client-side-apply",
                                     "fieldValidation": "Strict"}})
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}


def policy_reviews(count: int) -> list[bytes]:
    """The reference text's example policy, created with kubectl apply, `count` uids."""
    reference = json.loads(REFERENCE_REVIEW.read_text())["request"]
    rng = random.Random(11)
    obj = reference["object"]
    fields = {"f:metadata": {"f:annotations": {
        ".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
        "f:spec": {".": {}, "f:allowAutoConverge": {}, "f:allowPostCopy": {},
                   "f:bandwidthPerMigration": {}, "f:completionTimeoutPerGiB": {},
                   "f:selectors": {".": {}, "f:namespaceSelector": {".": {},
                                   "f:hpc-workloads": {}, "f:xyz-workloads-type": {}},
                                   "f:virtualMachineInstanceSelector": {
                                       ".": {}, "f:operating-system": {},
                                       "f:workload-type": {}}}}}
    applied = _applied(obj, manager="kubectl-client-side-apply", fields=fields)
    return [orjson.dumps(_review(f"7d3c9a52-6f0e-4b8a-a1d2-{uid:012x}", reference["kind"],
                                 reference["resource"], reference["name"], None, applied, rng))
            for uid in range(count)]


MIGRATION_KIND = {"group": "kubevirt.io", "version": "v1",
                  "kind": "VirtualMachineInstanceMigration"}
MIGRATION_RESOURCE = {"group": "kubevirt.io", "version": "v1",
                      "resource": "virtualmachineinstancemigrations"}
MIGRATION_FIELDS = {"f:metadata": {
    "f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {},
                      "f:ops.example.com/reason": {}},
    "f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}, "f:maintenance-window": {}}},
    "f:spec": {".": {}, "f:vmiName": {}}}


def migration_reviews(count: int, vmis: int, namespaces: int) -> list[bytes]:
    """Migrations of random VMIs in prod namespaces (so a policy applies to each)."""
    rng = random.Random(7)
    bodies = []
    while len(bodies) < count:
        index = rng.randrange(vmis)
        ns = vmi_namespace(index, namespaces)
        if namespace(index % namespaces)["metadata"]["labels"]["env"] != "prod":
            continue
        name = f"migrate-{vmi_name(index)}-{rng.randrange(1 << 20):05x}"
        obj = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
               "metadata": {"name": name, "namespace": ns, "labels": {
                   "app.kubernetes.io/managed-by": "node-drain-runbook",
                   "maintenance-window": "2026-12-02-night"}, "annotations": {
                   "ops.example.com/reason": f"node-{index % 100:03} drained for a kernel "
                   "update: move its VMIs before the reboot (change CHG-2026-12-02-0042)"}},
               "spec": {"vmiName": vmi_name(index)}}
        applied = _applied(obj, manager="kubectl-client-side-apply", fields=MIGRATION_FIELDS)
        uid = f"c2b5e7f0-3a9d-4e61-8f27-{len(bodies):012x}"
        bodies.append(orjson.dumps(_review(uid, MIGRATION_KIND, MIGRATION_RESOURCE, name, ns,
                                           applied, rng)))
    return bodies
