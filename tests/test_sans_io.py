"""protocol/ must stay sans-IO: no trio, no sockets, no clock, no threads."""

import ast
import pathlib

import pytest

PROTOCOL = pathlib.Path(__file__).resolve().parent.parent / "protocol"
FORBIDDEN = {"trio", "socket", "time", "asyncio", "threading", "selectors", "select", "agent"}


def imported_roots(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(PROTOCOL.rglob("*.py")), ids=lambda p: p.name)
def test_protocol_module_is_sans_io(path: pathlib.Path) -> None:
    bad = imported_roots(path) & FORBIDDEN
    assert not bad, f"{path.name} imports {sorted(bad)}"
