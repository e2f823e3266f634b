"""Build kube-apiserver, kubectl and etcd for the cluster tests (kubectl also for the plugin's
and kustomize's tests: tests/support/tools.py), and promtool for the alerting rules' tests
(tests/packaging/test_overlays.py), once, into a cache outside the repository, keyed by their
versions.

    python -m tests.support.kube_binaries   # builds what is missing, says where they are

The sources are Kubernetes', etcd's and Prometheus' own Go modules, pinned in hack/kube/go.mod,
hack/etcd/go.mod and hack/promtool/go.mod (with their go.sum), fetched through the Go module
proxy. Nothing built is committed. The cache is $MPW_KUBE_CACHE, else
$XDG_CACHE_HOME/migration-policy-webhook (~/.cache/migration-policy-webhook), then a folder
per pair of versions (kube-apiserver, kubectl, etcd) and one per Prometheus version (promtool).
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
PROMETHEUS = "v0.316.0"  # the Go module's version of Prometheus 3.16 (hack/promtool/go.mod)
BINARIES = ("kube-apiserver", "kubectl", "etcd")


def cache_root() -> Path:
    base = os.environ.get("MPW_KUBE_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "migration-policy-webhook"


def cache_dir() -> Path:
    return cache_root() / f"kubernetes-{KUBERNETES}-etcd-{ETCD}"


def kubectl_path() -> Path:
    """Where `make kube-binaries` puts kubectl, of the real-cluster tier's release (built by
    ensure_binaries)."""
    return cache_dir() / "kubectl"


def promtool_path() -> Path:
    """Where `make kube-binaries` puts promtool (not built here: see ensure_promtool)."""
    return cache_root() / f"prometheus-{PROMETHEUS}" / "promtool"


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


def build(target: Path, module: Path, package: str, ldflags: str, *, cgo: bool = False) -> None:
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    if cgo:
        env.pop("CGO_ENABLED", None)  # Go's default: on where a C compiler is
    else:
        env["CGO_ENABLED"] = "0"
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


def ensure_promtool() -> Path:
    """promtool, built where missing. Go's default cgo setting, as `go build` has it: promtool
    needs no C either way, and so a Go build cache that already holds Prometheus' packages
    serves (with CGO_ENABLED=0 every package that imports net would compile again)."""
    path = promtool_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path, HACK / "promtool", "github.com/prometheus/prometheus/cmd/promtool",
              "-s -w", cgo=True)
    return path


def main() -> None:
    for name, path in {**ensure_binaries(), "promtool": ensure_promtool()}.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    sys.exit(main())
