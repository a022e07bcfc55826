"""The commands a Raft entry carries, and their bytes: ``msgpack [format, kind, now, {field: value}]``.

``format`` is 1; a reader refuses any other (a newer server's entry is an error, not a guess).  ``kind`` names
the command (`KINDS`).  ``now`` is the proposing leader's wall clock in nanoseconds: the only time an apply
ever sees (lock-delay), so every server computes the same state from the same log.  IDs (a session's) are
chosen by the proposer too: nothing random happens inside an apply.  Field names are short: this is in every
log entry.

`decode` checks everything and raises `CommandError` naming the field; the store answers a bad entry with that
error and changes nothing (every server does the same, so they still agree).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import immutables
import msgpack

from agent.catalog.record import CheckRecord, NodeCatalog, RecordError, ServiceRecord, from_wire, to_wire
from agent.gostrings import WIRE_ERRORS

__all__ = [
    "FORMAT",
    "KINDS",
    "MAX_TXN_OPS",
    "ACLBootstrap",
    "ACLPolicyDelete",
    "ACLPolicySet",
    "ACLRoleDelete",
    "ACLRoleSet",
    "ACLTokenDelete",
    "ACLTokenSet",
    "CatalogDeregister",
    "CatalogRegister",
    "Command",
    "CommandError",
    "InvalidateCheck",
    "InvalidateNode",
    "KVCas",
    "KVDelete",
    "KVDeleteCas",
    "KVDeleteTree",
    "KVLock",
    "KVSet",
    "KVUnlock",
    "SessionCreate",
    "SessionDestroy",
    "TombstoneReap",
    "Txn",
    "TxnOp",
    "decode",
    "encode",
]

FORMAT = 1
#: Consul's transaction limit as issue 10 states it (``maxTxnOps``; newer Consul documents 128).
MAX_TXN_OPS = 64
U64 = 2**64 - 1
_NO_MAP: immutables.Map[str, str] = immutables.Map()
#: The transaction verbs (Consul's ``api.KVOp``s, txn.mdx); ``get-or-empty`` is left out as issue 10 lists them.
TXN_VERBS = frozenset(
    {"set", "cas", "lock", "unlock", "get", "get-tree", "check-index", "check-session", "check-not-exists",
     "delete", "delete-tree", "delete-cas"}
)  # fmt: skip


class CommandError(ValueError):
    """Entry bytes that are not a command of this format; the message says what and where."""


# Field kinds: how a value is checked on decode.
_STR, _BYTES, _U64, _BOOL, _STRS, _PAIRS, _MAP = "str", "bytes", "u64", "bool", "strs", "pairs", "map"
_SIDS = "sids"  # service identities: [[name, [datacenter...]]...]


def _field(short: str, kind: str, default: Any = attrs.NOTHING, **kw: Any) -> Any:
    return attrs.field(default=default, metadata={"short": short, "kind": kind}, **kw)


@attrs.frozen
class Command:
    """Base: every command has ``now`` (leader ns); ``KIND`` names it on the wire."""

    KIND: ClassVar[str] = ""
    now: int = attrs.field(default=0, kw_only=True)


@attrs.frozen
class KVSet(Command):
    KIND = "kv-set"
    key: str = _field("k", _STR)
    value: bytes = _field("v", _BYTES, b"")
    flags: int = _field("f", _U64, 0)


@attrs.frozen
class KVCas(Command):
    """Set only if the key's ModifyIndex is ``index``; 0: only if the key is absent (``?cas=``)."""

    KIND = "kv-cas"
    key: str = _field("k", _STR)
    index: int = _field("i", _U64)
    value: bytes = _field("v", _BYTES, b"")
    flags: int = _field("f", _U64, 0)


@attrs.frozen
class KVLock(Command):
    """``?acquire=<session>``: refused (false) while ``now`` is inside the key's lock-delay."""

    KIND = "kv-lock"
    key: str = _field("k", _STR)
    session: str = _field("s", _STR)
    value: bytes = _field("v", _BYTES, b"")
    flags: int = _field("f", _U64, 0)


@attrs.frozen
class KVUnlock(Command):
    KIND = "kv-unlock"
    key: str = _field("k", _STR)
    session: str = _field("s", _STR)
    value: bytes = _field("v", _BYTES, b"")
    flags: int = _field("f", _U64, 0)


@attrs.frozen
class KVDelete(Command):
    KIND = "kv-delete"
    key: str = _field("k", _STR)


@attrs.frozen
class KVDeleteCas(Command):
    KIND = "kv-delete-cas"
    key: str = _field("k", _STR)
    index: int = _field("i", _U64)


@attrs.frozen
class KVDeleteTree(Command):
    KIND = "kv-delete-tree"
    prefix: str = _field("k", _STR)


@attrs.frozen
class SessionCreate(Command):
    """A session as validated by the leader (`leader.parse_session_create`); ``id`` chosen by the proposer."""

    KIND = "session-create"
    id: str = _field("id", _STR)
    node: str = _field("n", _STR)
    name: str = _field("nm", _STR, "")
    lock_delay: int = _field("ld", _U64, 0)
    behavior: str = _field("b", _STR, "release")
    ttl: str = _field("t", _STR, "")
    node_checks: tuple[str, ...] = _field("nc", _STRS, ())
    service_checks: tuple[tuple[str, str], ...] = _field("sc", _PAIRS, ())
    checks: tuple[str, ...] = _field("c", _STRS, ())


@attrs.frozen
class SessionDestroy(Command):
    """Explicit destroy, or a TTL expiry decided by the leader's timer: the same invalidation."""

    KIND = "session-destroy"
    id: str = _field("id", _STR)


@attrs.frozen
class InvalidateCheck(Command):
    """A check of an agent-owned node turned critical (serfHealth when the node failed): destroy its sessions."""

    KIND = "invalidate-check"
    node: str = _field("n", _STR)
    check_id: str = _field("c", _STR)


@attrs.frozen
class InvalidateNode(Command):
    """An agent-owned node left the catalog (left, reaped): destroy every session on it, as a deregistration."""

    KIND = "invalidate-node"
    node: str = _field("n", _STR)


@attrs.frozen
class TombstoneReap(Command):
    """The leader's tombstone GC: drop tombstones at or below ``index`` (Consul's ``ReapTombstones``)."""

    KIND = "tombstone-reap"
    index: int = _field("i", _U64)


@attrs.frozen
class TxnOp:
    """One ``{"KV": {...}}`` operation of ``/v1/txn``; ``index`` is the op's ``Index`` (cas, check-index...)."""

    verb: str = _field("vb", _STR)
    key: str = _field("k", _STR, "")
    value: bytes = _field("v", _BYTES, b"")
    flags: int = _field("f", _U64, 0)
    index: int = _field("i", _U64, 0)
    session: str = _field("s", _STR, "")


@attrs.frozen
class Txn(Command):
    KIND = "txn"
    ops: tuple[TxnOp, ...] = attrs.field(default=(), metadata={"short": "o", "kind": "ops"}, converter=tuple)


@attrs.frozen
class CatalogRegister(Command):
    """``/v1/catalog/register`` after the endpoint's defaults (check ids, nodes of checks, service id)."""

    KIND = "catalog-register"
    node: str = _field("n", _STR)
    address: str = _field("a", _STR, "")
    id: str = _field("id", _STR, "")
    datacenter: str = _field("dc", _STR, "")
    tagged_addresses: immutables.Map[str, str] = attrs.field(
        default=_NO_MAP, metadata={"short": "ta", "kind": _MAP}, converter=immutables.Map
    )
    node_meta: immutables.Map[str, str] = attrs.field(
        default=_NO_MAP, metadata={"short": "m", "kind": _MAP}, converter=immutables.Map
    )
    service: ServiceRecord | None = attrs.field(default=None, metadata={"short": "s", "kind": "service"})
    checks: tuple[CheckRecord, ...] = attrs.field(
        default=(), metadata={"short": "c", "kind": "checks"}, converter=tuple
    )
    skip_node_update: bool = _field("sk", _BOOL, False)


@attrs.frozen
class CatalogDeregister(Command):
    """``/v1/catalog/deregister``: a service (``service_id``), a check (``check_id``), else the whole node
    (with its sessions, unless ``keep_sessions``)."""

    KIND = "catalog-deregister"
    node: str = _field("n", _STR)
    service_id: str = _field("si", _STR, "")
    check_id: str = _field("ci", _STR, "")
    #: A whole-node deregistration that leaves the node's sessions alone: the leader removing a registration an
    #: agent's node shadows (the sessions on that name are the agent's, bound to its health).
    keep_sessions: bool = _field("ks", _BOOL, False)


@attrs.frozen
class ACLBootstrap(Command):
    """``ACL.BootstrapTokens`` (and the leader's initial management token while bootstrap is still allowed): a
    global-management token, once.  ``reset_index`` is the operator's ``acl-bootstrap-reset`` file's (0: none).
    The token's CreateTime is the entry's ``now``."""

    KIND = "acl-bootstrap"
    accessor_id: str = _field("a", _STR)
    secret_id: str = _field("s", _STR)
    description: str = _field("d", _STR, "Bootstrap Token (Global Management)")
    reset_index: int = _field("r", _U64, 0)


@attrs.frozen
class ACLTokenSet(Command):
    """``ACL.TokenSet``: ``create`` when the endpoint made a new token (IDs chosen by the proposer, or given).
    Policy and role links are (ID, name) pairs, either may be empty; the apply resolves names to IDs.
    ``secret_id`` may be empty on update (kept).  ``expiration_ttl`` (ns) is turned into ExpirationTime from
    the entry's ``now``, the token's CreateTime."""

    KIND = "acl-token-set"
    accessor_id: str = _field("a", _STR)
    secret_id: str = _field("s", _STR, "")
    description: str = _field("d", _STR, "")
    policies: tuple[tuple[str, str], ...] = _field("p", _PAIRS, ())
    roles: tuple[tuple[str, str], ...] = _field("ro", _PAIRS, ())
    service_identities: tuple[tuple[str, tuple[str, ...]], ...] = _field("si", _SIDS, ())
    node_identities: tuple[tuple[str, str], ...] = _field("ni", _PAIRS, ())
    local: bool = _field("l", _BOOL, False)
    expiration_time: int = _field("e", _U64, 0)
    expiration_ttl: int = _field("t", _U64, 0)
    create: bool = _field("c", _BOOL, False)


@attrs.frozen
class ACLTokenDelete(Command):
    KIND = "acl-token-delete"
    accessor_id: str = _field("a", _STR)


@attrs.frozen
class ACLPolicySet(Command):
    """``ACL.PolicySet`` after the endpoint checked the name and the rules (`acl.check_policy`); ``create`` when
    the proposer chose a new ID."""

    KIND = "acl-policy-set"
    id: str = _field("id", _STR)
    name: str = _field("n", _STR)
    description: str = _field("d", _STR, "")
    rules: str = _field("r", _STR, "")
    datacenters: tuple[str, ...] = _field("dc", _STRS, ())
    create: bool = _field("c", _BOOL, False)


@attrs.frozen
class ACLPolicyDelete(Command):
    KIND = "acl-policy-delete"
    id: str = _field("id", _STR)


@attrs.frozen
class ACLRoleSet(Command):
    KIND = "acl-role-set"
    id: str = _field("id", _STR)
    name: str = _field("n", _STR)
    description: str = _field("d", _STR, "")
    policies: tuple[tuple[str, str], ...] = _field("p", _PAIRS, ())
    service_identities: tuple[tuple[str, tuple[str, ...]], ...] = _field("si", _SIDS, ())
    node_identities: tuple[tuple[str, str], ...] = _field("ni", _PAIRS, ())
    create: bool = _field("c", _BOOL, False)


@attrs.frozen
class ACLRoleDelete(Command):
    KIND = "acl-role-delete"
    id: str = _field("id", _STR)


_CLASSES: tuple[type[Command], ...] = (
    KVSet, KVCas, KVLock, KVUnlock, KVDelete, KVDeleteCas, KVDeleteTree, SessionCreate, SessionDestroy,
    InvalidateCheck, InvalidateNode, TombstoneReap, Txn, CatalogRegister, CatalogDeregister, ACLBootstrap,
    ACLTokenSet, ACLTokenDelete, ACLPolicySet, ACLPolicyDelete, ACLRoleSet, ACLRoleDelete,
)  # fmt: skip
KINDS: Mapping[str, type[Command]] = {cls.KIND: cls for cls in _CLASSES}


# ------------------------------------------------------------------ encoding


def _body(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in attrs.fields(type(obj)):
        short = f.metadata.get("short")
        if short is None:
            continue
        value = getattr(obj, f.name)
        if f.default is not attrs.NOTHING and value == f.default:
            continue  # defaults stay off the wire
        kind = f.metadata["kind"]
        if kind == "ops":
            value = [_body(op) for op in value]
        elif kind == "service":
            value = to_wire(NodeCatalog("", 0, services=(value,)))["s"][0]
        elif kind == "checks":
            value = to_wire(NodeCatalog("", 0, checks=value))["c"]
        elif kind == _MAP:
            value = {k: value[k] for k in sorted(value)}
        elif kind == _PAIRS:
            value = [list(p) for p in value]
        elif kind == _SIDS:
            value = [[name, list(dcs)] for name, dcs in value]
        elif kind == _STRS:
            value = list(value)
        out[short] = value
    return out


def encode(command: Command) -> bytes:
    """The entry data for ``command`` (deterministic: same command, same bytes)."""
    kind = type(command).KIND
    if KINDS.get(kind) is not type(command):
        raise TypeError(f"not a state command: {command!r}")
    return msgpack.packb([FORMAT, kind, command.now, _body(command)], use_bin_type=True, unicode_errors=WIRE_ERRORS)


# ------------------------------------------------------------------ decoding


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise CommandError(f"{what}: expected a string, got {type(value).__name__}")
    return value


def _check(value: Any, kind: str, what: str) -> Any:
    if kind == _STR:
        return _text(value, what)
    if kind == _BYTES:
        if not isinstance(value, bytes):
            raise CommandError(f"{what}: expected bytes, got {type(value).__name__}")
        return value
    if kind == _U64:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CommandError(f"{what}: expected an unsigned integer, got {type(value).__name__}")
        if not 0 <= value <= U64:
            raise CommandError(f"{what}: {value} is out of range (0..2^64-1)")
        return value
    if kind == _BOOL:
        if not isinstance(value, bool):
            raise CommandError(f"{what}: expected a bool, got {type(value).__name__}")
        return value
    if kind == _STRS:
        if not isinstance(value, list):
            raise CommandError(f"{what}: expected a list, got {type(value).__name__}")
        return tuple(_text(v, f"{what}[{i}]") for i, v in enumerate(value))
    if kind == _PAIRS:
        if not isinstance(value, list):
            raise CommandError(f"{what}: expected a list, got {type(value).__name__}")
        pairs = []
        for i, pair in enumerate(value):
            if not isinstance(pair, list) or len(pair) != 2:
                raise CommandError(f"{what}[{i}]: expected a pair of strings")
            pairs.append((_text(pair[0], f"{what}[{i}]"), _text(pair[1], f"{what}[{i}]")))
        return tuple(pairs)
    if kind == _SIDS:
        if not isinstance(value, list):
            raise CommandError(f"{what}: expected a list, got {type(value).__name__}")
        identities = []
        for i, item in enumerate(value):
            if not isinstance(item, list) or len(item) != 2:
                raise CommandError(f"{what}[{i}]: expected a [service name, datacenters] pair")
            identities.append((_text(item[0], f"{what}[{i}]"), _check(item[1], _STRS, f"{what}[{i}].datacenters")))
        return tuple(identities)
    if kind == _MAP:
        if not isinstance(value, dict):
            raise CommandError(f"{what}: expected a map, got {type(value).__name__}")
        return immutables.Map({_text(k, what): _text(v, f"{what}[{k!r}]") for k, v in value.items()})
    if kind == "ops":
        if not isinstance(value, list):
            raise CommandError(f"{what}: expected a list, got {type(value).__name__}")
        if len(value) > MAX_TXN_OPS:
            raise CommandError(f"{what}: {len(value)} operations, at most {MAX_TXN_OPS}")
        ops = tuple(_decode_fields(TxnOp, raw, f"{what}[{i}]") for i, raw in enumerate(value))
        for i, op in enumerate(ops):
            if op.verb not in TXN_VERBS:
                raise CommandError(f"{what}[{i}].verb: unknown KV verb {op.verb!r}")
        return ops
    try:
        if kind == "service":
            return from_wire({"n": "", "v": 0, "s": [value]}).services[0]
        return from_wire({"n": "", "v": 0, "c": value}).checks
    except RecordError as exc:
        raise CommandError(f"{what}: {exc}") from None


@functools.cache
def _short_fields(cls: type) -> dict[str, attrs.Attribute[Any]]:
    """A command class's wire fields by their short name (read once per class: decode runs on every apply)."""
    return {f.metadata["short"]: f for f in attrs.fields(cls) if "short" in f.metadata}


def _decode_fields(cls: type, raw: Any, what: str, **given: Any) -> Any:
    if not isinstance(raw, dict):
        raise CommandError(f"{what}: expected a map, got {type(raw).__name__}")
    fields = _short_fields(cls)
    kwargs: dict[str, Any] = dict(given)
    for short, value in raw.items():
        f = fields.get(short) if isinstance(short, str) else None
        if f is None:
            raise CommandError(f"{what}: unknown field {short!r}")
        kwargs[f.name] = _check(value, f.metadata["kind"], f"{what}.{f.name}")
    for f in fields.values():
        if f.default is attrs.NOTHING and f.name not in kwargs:
            raise CommandError(f"{what}: missing field {f.name!r}")
    return cls(**kwargs)


def unpack(data: bytes, what: str, error: type[Exception]) -> Any:
    """msgpack ``data`` read with the Go-string rule (as it was packed), or ``error`` naming ``what``."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, unicode_errors=WIRE_ERRORS)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise error(f"{what}: not msgpack ({type(exc).__name__}: {exc})") from None


def decode(data: bytes) -> Command:
    """The command in entry ``data``; `CommandError` says precisely what is wrong."""
    raw = unpack(data, "state command", CommandError)
    if not isinstance(raw, list) or len(raw) != 4:
        raise CommandError("state command: expected [format, kind, now, body]")
    fmt, kind, now, body = raw
    if fmt != FORMAT or isinstance(fmt, bool):
        raise CommandError(f"state command: format {fmt!r} is not {FORMAT}")
    if not isinstance(kind, str) or kind not in KINDS:
        raise CommandError(f"state command: unknown kind {kind!r}")
    return _decode_fields(KINDS[kind], body, kind, now=_check(now, _U64, f"{kind}.now"))
