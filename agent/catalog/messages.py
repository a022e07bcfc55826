"""The three catalog messages peers exchange as Serf app messages (docs/wire.md, "application messages").

- ``Digest({node: version})``: what the sender holds; the receiver asks for what is newer there and pushes back
  what is newer here (one round repairs both sides).
- ``Request((node, ...))``: send me your records of these nodes.
- ``Records((NodeCatalog, ...))``: records, in answer to a request or a digest, or pushed.

Encoded as msgpack ``{"t": kind, ...}`` (plain msgpack: the app payload is ours, not go-msgpack's dialect).
"""

from __future__ import annotations

from typing import Any

import attrs
import msgpack

from agent.catalog.record import NodeCatalog, RecordError, check_int, from_wire, to_wire
from agent.gostrings import WIRE_ERRORS

__all__ = ["Digest", "Message", "MessageError", "Records", "Request", "decode", "encode"]


class MessageError(ValueError):
    """Bytes that are not a catalog message."""


@attrs.frozen
class Digest:
    versions: tuple[tuple[str, int], ...]


@attrs.frozen
class Request:
    nodes: tuple[str, ...]


@attrs.frozen
class Records:
    records: tuple[NodeCatalog, ...]


Message = Digest | Request | Records


def encode(message: Message) -> bytes:
    body: dict[str, Any]
    match message:
        case Digest():
            body = {"t": "d", "v": dict(message.versions)}
        case Request():
            body = {"t": "q", "n": list(message.nodes)}
        case Records():
            body = {"t": "r", "r": [to_wire(r) for r in message.records]}
    # Node names are Go strings (docs/wire.md, "Go strings are bytes"): written and read with the one rule.
    return msgpack.packb(body, use_bin_type=True, unicode_errors=WIRE_ERRORS)


def decode(data: bytes) -> Message:
    """One message; MessageError says what is wrong (the caller logs it and drops the message)."""
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=False, unicode_errors=WIRE_ERRORS)
    except Exception as exc:
        raise MessageError(f"not msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise MessageError("expected a map")
    kind = body.get("t")
    try:
        if kind == "d":
            versions = body["v"]
            if not isinstance(versions, dict) or not all(isinstance(k, str) for k in versions):
                raise MessageError("digest: expected {node: version}")
            return Digest(tuple((k, check_int(v, f"digest {k!r}.version")) for k, v in versions.items()))
        if kind == "q":
            nodes = body["n"]
            if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
                raise MessageError("request: expected a list of node names")
            return Request(tuple(nodes))
        if kind == "r":
            records = body["r"]
            if not isinstance(records, list):
                raise MessageError("records: expected a list")
            return Records(tuple(from_wire(r) for r in records))
    except KeyError as exc:
        raise MessageError(f"message {kind!r} lacks {exc}") from None
    except RecordError as exc:
        raise MessageError(str(exc)) from None
    raise MessageError(f"unknown message kind {kind!r}")
