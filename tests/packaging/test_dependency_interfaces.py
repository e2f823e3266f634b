"""Dependencies through their documented interfaces only (issue 18): app/ subclasses no
uvicorn class, imports from uvicorn only what is named here, and reads or writes no
underscored attribute of any object but its own. A uvicorn release can change the rest
silently; this fails before it does."""

import ast
from pathlib import Path

import pytest

from tests.support.service import REPO

APP = REPO / "app"
UVICORN_NAMES = {
    "uvicorn",  # uvicorn.Config, the protocol class it resolves, uvicorn.__version__
    "uvicorn.server.ServerState",  # handed to uvicorn's protocol as uvicorn hands it, unread
}
"""What app/ may import from uvicorn."""


def sources() -> list[Path]:
    return sorted(APP.rglob("*.py"))


def imported_names(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def uvicorn_imports(tree: ast.AST) -> set[str]:
    return {name for name in imported_names(tree) if name.split(".")[0] == "uvicorn"}


def uvicorn_bases(tree: ast.AST) -> list[str]:
    """Classes whose bases name uvicorn or a name imported from it."""
    from_uvicorn = {name.rsplit(".", 1)[-1] for name in uvicorn_imports(tree)} | {"uvicorn"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in from_uvicorn:
                    found.append(f"{node.name}({ast.unparse(base)})")
    return found


def foreign_private_attributes(tree: ast.AST) -> list[str]:
    """`x._name` where x is not self or cls (dunders allowed)."""
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not (node.attr.startswith("__") and node.attr.endswith("__"))
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", sources(), ids=lambda path: str(path.relative_to(REPO)))
def test_app_uses_uvicorn_through_its_public_names_only(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert uvicorn_imports(tree) <= UVICORN_NAMES
    assert uvicorn_bases(tree) == []
    assert foreign_private_attributes(tree) == []


def test_the_checks_find_what_they_look_for() -> None:
    """Each check, fed the code this project had before issue 18, finds it."""
    tree = ast.parse(
        "from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol\n"
        "import uvicorn\n"
        "class Limited(HttpToolsProtocol):\n"
        "    def go(self, cycle):\n"
        "        self._start_asgi_task(cycle, self.app)\n"
        "        return cycle._keep_alive\n"
        "class Other(uvicorn.protocols.http.h11_impl.H11Protocol):\n"
        "    pass\n")
    assert uvicorn_imports(tree) - UVICORN_NAMES == {
        "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol"}
    assert uvicorn_bases(tree) == ["Limited(HttpToolsProtocol)",
                                   "Other(uvicorn.protocols.http.h11_impl.H11Protocol)"]
    assert foreign_private_attributes(tree) == ["line 6: cycle._keep_alive"]
