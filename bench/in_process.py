"""The request path in process, no HTTP: µs per call, best of a few rounds (timeit style).

For the lead: where a request's time goes before the server and the network add theirs.
Runs alone (`python bench/in_process.py`) or as the first section of `bench/run.py`.
"""

import argparse
import copy
import gc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cluster
import orjson

from app.admission.handlers import MigrationStamper, PolicyValidator
from app.admission.review import encode_review, parse_review
from app.policy.impact import ClusterView
from app.policy.model import policy_from_object
from app.policy.precedence import PolicyIndex
from app.policy.validation import validate_policy
from app.settings import KUBE_STATE, Settings

T = TypeVar("T")


@dataclass
class MemoryState:
    """What the handlers read of a ClusterState, over generated objects (labels only, as the
    live state keeps them); always ready and fresh."""

    policies: PolicyIndex
    vmis: dict[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    namespaces: dict[str, Mapping[str, str]] = field(default_factory=dict)

    def is_ready(self) -> bool:
        return True

    def vmi_labels(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.vmis.get((namespace, name))

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        return self.namespaces.get(name)

    def staleness_warning(self) -> str | None:
        return None

    def all_vmi_labels(self) -> dict[tuple[str, str], Mapping[str, str]]:
        return dict(self.vmis)

    def all_namespace_labels(self) -> Mapping[str, Mapping[str, str]]:
        return self.namespaces


def memory_state(settings: Settings, *, policies: int, vmis: int,
                 namespaces: int) -> MemoryState:
    index = PolicyIndex(settings.precedence, (policy_from_object(cluster.policy(i, namespaces))
                                              for i in range(policies)))
    state = MemoryState(index)
    for i in range(namespaces):
        metadata = cluster.namespace(i)["metadata"]
        state.namespaces[metadata["name"]] = metadata["labels"]
    for i in range(vmis):
        metadata = cluster.vmi(i, namespaces)["metadata"]
        state.vmis[(metadata["namespace"], metadata["name"])] = metadata["labels"]
    return state


def best_us(call: Callable[[], object], number: int, repeat: int = 3) -> float:
    """µs per call, the best of `repeat` rounds of `number` calls."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - started) / number)
    return best * 1e6


def cycling(items: list[T]) -> Callable[[], T]:
    """A callable returning the items in turn (so a lookup is not always the same VMI)."""
    position = [0]

    def next_item() -> T:
        position[0] = (position[0] + 1) % len(items)
        return items[position[0]]
    return next_item


def rows(*, number: int, policies: tuple[int, ...], vmis: int,
         namespaces: int) -> list[tuple[str, float]]:
    """(what, µs per call) for validation, then the mutate path at each policy count."""
    settings = Settings(state=KUBE_STATE)
    policy_body = cluster.policy_reviews(1)[0]
    policy_request = parse_review(policy_body)
    reference = policy_request.object
    assert reference is not None
    small = memory_state(settings, policies=policies[0], vmis=0, namespaces=namespaces)
    view = ClusterView.build(small.vmis.items(), small.namespaces)
    validator = PolicyValidator(settings, small, lambda: view)
    mistakes = five_mistakes(reference)
    found: list[tuple[str, float]] = [
        ("orjson.loads of the policy review", best_us(lambda: orjson.loads(policy_body), number)),
        ("parse_review of the policy review", best_us(lambda: parse_review(policy_body), number)),
        ("validate_policy, the reference policy", best_us(lambda: validate_policy(reference),
                                                          number)),
        ("validate_policy, the same with five mistakes",
         best_us(lambda: validate_policy(mistakes), number)),
        ("validate: parse + PolicyValidator + encode",
         best_us(lambda: _answer(validator, policy_body), number)),
    ]
    bodies = cluster.migration_reviews(1000, vmis, namespaces)
    for count in policies:
        state = memory_state(settings, policies=count, vmis=vmis, namespaces=namespaces)
        gc.collect()
        gc.freeze()  # the generated state stays out of the cyclic collector's way
        found += _mutate_rows(state, MigrationStamper(settings, state), bodies, count, number)
        del state
        gc.unfreeze()
    return found


def five_mistakes(policy: dict[str, Any]) -> dict[str, Any]:
    """The reference policy with five mistakes: a denial and its messages cost more."""
    wrong = copy.deepcopy(policy)
    wrong["metadata"]["name"] = "Five_Mistakes"
    spec = wrong["spec"]
    spec["bandwidthPerMigration"] = "-1Gi"
    spec["completionTimeoutPerGiB"] = "23"
    spec["bandwithPerMigration"] = "1Gi"
    spec["selectors"]["namespaceSelector"]["hpc-workloads"] = True
    assert len(validate_policy(wrong).causes) == 5, validate_policy(wrong).causes
    return wrong


def _mutate_rows(state: MemoryState, stamper: MigrationStamper, bodies: list[bytes],
                 count: int, number: int) -> list[tuple[str, float]]:
    requests = [parse_review(body) for body in bodies]
    labels = [(state.vmis[(r.namespace, r.object["spec"]["vmiName"])],
               state.namespaces[r.namespace]) for r in requests if r.object is not None]
    lookup, request, body = cycling(labels), cycling(requests), cycling(bodies)
    return [
        (f"PolicyIndex.winner, {count:,} policies",
         best_us(lambda: state.policies.winner(*lookup()), number)),
        (f"MigrationStamper, {count:,} policies", best_us(lambda: stamper(request()), number)),
        (f"mutate: parse + MigrationStamper + encode, {count:,} policies",
         best_us(lambda: _answer(stamper, body()), number)),
    ]


def _answer(handler: PolicyValidator | MigrationStamper, body: bytes) -> bytes:
    request = parse_review(body)
    return encode_review(request.api_version, request.uid, handler(request))


def print_rows(found: list[tuple[str, float]]) -> None:
    width = max(len(what) for what, _ in found)
    print(f"{'in process (best of 3)':<{width}}  µs per call")
    for what, us in found:
        print(f"{what:<{width}}  {us:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=5000, help="calls per round")
    parser.add_argument("--vmis", type=int, default=100_000)
    parser.add_argument("--namespaces", type=int, default=10_000)
    args = parser.parse_args()
    print_rows(rows(number=args.number, policies=(10, 10_000, 100_000), vmis=args.vmis,
                    namespaces=args.namespaces))


if __name__ == "__main__":
    main()
