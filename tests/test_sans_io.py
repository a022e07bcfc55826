"""protocol/ must stay sans-IO: no trio, no sockets, no clock, no threads, and nothing from agent/.

Every module under protocol/ is parsed; absolute imports are checked by their top-level name, relative ones
(`from . import x`, `from .mod import y`, `from .. import z`) are resolved against the module's package
first: they must land on a module inside protocol/, never outside it.

agent/catalog/replication.py is sans-IO too (its docstring says so; agent/catalog/runner.py does the IO): it and
every module of ours it imports, directly or through others (packages' __init__ included), import none of the IO
modules, whether absolutely or relatively.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "protocol"
IO_MODULES = {"trio", "socket", "time", "asyncio", "threading", "selectors", "select"}
FORBIDDEN = {*IO_MODULES, "agent"}
SANS_IO_AGENT_MODULES = ["agent/catalog/replication.py"]


def module_parts(path: pathlib.Path, root: pathlib.Path) -> list[str]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def is_protocol_module(parts: list[str], root: pathlib.Path) -> bool:
    if not parts or parts[0] != "protocol":
        return False
    target = root.joinpath(*parts)
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def import_problems(path: pathlib.Path, root: pathlib.Path = ROOT, source: str | None = None) -> list[str]:
    """What a module imports that a sans-IO module must not; empty when clean."""
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path))
    package = module_parts(path, root)
    if path.name != "__init__.py":
        package = package[:-1]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            if node.module and node.module.split(".")[0] in FORBIDDEN:
                problems.append(f"from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom):
            shown = "." * node.level + (node.module or "")
            if node.level - 1 >= len(package):
                problems.append(f"from {shown} import ...: climbs out of protocol/")
                continue
            base = package[: len(package) - (node.level - 1)]
            # `from . import name`: each name must be a module of the package (an attribute re-exported by its
            # __init__ would hide where it comes from: import it from its module instead)
            candidates = [base + node.module.split(".")] if node.module else [[*base, a.name] for a in node.names]
            for parts in candidates:
                if not is_protocol_module(parts, root):
                    problems.append(f"from {shown} import ...: resolves to {'.'.join(parts)}, outside protocol/")
    return problems


@pytest.mark.parametrize("path", sorted(PROTOCOL.rglob("*.py")), ids=lambda p: str(p.relative_to(PROTOCOL)))
def test_protocol_module_is_sans_io(path: pathlib.Path) -> None:
    bad = import_problems(path)
    assert not bad, f"{path.relative_to(ROOT)}: {bad}"


@pytest.mark.parametrize(
    ("where", "source", "caught"),
    [
        ("protocol/raft/core.py", "from .types import Entry", False),
        ("protocol/raft/core.py", "from . import log", False),
        ("protocol/raft/core.py", "from .. import codec", False),
        ("protocol/raft/__init__.py", "from .node import RawNode", False),
        ("protocol/raft/core.py", "import time", True),
        ("protocol/raft/core.py", "from trio import sleep", True),
        ("protocol/raft/core.py", "from ... import agent", True),
        ("protocol/raft/core.py", "from ...agent import server", True),
        ("protocol/node.py", "from .. import agent", True),
        ("protocol/node.py", "from ..agent.http import x", True),
        ("protocol/raft/core.py", "from . import socket", True),
        ("protocol/raft/core.py", "from .clock import now", True),
    ],
)
def test_the_check_catches_relative_escapes(where: str, source: str, caught: bool) -> None:
    assert bool(import_problems(ROOT / where, ROOT, source)) is caught, import_problems(ROOT / where, ROOT, source)


def module_file(parts: list[str], root: pathlib.Path = ROOT) -> pathlib.Path | None:
    """The file of a module of ours (a package's __init__.py), or None when it is not ours."""
    target = root.joinpath(*parts)
    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: pathlib.Path, root: pathlib.Path = ROOT, source: str | None = None) -> list[list[str]]:
    """Every module a file imports (relative imports resolved), as dotted parts; a package's parents included,
    since importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first."""
    tree = ast.parse(source if source is not None else path.read_text(), filename=str(path))
    package = module_parts(path, root)
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[list[str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # imports for type checkers only never run
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            module = base + (node.module.split(".") if node.module else [])
            found.append(module)
            found += [[*module, a.name] for a in node.names if module_file([*module, a.name], root) is not None]
    return [parts[:i] for parts in found for i in range(1, len(parts) + 1)]


def io_imports_reached(start: pathlib.Path, root: pathlib.Path = ROOT) -> dict[str, list[str]]:
    """The IO modules imported by ``start`` or by any module of ours it reaches, by the importing file."""
    seen: set[pathlib.Path] = set()
    todo = [start]
    problems: dict[str, list[str]] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for parts in imported_modules(path, root):
            if parts[0] in IO_MODULES:
                problems.setdefault(str(path.relative_to(root)), []).append(".".join(parts))
            ours = module_file(parts, root)
            if ours is not None:
                todo.append(ours)
    return problems


@pytest.mark.parametrize("where", SANS_IO_AGENT_MODULES)
def test_agent_sans_io_module_reaches_no_io(where: str) -> None:
    assert io_imports_reached(ROOT / where) == {}


def test_the_reach_check_follows_relative_and_package_imports(tmp_path: pathlib.Path) -> None:
    """A fake tree: core.py is clean itself, but reaches `time` through a relative import and `trio` through
    its package's __init__; a TYPE_CHECKING import does not count."""
    pkg = tmp_path / "agent" / "pkg"
    pkg.mkdir(parents=True)
    (tmp_path / "agent" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("import trio\n")
    (pkg / "core.py").write_text(
        "from typing import TYPE_CHECKING\nfrom .helper import x\nif TYPE_CHECKING:\n    import socket\n"
    )
    (pkg / "helper.py").write_text("from time import monotonic as x\n")
    assert io_imports_reached(pkg / "core.py", tmp_path) == {
        "agent/pkg/__init__.py": ["trio"],
        "agent/pkg/helper.py": ["time"],
    }
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("x = 1\n")
    assert io_imports_reached(pkg / "core.py", tmp_path) == {}
