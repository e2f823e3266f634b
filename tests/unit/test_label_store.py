"""What a direct GET found is remembered only while the watch has said nothing newer; a
snapshot is whole while the watch writes."""

import itertools
import sys
import threading

from app.state.stores import SNAPSHOT_CHUNK, LabelStore, namespaced_key

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
