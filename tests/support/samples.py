"""What the bundled samples hold, counted from their files, so tests follow the samples as
they grow (samples/cluster/ gained a fifth policy in 4d72035)."""

import yaml

from tests.support.service import SAMPLE_CLUSTER


def sample_objects(kind: str) -> int:
    """How many objects of `kind` the sample cluster's manifests hold (a `List`'s items
    counted one by one)."""
    count = 0
    for path in SAMPLE_CLUSTER.glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if not document:
                continue
            items = document["items"] if document.get("kind") == "List" else [document]
            count += sum(1 for item in items if item.get("kind") == kind)
    return count
