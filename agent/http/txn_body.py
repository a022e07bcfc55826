"""``/v1/txn``'s body as Consul's Go decodes it (``api.TxnOps`` through encoding/json), with its limits and texts.

A body is a JSON array of ``{"KV": {"Verb", "Key", "Value", "Flags", "Index", "Session"}}`` (field names matched
case-insensitively, unknown fields ignored, ``Value`` base64 as Go's ``[]byte`` reads it).  Consul's answers
(hashicorp/consul ``agent/txn_endpoint.go``): a body over the limit is 413 ``Request body too large, max size: N
bytes``; one it cannot decode 400 ``Failed to parse body: <Go's error>``; more than 64 operations 413
``Transaction contains too many operations (65 > 64)``; a value over ``kv_max_value_size`` 413 ``Value for key
"k" is too large (n > m bytes)``.  ``Node``/``Service``/``Check`` operations are refused with a 400 saying they are
not supported by this agent yet.  An element naming none of the four is skipped, as Consul's ``convertOps`` does.

The verb is not checked here: Consul reports an unknown verb as the transaction's error (a 409), so the endpoint
does too.
"""

from __future__ import annotations

from typing import Any

import attrs

from agent.gostrings import decode_json
from agent.http.errors import HTTPError, bad_request
from agent.server.state.commands import MAX_TXN_OPS
from agent.server.state.kvs import go_quote

__all__ = ["KVOpIn", "go_base64", "parse_txn_body"]

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_NEWLINES = (ord("\n"), ord("\r"))
_PAD = ord("=")
U64 = 2**64 - 1
UNSUPPORTED = "Transaction operation {i}: {kind} operations are not supported by this agent yet (only KV)"


@attrs.frozen
class KVOpIn:
    """One KV operation as sent (the verb unchecked)."""

    verb: str
    key: str = ""
    value: bytes = b""
    flags: int = 0
    index: int = 0
    session: str = ""


class _Corrupt(ValueError):
    def __init__(self, offset: int) -> None:
        super().__init__(f"illegal base64 data at input byte {offset}")


def go_base64(text: str) -> bytes:
    """``base64.StdEncoding.Decode`` as Go does it: padding required, CR/LF skipped anywhere, and the error
    naming the byte offset Go names (``illegal base64 data at input byte N``)."""
    src = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    si, n = 0, len(src)
    while True:
        sextets: list[int] = []
        done = False
        while len(sextets) < 4:
            if si == n:
                if not sextets:
                    return bytes(out)
                raise _Corrupt(si - len(sextets))  # a short final quantum without its padding
            c = src[si]
            si += 1
            if c in _DECODE:
                sextets.append(_DECODE[c])
                continue
            if c in _NEWLINES:
                continue
            if c != _PAD or len(sextets) < 2:
                raise _Corrupt(si - 1)
            if len(sextets) == 2:  # "==" expected: the second one after any newlines
                while si < n and src[si] in _NEWLINES:
                    si += 1
                if si == n:
                    raise _Corrupt(n)
                if src[si] != _PAD:
                    raise _Corrupt(si - 1)
                si += 1
            while si < n and src[si] in _NEWLINES:
                si += 1
            if si < n:
                raise _Corrupt(si)  # anything after the padding
            done = True
            break
        value = 0
        for sextet in sextets:
            value = value << 6 | sextet
        value <<= 6 * (4 - len(sextets))
        out += value.to_bytes(3, "big")[: len(sextets) - 1]
        if done:
            return bytes(out)


def _json_kind(value: Any) -> str:
    """How Go's UnmarshalTypeError names a JSON value (``number -1``, ``string``...)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {value}" if not isinstance(value, int) or value < 0 else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _type_error(value: Any, field: str, go_type: str) -> HTTPError:
    return bad_request(f"Failed to parse body: json: cannot unmarshal {_json_kind(value)} into Go struct field "
                       f"KVTxnOp.KV.{field} of type {go_type}")


def _kv_op(raw: Any) -> KVOpIn:
    if raw is None:
        return KVOpIn(verb="")
    if not isinstance(raw, dict):
        raise bad_request(f"Failed to parse body: json: cannot unmarshal {_json_kind(raw)} into Go struct field "
                          "TxnOp.KV of type api.KVTxnOp")
    fields = {k.lower(): v for k, v in raw.items()}
    texts: dict[str, str] = {}
    for name, go_name, go_type in (("verb", "Verb", "api.KVOp"), ("key", "Key", "string"),
                                   ("session", "Session", "string")):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise _type_error(value, go_name, go_type)
        texts[name] = value or ""
    numbers: dict[str, int] = {}
    for name, go_name in (("flags", "Flags"), ("index", "Index")):
        value = fields.get(name)
        if value is None:
            numbers[name] = 0
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64:
            raise _type_error(value, go_name, "uint64")
        else:
            numbers[name] = value
    raw_value = fields.get("value")
    if raw_value is None:
        value_bytes = b""
    elif not isinstance(raw_value, str):
        raise _type_error(raw_value, "Value", "[]uint8")
    else:
        try:
            value_bytes = go_base64(raw_value)
        except ValueError as exc:
            raise bad_request(f"Failed to parse body: {exc}") from None
    return KVOpIn(texts["verb"], texts["key"], value_bytes, numbers["flags"], numbers["index"], texts["session"])


def parse_txn_body(body: bytes, *, max_request_len: int, max_value_size: int) -> list[KVOpIn]:
    """The KV operations of a ``/v1/txn`` body (an error's ``OpIndex`` is a position in this list, as Consul's
    is in its converted list); HTTPError as Consul answers."""
    limit = max(max_request_len, max_value_size)
    if len(body) > limit:
        raise HTTPError(413, f"Request body too large, max size: {limit} bytes")
    if not body.strip():
        raise bad_request("Failed to parse body: EOF")
    try:
        raw = decode_json(body)
    except ValueError as exc:
        raise bad_request(f"Failed to parse body: {exc}") from None
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise bad_request(f"Failed to parse body: json: cannot unmarshal {_json_kind(raw)} into Go value of type "
                          "api.TxnOps")
    if len(raw) > MAX_TXN_OPS:
        raise HTTPError(413, f"Transaction contains too many operations ({len(raw)} > {MAX_TXN_OPS})")
    ops: list[KVOpIn] = []
    for i, element in enumerate(raw):
        if element is None:
            continue
        if not isinstance(element, dict):
            raise bad_request(f"Failed to parse body: json: cannot unmarshal {_json_kind(element)} into Go value "
                              "of type api.TxnOp")
        fields = {k.lower(): v for k, v in element.items() if v is not None}
        if "kv" in fields:
            op = _kv_op(fields["kv"])
            if len(op.value) > max_value_size:
                raise HTTPError(413, f"Value for key {go_quote(op.key)} is too large "
                                     f"({len(op.value)} > {max_value_size} bytes)")
            ops.append(op)
            continue
        for kind in ("node", "service", "check"):
            if kind in fields:
                raise bad_request(UNSUPPORTED.format(i=i, kind=kind.capitalize()))
    return ops
