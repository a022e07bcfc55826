"""Serf's key management: the ``_serf_*-key`` internal queries, answered and aggregated as serf does.

serf's internal_query.go answers ``install-key``, ``use-key``, ``remove-key`` and ``list-keys`` on every member;
keymanager.go asks them and folds the answers into a KeyResponse (per-key node counts, per-node messages, "N/M
nodes reported failure"). The payloads are Serf messages: a request is ``7 | msgpack{Key: raw key}``, an answer
``8 | msgpack{Result, Message, Keys, PrimaryKey}``; both travel inside ordinary queries and query responses.
Persisting the changed ring is the agent's job: Serf emits ``KeyringChanged`` after each change.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from protocol.go_msgpack import packb, unpackb
from protocol.keyring import Keyring, KeyringError, decode_key, encode_key
from protocol.serf_messages import SerfDecodeError, SerfMessageType

__all__ = [
    "KEY_OPERATIONS",
    "KeyQuery",
    "KeyQueryDone",
    "KeyResponse",
    "KeyringChanged",
    "NodeKeyResponse",
    "answer_key_query",
    "decode_key_request",
    "decode_key_response",
    "encode_key_request",
    "encode_key_response",
    "key_query_timeout",
    "request_key",
]

#: serf's internal query names, without the ``_serf_`` prefix.
KEY_OPERATIONS = ("install-key", "use-key", "remove-key", "list-keys")
#: serf's minEncodedKeyLength: the smallest a base64 key can be in a list-keys answer.
MIN_ENCODED_KEY_LENGTH = 25
NO_KEYRING = "No keyring to modify (encryption not enabled)"
EMPTY_KEYRING = "Keyring is empty (encryption not enabled)"


@attrs.frozen
class NodeKeyResponse:
    """serf's nodeKeyResponse: one member's answer."""

    result: bool = False
    message: str = ""
    keys: tuple[str, ...] = ()
    primary_key: str = ""


@attrs.frozen
class KeyringChanged:
    """Our keyring changed (a key query was applied): ``keys`` as base64, primary first, for the keyring file."""

    keys: tuple[str, ...]


@attrs.define
class KeyResponse:
    """serf's KeyResponse: what a key query gathered from the cluster."""

    num_nodes: int
    messages: dict[str, str] = attrs.field(factory=dict)
    num_resp: int = 0
    num_err: int = 0
    keys: dict[str, int] = attrs.field(factory=dict)
    primary_keys: dict[str, int] = attrs.field(factory=dict)

    def error(self) -> str | None:
        """serf's handleKeyRequest verdict: failures first, then missing answers (a timeout)."""
        if self.num_err:
            return f"{self.num_err}/{self.num_nodes} nodes reported failure"
        if self.num_resp != self.num_nodes:
            return f"{self.num_resp}/{self.num_nodes} nodes reported success"
        return None


@attrs.frozen
class KeyQueryDone:
    """A key query we issued finished (every member answered, or the timeout ran out)."""

    handle: int
    operation: str
    response: KeyResponse
    error: str | None


# --- payloads ----------------------------------------------------------------------------------------------------


def encode_key_request(key: bytes) -> bytes:
    """``7 | msgpack{"Key": raw}``; list-keys sends the empty key (Go's nil slice)."""
    return bytes([SerfMessageType.KEY_REQUEST]) + packb({"Key": bytes(key) if key else None})


def decode_key_request(payload: bytes) -> bytes:
    """The raw key of a request; like serf, the type byte is skipped without being checked."""
    obj = _unpack_struct(payload[1:], "key request")
    key = obj.get("Key")
    if key is None:
        return b""
    if not isinstance(key, bytes):
        raise SerfDecodeError(f"key request: Key must be raw bytes, got {type(key).__name__}")
    return key


def encode_key_response(resp: NodeKeyResponse) -> bytes:
    """``8 | msgpack{Keys, Message, PrimaryKey, Result}``: all four fields, a nil Keys when there are none."""
    body = {
        "Keys": list(resp.keys) if resp.keys else None,
        "Message": resp.message,
        "PrimaryKey": resp.primary_key,
        "Result": resp.result,
    }
    return bytes([SerfMessageType.KEY_RESPONSE]) + packb(body)


def decode_key_response(payload: bytes) -> NodeKeyResponse:
    """An answer (type byte included); serf 0.8 answers lack PrimaryKey, which reads as ""."""
    if not payload or payload[0] != SerfMessageType.KEY_RESPONSE:
        raise SerfDecodeError(f"Invalid key query response type: {list(payload[:1])}")
    obj = _unpack_struct(payload[1:], "key response")
    keys = obj.get("Keys") or []
    if not isinstance(keys, list | tuple):
        raise SerfDecodeError("key response: Keys must be a list")
    result = obj.get("Result", False)
    if not isinstance(result, bool):
        raise SerfDecodeError("key response: Result must be a bool")
    return NodeKeyResponse(
        result=result,
        message=_text(obj.get("Message")),
        keys=tuple(_text(k) for k in keys),
        primary_key=_text(obj.get("PrimaryKey")),
    )


def _unpack_struct(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = unpackb(body)
    except Exception as exc:
        raise SerfDecodeError(f"{what}: {exc}") from None
    if not isinstance(obj, dict):
        raise SerfDecodeError(f"{what}: expected a msgpack map, got {type(obj).__name__}")
    return {(_text(k)): v for k, v in obj.items()}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        return value
    raise SerfDecodeError(f"expected a string, got {type(value).__name__}")


# --- answering ---------------------------------------------------------------------------------------------------


def answer_key_query(
    keyring: Keyring | None, operation: str, payload: bytes, size_limit: int
) -> tuple[NodeKeyResponse, bool]:
    """serf's handleInstallKey/UseKey/RemoveKey/ListKeys: (our answer, whether the keyring changed).

    ``size_limit`` bounds the encoded answer, the query response around it excluded (list-keys truncates its
    key list to fit, saying so, as serf's keyListResponseWithCorrectSize).
    """
    try:
        key = decode_key_request(payload)
    except SerfDecodeError as exc:
        return NodeKeyResponse(message=f"Failed to decode key request: {exc}"), False
    if operation == "list-keys":
        if keyring is None or not keyring.enabled:
            return NodeKeyResponse(message=EMPTY_KEYRING), False
        return _list_keys(keyring, size_limit), False
    if keyring is None:
        return NodeKeyResponse(message=NO_KEYRING), False
    before = keyring.keys
    try:
        if operation == "install-key":
            keyring.add_key(key)
        elif operation == "use-key":
            keyring.use_key(key)
        elif operation == "remove-key":
            keyring.remove_key(key)
        else:
            raise KeyringError(f"unknown key operation {operation!r}")
    except KeyringError as exc:
        return NodeKeyResponse(message=str(exc)), False
    return NodeKeyResponse(result=True), keyring.keys != before


def _list_keys(keyring: Keyring, size_limit: int) -> NodeKeyResponse:
    keys = keyring.encoded()
    primary = encode_key(keyring.primary or b"")
    resp = NodeKeyResponse(result=True, keys=tuple(keys), primary_key=primary)
    budget = size_limit - 3  # the msgpack raw header the payload gets inside the query response
    count = min(len(keys), max(size_limit // MIN_ENCODED_KEY_LENGTH, 0))
    while count >= 0:
        if count < len(keys):
            message = f"truncated key list response, showing first {count} of {len(keys)} keys"
            resp = NodeKeyResponse(True, message, tuple(keys[:count]), primary)
        if len(encode_key_response(resp)) <= budget:
            break
        count -= 1
    return resp


# --- asking ------------------------------------------------------------------------------------------------------


def key_query_timeout(gossip_interval: float, timeout_mult: int, num_members: int) -> float:
    """serf's DefaultQueryTimeout: GossipInterval * QueryTimeoutMult * ceil(log10(n + 1))."""
    return gossip_interval * timeout_mult * max(math.ceil(math.log10(num_members + 1)), 1)


@attrs.define
class KeyQuery:
    """One key query in flight: serf's QueryResponse + KeyManager.streamKeyResp."""

    handle: int
    operation: str
    ltime: int
    id: int
    deadline: float
    response: KeyResponse
    seen: set[str] = attrs.field(factory=set)

    @property
    def complete(self) -> bool:
        return self.response.num_resp >= self.response.num_nodes

    def add(self, from_: str, payload: bytes) -> str | None:
        """Fold one member's answer in; duplicates (relayed copies) are ignored as serf's respSeen does.

        Returns the message of a successful answer that carried one (serf logs it as a warning).
        """
        if from_ in self.seen:
            return None
        self.seen.add(from_)
        resp = self.response
        resp.num_resp += 1
        try:
            answer = decode_key_response(payload)
        except SerfDecodeError as exc:
            resp.messages[from_] = f"Failed to decode key query response: {exc}"
            resp.num_err += 1
            return None
        if not answer.result:
            resp.messages[from_] = answer.message
            resp.num_err += 1
        elif answer.message:
            resp.messages[from_] = answer.message
        for key in answer.keys:
            resp.keys[key] = resp.keys.get(key, 0) + 1
        resp.primary_keys[answer.primary_key] = resp.primary_keys.get(answer.primary_key, 0) + 1
        return answer.message if answer.result and answer.message else None

    def done(self) -> KeyQueryDone:
        return KeyQueryDone(self.handle, self.operation, self.response, self.response.error())


def request_key(operation: str, key_b64: str) -> bytes:
    """The raw key a request carries: base64-decoded (serf's KeyManager), empty for list-keys."""
    if operation not in KEY_OPERATIONS:
        raise KeyringError(f"unknown key operation {operation!r}; known: {', '.join(KEY_OPERATIONS)}")
    if operation == "list-keys":
        return b""
    return decode_key(key_b64)
