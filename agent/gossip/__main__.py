"""``python -m agent.gossip``: a bare gossip node (agent/gossip/cli.py), started without the standard modules it
never uses (agent/gossip/lean.py): they are deferred before trio and the node are imported."""

from __future__ import annotations

import sys

from agent.gossip.lean import defer


def run() -> int:
    defer()
    from agent.gossip.cli import main  # after defer(): trio imports what it defers

    return main()


if __name__ == "__main__":
    sys.exit(run())
