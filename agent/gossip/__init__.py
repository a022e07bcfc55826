"""The gossip layer's IO: the trio driver around the sans-IO machine (driver.py), and ``python -m agent.gossip``,
a bare node (__main__.py) with its members file (members_file.py).

The driver's names are re-exported on first use (PEP 562), not imported here: ``python -m agent.gossip`` imports
this package before its __main__ runs, and __main__ must get to defer what trio would load for nothing (lean.py)
before trio is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.gossip.driver import Addr, DriverStats, GossipDriver, Machine, parse_addr

__all__ = ["Addr", "DriverStats", "GossipDriver", "Machine", "parse_addr"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("agent.gossip.driver"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
