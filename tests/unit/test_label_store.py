"""What a direct GET found is remembered only while the watch has said nothing newer."""

from app.state.stores import LabelStore, namespaced_key

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
