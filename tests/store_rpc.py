"""KV writes and reads on a real server's port, as a client agent sends them (`forwarding.ForwardAccess`'s wire).

`put` sends ``Store.Apply`` with an encoded `KVSet` (or `KVCas`) and returns the answer map as the server gave it
(``{"ok": result}`` | ``{"failed": text}`` | ``{"no_leader": True}`` | ``{"unavailable": text}``); `stale_get`
reads one key with a ``?stale`` `Store.Query`, answered from that server's own state, so it shows what that server
has applied.  Each call is one trio.run on a fresh connection (the tests call them from plain threads).
"""

from __future__ import annotations

import base64
from typing import Any

import trio

from agent.server import rpc
from agent.server.access import QueryResult, ReadMode
from agent.server.state.commands import KVCas, KVSet, encode


def call(address: str, method: str, args: dict[str, Any] | None = None, timeout: float = 5.0) -> Any:
    return trio.run(lambda: rpc.call(address, method, args, timeout=timeout))


def put(address: str, key: str, value: bytes, *, cas: int | None = None, timeout: float = 15.0) -> dict[str, Any]:
    """``Store.Apply`` of a KV set (a check-and-set when ``cas`` is given): the server's answer map."""
    command = KVSet(key=key, value=value) if cas is None else KVCas(key=key, index=cas, value=value)
    answer = call(address, "Store.Apply", {"data": encode(command)}, timeout=timeout)
    assert isinstance(answer, dict), answer
    return answer


def put_ok(address: str, key: str, value: bytes) -> None:
    """A write that must be acknowledged."""
    answer = put(address, key, value)
    assert answer == {"ok": True}, f"put {key} on {address}: {answer}"


def stale_entry(address: str, key: str) -> dict[str, Any] | None:
    """The key's Consul JSON entry in ``address``'s own state (a ``?stale`` read), or None when absent."""
    reply = call(address, "Store.Query", {"name": "kv.get", "args": {"key": key},
                                          "mode": ReadMode("stale").to_wire()})
    value = QueryResult.from_wire(reply).value
    return None if value is None else dict(value[0])


def stale_get(address: str, key: str) -> bytes | None:
    """The key's value in ``address``'s own state, or None when absent."""
    entry = stale_entry(address, key)
    if entry is None:
        return None
    return base64.b64decode(entry["Value"]) if entry["Value"] else b""


def stale_keys(address: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``address``'s own state, in order."""
    reply = call(address, "Store.Query", {"name": "kv.keys", "args": {"prefix": prefix, "separator": ""},
                                          "mode": ReadMode("stale").to_wire()})
    return list(QueryResult.from_wire(reply).value or [])
