"""The bare node's members file: the member list as JSON, rewritten atomically (tests and benches read it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from protocol.serf import MemberStatus

__all__ = ["member_record", "status_word", "write_members_file"]


def status_word(status: Any) -> str:
    """Serf's word for a member status (alive, leaving, left, failed, none; `MemberStatus` says it), else the
    status as given."""
    try:
        return str(MemberStatus(int(status)))
    except ValueError:
        return str(status)


def member_record(m: Any) -> dict[str, Any]:
    """A member as the members file shows it."""
    return {
        "Name": m.name,
        "Addr": str(m.addr),
        "Port": int(m.port),
        "Tags": dict(m.tags),
        "Status": status_word(m.status),
    }


def write_members_file(path: str, members: Iterable[Any]) -> None:
    """Rewrite ``path`` atomically (write a sibling temp file, then rename), so readers never see half a file."""
    records = sorted((member_record(m) for m in members), key=lambda r: r["Name"])
    tmp = f"{path}.{os.getpid()}.tmp"
    text = json.dumps(records) + "\n"  # compact: json's C encoder (an indent takes the pure-Python one)
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
