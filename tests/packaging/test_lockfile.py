"""requirements.lock: what the image installs (`pip install --require-hashes`), made by
`uv pip compile --generate-hashes` for Python 3.11 on Linux. It must agree with
pyproject.toml: every runtime dependency locked at a version its specifier allows, every
entry an exact version with hashes.

requirements-dev.lock: what `make test` installs, the dev extra's tools compiled the same way
with requirements.lock as constraints, so the tests run on the runtime versions that ship.
Each runtime dependency is declared as a compatible-release range (~=X.Y.Z) at its locked
version, so the range pyproject.toml declares is the one the tests cover; and the environment
the tests run in has exactly the dev lock installed."""

import importlib.metadata
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from tests.support.service import REPO

LOCK = REPO / "requirements.lock"
COMPILE_COMMAND = ("uv pip compile pyproject.toml --generate-hashes --python-version 3.11 "
                   "--python-platform linux -o requirements.lock")
DEV_LOCK = REPO / "requirements-dev.lock"
DEV_COMPILE_COMMAND = ("uv pip compile pyproject.toml --extra dev --generate-hashes "
                       "--python-version 3.11 --python-platform linux -c requirements.lock "
                       "-o requirements-dev.lock")
PROJECT = canonicalize_name("migration-policy-webhook")
# Imported by the service itself (app/serving), so declared, not left to uvicorn[standard].
DECLARED = {canonicalize_name(name) for name in ("uvicorn", "httptools", "uvloop")}
# Installed by `make test` but not from the locks: pip (upgraded first) and the project.
NOT_LOCKED = {canonicalize_name("pip"), PROJECT}
SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}")
# The environment the lock is resolved for, as markers see it (the image's Python on Linux).
TARGET = {"python_version": "3.11", "python_full_version": "3.11.15", "os_name": "posix",
          "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}


@dataclass(frozen=True)
class Locked:
    name: NormalizedName
    version: Version
    hashes: tuple[str, ...]
    line: str
    marker: Marker | None = None


def lock_entries(text: str) -> list[Locked]:
    """The lock's requirements, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the lock ends inside a continued line"
    entries = []
    for line in logical:
        requirement_text, *options = line.split(" --")
        options = [f"--{option.strip()}" for option in options]
        requirement = Requirement(requirement_text)
        [specifier] = requirement.specifier
        assert specifier.operator == "==", f"{line}: not an exact version (==)"
        assert not requirement.url and not requirement.extras, line
        assert all(SHA256.fullmatch(option) for option in options), line
        entries.append(Locked(canonicalize_name(requirement.name), Version(specifier.version),
                              tuple(options), line, requirement.marker))
    return entries


def locked_by_name(text: str) -> dict[NormalizedName, Locked]:
    entries = lock_entries(text)
    by_name = {entry.name: entry for entry in entries}
    assert len(by_name) == len(entries), "a package is locked twice"
    return by_name


@pytest.fixture(scope="module")
def locked() -> dict[NormalizedName, Locked]:
    return locked_by_name(LOCK.read_text())


@pytest.fixture(scope="module")
def dev_locked() -> dict[NormalizedName, Locked]:
    return locked_by_name(DEV_LOCK.read_text())


def pyproject_text() -> str:
    return (REPO / "pyproject.toml").read_text()


def runtime_dependencies(pyproject: str | None = None) -> list[Requirement]:
    project = tomllib.loads(pyproject_text() if pyproject is None else pyproject)["project"]
    return [Requirement(text) for text in project["dependencies"]]


def dev_requirements(pyproject: str | None = None) -> list[Requirement]:
    project = tomllib.loads(pyproject_text() if pyproject is None else pyproject)["project"]
    return [Requirement(text) for text in project["optional-dependencies"]["dev"]]


def test_every_runtime_dependency_is_locked_at_a_version_it_allows(
        locked: dict[NormalizedName, Locked]) -> None:
    dependencies = runtime_dependencies()
    assert dependencies
    for requirement in dependencies:
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement}: not in requirements.lock; run {COMPILE_COMMAND}"
        version = locked[name].version
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{requirement}: the lock has {version}; run {COMPILE_COMMAND}")


def check_compatible_releases(requirements: list[Requirement],
                              locked: Mapping[NormalizedName, Locked]) -> None:
    """Each runtime dependency is one `~=X.Y.Z` range whose lower bound is the locked version:
    it admits that version and the later patch releases of its minor series, nothing the tests
    did not run on beyond those."""
    names = {canonicalize_name(requirement.name) for requirement in requirements}
    assert names >= DECLARED, f"not declared in pyproject.toml: {sorted(DECLARED - names)}"
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement}: not in requirements.lock; run {COMPILE_COMMAND}"
        version = locked[name].version
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        release = ".".join(map(str, (*version.release, 0, 0)[:3]))
        wanted = f"{requirement.name}{extras}~={release}"
        clauses = list(requirement.specifier)
        assert len(clauses) == 1 and clauses[0].operator == "~=", (
            f"{requirement}: not a compatible-release range; declare {wanted}")
        lower = Version(clauses[0].version)
        assert len(lower.release) >= 3, (
            f"{requirement}: admits later minor releases, which the tests never ran on; "
            f"declare {wanted}")
        assert lower == version, (
            f"{requirement}: the lower bound is not the locked version {version}; "
            f"declare {wanted}")


def test_every_runtime_dependency_is_a_compatible_release_at_its_locked_version(
        locked: dict[NormalizedName, Locked]) -> None:
    check_compatible_releases(runtime_dependencies(), locked)


def replaced(requirements: list[Requirement], name: str, *texts: str) -> list[Requirement]:
    """`requirements` with the one named `name` replaced by `texts` (none: left out)."""
    assert name in {requirement.name for requirement in requirements}, name
    return [new for requirement in requirements
            for new in ([Requirement(text) for text in texts] if requirement.name == name
                        else [requirement])]


def next_patch(version: Version) -> Version:
    return Version(f"{version.major}.{version.minor}.{version.micro + 1}")


def test_the_compatible_release_check_refuses_wrong_ranges(
        locked: dict[NormalizedName, Locked]) -> None:
    declared = runtime_dependencies()
    fastapi_name = canonicalize_name("fastapi")
    fastapi = locked[fastapi_name].version
    minor = f"{fastapi.major}.{fastapi.minor}"
    for wrong, problem in [
            (replaced(declared, "uvloop"), "not declared in pyproject.toml: ['uvloop']"),
            (replaced(declared, "httptools"), "not declared in pyproject.toml: ['httptools']"),
            (replaced(declared, "fastapi", f"fastapi>={fastapi}"), "not a compatible-release"),
            (replaced(declared, "fastapi", f"fastapi~={fastapi},>={fastapi}"),
             "not a compatible-release"),
            (replaced(declared, "fastapi", f"fastapi~={minor}"), "later minor releases"),
            (replaced(declared, "PyYAML", "PyYAML~=6.0.4", "no-such-package~=1.0.0"),
             "no-such-package~=1.0.0: not in requirements.lock")]:
        with pytest.raises(AssertionError, match=re.escape(problem)):
            check_compatible_releases(wrong, locked)
    # The lock moved on to a later patch release and pyproject.toml's lower bound did not.
    moved = {**locked, fastapi_name: replace(locked[fastapi_name],
                                             version=next_patch(fastapi))}
    with pytest.raises(AssertionError, match=re.escape(
            f"the lower bound is not the locked version {next_patch(fastapi)}")):
        check_compatible_releases(declared, moved)


@pytest.mark.parametrize("lock", [LOCK, DEV_LOCK], ids=lambda path: path.name)
def test_every_entry_is_an_exact_version_with_hashes(lock: Path) -> None:
    entries = locked_by_name(lock.read_text())
    for entry in entries.values():
        assert entry.hashes, f"{entry.line}: no --hash (pip --require-hashes refuses it)"
    assert PROJECT not in entries, (
        "the project itself is installed from its wheel, not from the lock")


def test_the_parser_refuses_what_pip_require_hashes_would() -> None:
    good = "orjson==3.13.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\n"
    [entry] = lock_entries(good)
    assert (entry.name, str(entry.version)) == ("orjson", "3.13.0")
    with pytest.raises(AssertionError, match="locked twice"):
        locked_by_name(good + good)
    for bad in ("orjson>=3.13 \\\n    --hash=sha256:" + "a" * 64 + "\n",
                "orjson==3.13.0 \\\n    --hash=md5:abc\n",
                "orjson==3.13.0 \\\n"):
        with pytest.raises((AssertionError, ValueError)):
            lock_entries(bad)


@pytest.mark.parametrize(("lock", "command"), [(LOCK, COMPILE_COMMAND),
                                               (DEV_LOCK, DEV_COMPILE_COMMAND)],
                         ids=[LOCK.name, DEV_LOCK.name])
def test_the_lock_says_how_to_make_it_again(lock: Path, command: str) -> None:
    header = lock.read_text().splitlines()[:2]
    assert header[0] == "# This file was autogenerated by uv via the following command:"
    assert header[1].strip("# ") == command


def applies_on_target(requirement: Requirement, extras: set[str]) -> bool:
    """Whether `requirement` applies on the lock's target with these extras requested."""
    if requirement.marker is None:
        return True
    return any(Marker(str(requirement.marker)).evaluate({**TARGET, "extra": extra})
               for extra in extras | {""})


Requires = Callable[[NormalizedName, Version], list[str] | None]
"""The requirements a locked package declares, if it is installed at its locked version;
else None."""


def installed_requires(name: NormalizedName, version: Version) -> list[str] | None:
    """What importlib.metadata says `name` requires, if it is installed here at `version`."""
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    if Version(distribution.version) != version:
        return None
    return distribution.requires or []


def check_closed(locked: Mapping[NormalizedName, Locked], requires: Requires) -> None:
    """For each locked package, everything it needs on the target (with the extras
    pyproject.toml asks for) is locked at a version it allows; `requires` gives its needs,
    and every locked package that applies here must be installed at its locked version to
    be read (None otherwise)."""
    extras: dict[NormalizedName, set[str]] = {}
    for requirement in runtime_dependencies():
        extras.setdefault(canonicalize_name(requirement.name), set()).update(
            requirement.extras)
    unread = []
    for entry in locked.values():
        needs = requires(entry.name, entry.version)
        if needs is None:
            if entry.marker is None or entry.marker.evaluate({**TARGET, "extra": ""}):
                unread.append(f"{entry.name}=={entry.version}")
            continue
        for text in needs:
            needed = Requirement(text)
            if not applies_on_target(needed, extras.get(entry.name, set())):
                continue
            name = canonicalize_name(needed.name)
            assert name in locked, f"{entry.name} {entry.version} needs {needed}: not locked"
            assert needed.specifier.contains(locked[name].version, prereleases=True), (
                f"{entry.name} {entry.version} needs {needed}: locked {locked[name].version}")
    assert not unread, (
        f"not installed here at the locked version, so what they need went unchecked: "
        f"{unread}; make clean, then make test")


def test_the_lock_is_closed(locked: dict[NormalizedName, Locked]) -> None:
    """Every locked package's needs, read from its installed metadata: the tests run on
    exactly the dev lock, which holds the runtime lock, so every entry is read."""
    check_closed(locked, installed_requires)
    # uvicorn[standard]'s extras (httptools, uvloop) are locked, not only uvicorn itself.
    assert {"httptools", "uvloop", "websockets", "watchfiles"} <= set(locked)


def test_the_closure_check_refuses_an_open_lock_and_unread_entries(
        locked: dict[NormalizedName, Locked]) -> None:
    """A check that reads the metadata of one package and skips the others (installed at
    another version, or not at all) passed before whatever the others needed."""
    check_closed(locked, installed_requires)
    uvicorn = canonicalize_name("uvicorn")
    only_uvicorn = {uvicorn: locked[uvicorn]}
    with pytest.raises(AssertionError, match=re.escape("uvicorn ") + ".* needs .*: not locked"):
        check_closed(only_uvicorn, installed_requires)

    def one_read(name: NormalizedName, version: Version) -> list[str] | None:
        return installed_requires(name, version) if name == uvicorn else None

    others = sorted(f"{entry.name}=={entry.version}" for entry in locked.values()
                    if entry.name != uvicorn)
    with pytest.raises(AssertionError, match=re.escape(
            "so what they need went unchecked: ") + r"\[.*\]") as refused:
        check_closed(locked, one_read)
    assert all(f"'{other}'" in str(refused.value) for other in others)

    def needs_a_later_h11(name: NormalizedName, version: Version) -> list[str] | None:
        found = installed_requires(name, version)
        return found if name != uvicorn else [*(found or []), "h11>=999"]

    with pytest.raises(AssertionError, match=re.escape("needs h11>=999: locked")):
        check_closed(locked, needs_a_later_h11)


# requirements-dev.lock: the runtime lock and the dev tools, as `make test` installs them.


def check_dev_lock(locked: Mapping[NormalizedName, Locked],
                   dev_locked: Mapping[NormalizedName, Locked],
                   dev: list[Requirement]) -> None:
    """Every entry of requirements.lock is in requirements-dev.lock at the same version with
    the same hashes, and every dev requirement is locked at a version it allows."""
    for entry in locked.values():
        assert entry.name in dev_locked, (
            f"{entry.name}: in requirements.lock, missing from requirements-dev.lock; "
            f"run {DEV_COMPILE_COMMAND}")
        found = dev_locked[entry.name]
        assert found.version == entry.version, (
            f"{entry.name}: requirements-dev.lock has {found.version}, requirements.lock "
            f"{entry.version}; run {DEV_COMPILE_COMMAND}")
        assert sorted(found.hashes) == sorted(entry.hashes), (
            f"{entry.name} {entry.version}: other hashes than requirements.lock's; "
            f"run {DEV_COMPILE_COMMAND}")
    assert dev
    for requirement in dev:
        if not applies_on_target(requirement, set()):
            continue
        name = canonicalize_name(requirement.name)
        assert name in dev_locked, (
            f"{requirement}: not in requirements-dev.lock; run {DEV_COMPILE_COMMAND}")
        version = dev_locked[name].version
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{requirement}: requirements-dev.lock has {version}; run {DEV_COMPILE_COMMAND}")


def test_the_dev_lock_holds_the_runtime_lock_and_the_dev_tools(
        locked: dict[NormalizedName, Locked], dev_locked: dict[NormalizedName, Locked]) -> None:
    check_dev_lock(locked, dev_locked, dev_requirements())


def drop_first_hash(text: str, name: str) -> str:
    """The lock text with the first hash of `name`'s entry left out."""
    lines = text.splitlines(keepends=True)
    start = next(n for n, line in enumerate(lines) if line.startswith(f"{name}=="))
    assert "--hash=" in lines[start + 1] and lines[start + 2].strip().startswith("--hash=")
    return "".join(lines[:start + 1] + lines[start + 2:])


def test_the_dev_lock_check_refuses_a_wrong_dev_lock(
        locked: dict[NormalizedName, Locked], dev_locked: dict[NormalizedName, Locked]) -> None:
    text = DEV_LOCK.read_text()
    dev = dev_requirements()
    uvloop = dev_locked[canonicalize_name("uvloop")]
    missing = {name: entry for name, entry in dev_locked.items() if name != uvloop.name}
    with pytest.raises(AssertionError, match=re.escape(
            "uvloop: in requirements.lock, missing from requirements-dev.lock")):
        check_dev_lock(locked, missing, dev)
    later = next_patch(uvloop.version)
    other_version = text.replace(f"\nuvloop=={uvloop.version} ", f"\nuvloop=={later} ")
    assert other_version != text
    with pytest.raises(AssertionError, match=re.escape(
            f"uvloop: requirements-dev.lock has {later}, requirements.lock {uvloop.version}")):
        check_dev_lock(locked, locked_by_name(other_version), dev)
    with pytest.raises(AssertionError, match=re.escape(
            f"uvloop {uvloop.version}: other hashes than requirements.lock's")):
        check_dev_lock(locked, locked_by_name(drop_first_hash(text, "uvloop")), dev)
    pytest_version = dev_locked[canonicalize_name("pytest")].version
    for wrong, problem in [
            (replaced(dev, "pytest", f"pytest>{pytest_version}"),
             f"pytest>{pytest_version}: requirements-dev.lock has {pytest_version}"),
            (replaced(dev, "pytest", "pytest>=8", "no-such-tool>=1"),
             "no-such-tool>=1: not in requirements-dev.lock")]:
        with pytest.raises(AssertionError, match=re.escape(problem)):
            check_dev_lock(locked, dev_locked, wrong)
    with pytest.raises(AssertionError):
        check_dev_lock(locked, dev_locked, [])


# The environment the tests run in: exactly requirements-dev.lock.


def installed_here() -> dict[NormalizedName, Version]:
    """Each distribution importable here at the version importlib.metadata.version gives
    (the first found on sys.path)."""
    found: dict[NormalizedName, Version] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), Version(distribution.version))
    return found


def check_installed(dev_locked: Mapping[NormalizedName, Locked],
                    installed: Mapping[NormalizedName, Version],
                    environment: dict[str, str] | None = None) -> None:
    """Every entry of the dev lock that applies here (its marker evaluated) is installed at
    its locked version, and nothing else is installed but pip and the project."""
    for entry in dev_locked.values():
        if entry.marker is not None and not entry.marker.evaluate(environment):
            continue
        assert entry.name in installed, (
            f"{entry.name}=={entry.version} is locked but not installed; "
            "make clean, then make test")
        assert installed[entry.name] == entry.version, (
            f"{entry.name} {installed[entry.name]} is installed, the lock has {entry.version}; "
            "make clean, then make test")
    unlocked = set(installed) - set(dev_locked) - NOT_LOCKED
    assert not unlocked, (
        f"installed but not in requirements-dev.lock: {sorted(unlocked)}; "
        "make clean, then make test")


def test_the_tests_run_on_exactly_the_dev_lock(
        dev_locked: dict[NormalizedName, Locked]) -> None:
    check_installed(dev_locked, installed_here())


def test_the_installed_check_refuses_another_environment(
        dev_locked: dict[NormalizedName, Locked]) -> None:
    exact = {name: entry.version for name, entry in dev_locked.items()}
    check_installed(dev_locked, {**exact, canonicalize_name("pip"): Version("99"),
                                 PROJECT: Version("0.1.0")})
    uvicorn = canonicalize_name("uvicorn")
    with pytest.raises(AssertionError, match=re.escape("uvicorn 0.29.0 is installed")):
        check_installed(dev_locked, {**exact, uvicorn: Version("0.29.0")})
    with pytest.raises(AssertionError, match=re.escape(
            f"uvicorn=={exact[uvicorn]} is locked but not installed")):
        check_installed(dev_locked, {n: v for n, v in exact.items() if n != uvicorn})
    with pytest.raises(AssertionError, match=re.escape(
            "not in requirements-dev.lock: ['rich-click']")):
        check_installed(dev_locked, {**exact, canonicalize_name("rich-click"): Version("1")})
    # A marker is evaluated: an entry for another platform need not be installed here.
    pywin32 = "pywin32==311 ; sys_platform == 'win32' \\\n    --hash=sha256:" + "a" * 64 + "\n"
    elsewhere = {**dev_locked, **locked_by_name(pywin32)}
    check_installed(elsewhere, exact, {**TARGET, "extra": ""})
    with pytest.raises(AssertionError, match=re.escape("pywin32==311 is locked but not installed")):
        check_installed(elsewhere, exact, {**TARGET, "sys_platform": "win32", "extra": ""})
