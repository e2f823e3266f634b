"""What a direct GET found is remembered only while the watch has said nothing newer; a
snapshot is whole while the watch writes."""

import itertools
import sys
import threading

import pytest

from app.state.stores import (
    SNAPSHOT_ATTEMPTS,
    SNAPSHOT_CHUNK,
    LabelStore,
    Object,
    namespaced_key,
)

VM = {"metadata": {"namespace": "hpc", "name": "x", "labels": {"app": "db"}}}
KEY = ("hpc", "x")


def test_a_lookup_is_remembered_until_the_watch_speaks() -> None:
    store = LabelStore(namespaced_key)
    token = store.begin_lookup(KEY)
    store.remember(KEY, {"app": "db"}, token)
    assert store.get(KEY) == {"app": "db"}
    store.apply("DELETED", VM)
    assert store.get(KEY) is None


def test_a_deletion_during_the_lookup_wins_over_its_answer() -> None:
    store = LabelStore(namespaced_key)
    store.apply("ADDED", VM)
    token = store.begin_lookup(KEY)
    store.apply("DELETED", VM)  # the watch delivers the deletion before the GET returns
    store.remember(KEY, {"app": "db"}, token)
    assert store.get(KEY) is None


def test_a_relist_during_the_lookup_wins_too() -> None:
    store = LabelStore(namespaced_key)
    token = store.begin_lookup(KEY)
    store.replace([])
    store.remember(KEY, {"app": "db"}, token)
    assert store.get(KEY) is None


def test_an_ended_lookup_leaves_no_mark() -> None:
    store = LabelStore(namespaced_key)
    token = store.begin_lookup(KEY)
    store.end_lookup(KEY, token)
    store.remember(KEY, {"app": "db"}, token)  # too late: the lookup was over
    assert store.get(KEY) is None


def test_a_snapshot_taken_while_objects_come_and_go_holds_every_object_that_stayed() -> None:
    """The snapshot copies a chunk at a time; a writer adding and removing other objects
    meanwhile must neither make it raise nor make it miss an object (a copy that went on
    through a changed dict would)."""
    store = LabelStore(namespaced_key)
    stayed = [{"metadata": {"namespace": f"ns-{i % 50}", "name": f"vm-{i}",
                            "labels": {"n": str(i)}}} for i in range(3 * SNAPSHOT_CHUNK)]
    store.replace(stayed)
    stop = threading.Event()

    def churn() -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            passing = {"metadata": {"namespace": "churn", "name": f"p-{i % 7}"}}
            store.apply("ADDED" if i % 2 else "DELETED", passing)

    writer = threading.Thread(target=churn)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the threads take turns between chunks as often as can be
    writer.start()
    try:
        for _ in range(50):
            copied = store.snapshot()
            assert all(copied[namespaced_key(obj)] == obj["metadata"]["labels"]
                       for obj in stayed)
            assert {key for key in copied if key[0] != "churn"} == {
                namespaced_key(obj) for obj in stayed}
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(interval)


@pytest.mark.parametrize("write", ["an object comes or goes", "an object is relabelled"])
def test_a_snapshot_interrupted_at_every_attempt_is_copied_whole_in_one_step(write: str) -> None:
    """A writer that changes the store during every chunked copy (here, from the copy's
    own hashing of a key, so at a known point and without threads): after
    SNAPSHOT_ATTEMPTS tries the labels are copied in one step, every object in it."""
    writes = 0
    interrupting = False

    class Key(tuple[str, str]):
        def __hash__(self) -> int:
            nonlocal writes, interrupting
            if interrupting:
                interrupting = False  # the writer's own key is hashed too
                writes += 1
                if write == "an object comes or goes":
                    churn: Object = {"metadata": {"namespace": "churn", "name": "p"}}
                    store.apply("ADDED" if writes % 2 else "DELETED", churn)
                else:
                    store.apply("MODIFIED", {"metadata": {"namespace": "hpc", "name": "vm-0",
                                                          "labels": {"n": str(writes)}}})
                interrupting = True
            return tuple.__hash__(self)

    store = LabelStore(lambda obj: Key(namespaced_key(obj)))
    stayed = [{"metadata": {"namespace": "hpc", "name": f"vm-{i}", "labels": {"n": str(i)}}}
              for i in range(1, 10)]
    store.replace(stayed)
    store.apply("ADDED", {"metadata": {"namespace": "hpc", "name": "vm-0", "labels": {}}})
    interrupting = True
    copied = store.snapshot()
    interrupting = False
    assert writes >= SNAPSHOT_ATTEMPTS  # every chunked attempt was interrupted
    assert all(copied[Key(namespaced_key(obj))] == obj["metadata"]["labels"] for obj in stayed)
    assert copied == store.snapshot()
