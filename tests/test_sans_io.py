"""protocol/ must stay sans-IO: no trio, no sockets, no clock, no threads, and nothing from agent/.

Every module under protocol/ is parsed; absolute imports are checked by their top-level name, relative ones
(`from . import x`, `from .mod import y`, `from .. import z`) are resolved against the module's package
first: they must land on a module inside protocol/, never outside it.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "protocol"
FORBIDDEN = {"trio", "socket", "time", "asyncio", "threading", "selectors", "select", "agent"}


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
