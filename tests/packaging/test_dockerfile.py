"""The Dockerfile, checked without a Docker engine: its instructions parsed, hadolint run on
it, the dependencies installed from the hashed lock, and the wheel the builder stage makes
built from exactly the context .dockerignore lets through."""

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from app.commands.cli import build_parser
from tests.support.service import REPO
from tests.support.tools import hadolint_binary

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
LOCK = "requirements.lock"
CONSOLE_SCRIPT = "migration-policy-webhook"
# A Python patch release on a named Debian suite: the same tag builds the same base.
PINNED_SLIM_PYTHON = re.compile(r"python:(?P<minor>3\.11)\.[0-9]+-slim-[a-z]+")


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} is not in exec (JSON) form"
        return value


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, arguments = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        found.append(Instruction(stage, keyword, " ".join(arguments.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def stages() -> list[list[Instruction]]:
    parsed = instructions()
    return [[i for i in parsed if i.stage == n] for n in range(parsed[-1].stage + 1)]


def final_stage() -> list[Instruction]:
    return stages()[-1]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert found, f"no {keyword} in the stage"
    return found[-1]


def test_multi_stage_on_one_pinned_slim_python() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    bases = [stage[0].arguments.split() for stage in all_stages]
    assert bases[0][1:] == ["AS", "builder"]
    assert len(bases[-1]) == 1
    images = {base[0] for base in bases}
    assert len(images) == 1, f"the stages build on different images: {sorted(images)}"
    [image] = images
    pinned = PINNED_SLIM_PYTHON.fullmatch(image)
    assert pinned, f"{image}: pin a patch release and suite, e.g. python:3.11.15-slim-trixie"
    # The Python the lock was resolved for.
    assert f"--python-version {pinned['minor']}" in (REPO / LOCK).read_text().splitlines()[1]


def run_words(stage: list[Instruction]) -> list[list[str]]:
    """Each command of the stage's RUN instructions, split into words."""
    return [shlex.split(command) for i in stage if i.keyword == "RUN"
            for command in i.arguments.split("&&")]


def test_the_builder_installs_the_hashed_lock_then_the_wheel_alone() -> None:
    builder = stages()[0]
    copied = [i.arguments.split()[:-1] for i in builder if i.keyword == "COPY"]
    assert copied[0] == [LOCK], "the lock is copied first, so its layer outlives app changes"
    installs = [words for words in run_words(builder) if "install" in words]
    assert installs, "the builder installs nothing"
    locked, wheel = installs
    assert locked[:2] == ["/opt/venv/bin/pip", "install"]
    assert "--require-hashes" in locked
    assert locked[locked.index("-r") + 1] == LOCK
    assert wheel[:2] == ["/opt/venv/bin/pip", "install"]
    assert "--no-deps" in wheel, "the wheel's dependencies come from the lock alone"
    assert wheel[-1] == "/wheels/*.whl"
    assert LOCK in docker_context(REPO)


def test_final_stage_takes_only_the_virtualenv_from_the_builder() -> None:
    stage = final_stage()
    copies = [i for i in stage if i.keyword in ("COPY", "ADD")]
    assert [c.arguments for c in copies] == ["--from=builder /opt/venv /opt/venv"]
    assert not [i for i in stage if i.keyword == "RUN"], "no build step in the final image"
    path = only(stage, "ENV").arguments
    assert "PATH=/opt/venv/bin:$PATH" in path


def test_final_user_is_numeric_and_not_root() -> None:
    user = only(final_stage(), "USER").arguments
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) == 65532
    assert not gid or (gid.isdigit() and int(gid) != 0)
    keywords = [i.keyword for i in final_stage()]
    assert keywords.index("USER") > max(
        n for n, keyword in enumerate(keywords) if keyword in ("COPY", "RUN", "ADD"))


def test_every_pip_install_skips_the_cache_and_none_is_in_the_final_stage() -> None:
    for instruction in instructions():
        if instruction.keyword != "RUN":
            continue
        for command in instruction.arguments.split("&&"):
            words = shlex.split(command)
            if "pip" in " ".join(words[:2]) and "install" in words:
                assert "--no-cache-dir" in words, command
                assert instruction.stage != len(stages()) - 1, command
    builder = stages()[0]
    env = " ".join(i.arguments for i in builder if i.keyword == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in env


def test_entrypoint_is_the_console_script_and_cmd_serves_the_cluster() -> None:
    stage = final_stage()
    assert only(stage, "ENTRYPOINT").exec_form() == [CONSOLE_SCRIPT]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[CONSOLE_SCRIPT] == "app.commands.cli:main"
    cmd = only(stage, "CMD").exec_form()
    assert cmd == ["serve", "--state", "kube"]
    assert build_parser().parse_args(cmd).state == "kube"


def test_exposed_port_is_the_serving_port() -> None:
    exposed = int(only(final_stage(), "EXPOSE").arguments)
    assert exposed == build_parser().parse_args(["serve"]).port == 8443
    deployment = yaml.safe_load((REPO / "manifests" / "base" / "deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["https"] == exposed


def test_hadolint_finds_nothing() -> None:
    """hadolint of requirements-dev.lock (installed beside python); missing, this fails."""
    result = subprocess.run([str(hadolint_binary()), "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


# The build context.


def docker_context(root: Path) -> list[str]:
    """The files `docker build` would send, by .dockerignore's rules: the last pattern that
    matches a path or one of its parent directories decides, `!` re-includes."""
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    included = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".venv")]
        for name in filenames:
            relative = Path(directory, name).relative_to(root)
            candidates = [str(relative), *(str(parent) for parent in relative.parents
                                           if str(parent) != ".")]
            excluded = False
            for pattern in patterns:
                negated = pattern.startswith("!")
                glob = pattern.lstrip("!").rstrip("/")
                if any(fnmatch.fnmatchcase(candidate, glob) for candidate in candidates):
                    excluded = not negated
            if not excluded:
                included.append(str(relative))
    return sorted(included)


def test_the_context_holds_what_the_builder_copies_and_no_secrets() -> None:
    context = docker_context(REPO)
    for copy in (i for i in stages()[0] if i.keyword == "COPY"):
        *sources, _destination = copy.arguments.split()
        for source in sources:
            assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in context), (
                f"COPY {source}: not in the build context")
    assert "app/commands/cli.py" in context
    for path in context:
        assert not path.startswith(("certs/", ".venv/", ".git/", "tests/")), path
        assert not path.endswith((".key", ".pyc")), path


def test_the_wheel_built_from_the_context_holds_the_whole_app(tmp_path: Path) -> None:
    """What the builder stage does first: `pip wheel --no-deps .` in the context."""
    context_dir = tmp_path / "context"
    for name in docker_context(REPO):
        (context_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, context_dir / name)
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--wheel-dir", str(wheels), str(context_dir)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    modules = {str(path.relative_to(REPO)) for path in (REPO / "app").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert f"{CONSOLE_SCRIPT} = app.commands.cli:main" in entry_points
