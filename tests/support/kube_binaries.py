"""Build kube-apiserver, kubectl and etcd for the cluster tests, once, into a cache outside
the repository, keyed by their versions.

    python -m tests.support.kube_binaries   # builds what is missing, says where they are

The sources are Kubernetes' and etcd's own Go modules, pinned in hack/kube/go.mod and
hack/etcd/go.mod (with their go.sum), fetched through the Go module proxy. Nothing built is
committed. The cache is $MPW_KUBE_CACHE, else $XDG_CACHE_HOME/migration-policy-webhook
(~/.cache/migration-policy-webhook), then a folder per pair of versions.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HACK = Path(__file__).resolve().parents[2] / "hack"
KUBERNETES = "v1.37.2"
ETCD = "v3.7.3"
BINARIES = ("kube-apiserver", "kubectl", "etcd")


def cache_dir() -> Path:
    base = os.environ.get("MPW_KUBE_CACHE")
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "migration-policy-webhook"
    return root / f"kubernetes-{KUBERNETES}-etcd-{ETCD}"


def go() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go"
                                   if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise SystemExit("tests/support/kube_binaries.py: no Go toolchain: install Go 1.26 "
                         "or later (https://go.dev/doc/install) and put `go` on PATH")
    return found


def version_flags() -> str:
    """What Kubernetes' own build stamps into its binaries (hack/lib/version.sh)."""
    major, minor = KUBERNETES.lstrip("v").split(".")[:2]
    package = "k8s.io/component-base/version"
    return " ".join([
        f"-X {package}.gitVersion={KUBERNETES}", f"-X {package}.gitMajor={major}",
        f"-X {package}.gitMinor={minor}", f"-X {package}.gitTreeState=clean",
        f"-X {package}.buildDate=1970-01-01T00:00:00Z", "-s", "-w"])


def build(target: Path, module: Path, package: str, ldflags: str) -> None:
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    partial = target.with_name(target.name + ".partial")
    started = time.monotonic()
    print(f"building {target.name} ({package}) ...", flush=True)
    subprocess.run([go(), "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial),
                    package], cwd=module, env=env, check=True)
    partial.rename(target)
    print(f"built {target} in {time.monotonic() - started:.0f} s", flush=True)


def ensure_binaries() -> dict[str, Path]:
    """The three binaries, built where missing."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in BINARIES}
    if not paths["kube-apiserver"].exists():
        build(paths["kube-apiserver"], HACK / "kube", "k8s.io/kubernetes/cmd/kube-apiserver",
              version_flags())
    if not paths["kubectl"].exists():
        build(paths["kubectl"], HACK / "kube", "k8s.io/kubernetes/cmd/kubectl", version_flags())
    if not paths["etcd"].exists():
        build(paths["etcd"], HACK / "etcd", ".", "-s -w")
    return paths


def main() -> None:
    for name, path in ensure_binaries().items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    sys.exit(main())
