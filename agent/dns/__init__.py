"""The DNS interface (consul-compat §3): NAME.node[.DC].consul and friends, answered from member-table snapshots."""

from __future__ import annotations

from typing import Any

import trio


async def serve_dns(table: Any, config: Any, host: str, port: int, *,
                    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
    """Placeholder until the responder lands: reports the address it would serve and waits."""
    task_status.started((host, port))
    await trio.sleep_forever()
