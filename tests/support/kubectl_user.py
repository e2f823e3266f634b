"""kubectl of the control plane's release run as a user runs it (tests/cluster/): from the
repository (so relative paths print as the README shows them), with the test's own HOME
and kubeconfig only (never the machine's ~/.kube/config), the project's console scripts
first on the PATH (where kubectl finds the plugin `kubectl-migration_policy`).
"""

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from tests.support import tools
from tests.support.control_plane import ControlPlane, kubeconfig_text


def run_kubectl(plane: ControlPlane, *args: str, home: Path,
                env: Mapping[str, str] | None = None, merged: bool = False,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl `args` with HOME `home` and no KUBECONFIG unless `env` gives one; `merged`
    gives stderr and stdout in one stream, in the order a terminal shows them
    (tests/support/tools.py: run_kubectl)."""
    return tools.run_kubectl(*args, home=home, kubectl=plane.bin["kubectl"], env=env,
                             merged=merged, stdin=stdin)


def admin_kubeconfig(plane: ControlPlane, path: Path,
                     contexts: Sequence[tuple[str, str | None]] = (("test", None),),
                     ) -> Path:
    """A kubeconfig for the control plane as its admin (client certificate), with one
    context per (name, namespace or None); the first is the current one."""
    config = yaml.safe_load(kubeconfig_text(plane.url, plane.ca_file, {
        "client-certificate": str(plane.directory / "admin.crt"),
        "client-key": str(plane.directory / "admin.key")}))
    base = config["contexts"][0]["context"]
    config["contexts"] = [
        {"name": name, "context": {**base, **({"namespace": namespace} if namespace else {})}}
        for name, namespace in contexts]
    config["current-context"] = contexts[0][0]
    path.write_text(yaml.safe_dump(config))
    return path
