"""One node's share of the catalog: the record its owner builds, versions, and every other agent copies.

Why one record per node: there is no Raft leader to order writes, but each node is the only writer of its own
services and checks (Consul's anti-entropy makes the same assumption: the agent is the source of truth for what
runs on it).  A whole-record copy with an owner-assigned version is then conflict-free: the higher version wins,
and nothing needs merging.  Records travel as plain msgpack maps with short keys (``to_wire``/``from_wire``);
``from_wire`` checks every field, since the bytes come from the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import attrs
import immutables
import msgpack

from agent.gostrings import WIRE_ERRORS

__all__ = [
    "MAX_VERSION",
    "Announcement",
    "CheckRecord",
    "NodeCatalog",
    "RecordError",
    "ServiceRecord",
    "check_from_wire",
    "check_int",
    "check_to_wire",
    "from_wire",
    "frozen_map",
    "meta_from_wire",
    "service_from_wire",
    "service_to_wire",
    "text_from_wire",
    "to_wire",
]  # fmt: skip

STATUSES = ("passing", "warning", "critical")
_HEX = "0123456789abcdef"
MAX_VERSION = 2**62  # record versions are wall-clock ms (about 2**41 today); anything beyond is refused at decode
_INT_LIMITS = {"port": 65535, "weights_passing": 2**31 - 1, "weights_warning": 2**31 - 1, "version": MAX_VERSION}


class RecordError(ValueError):
    """A record from the network that is not one (wrong type, missing key): the message says which field."""


def frozen_map(value: Mapping[str, str] | None) -> immutables.Map[str, str]:
    """An attrs converter: a string map (or None) as an immutable map, shared as is when it already is one."""
    if isinstance(value, immutables.Map):
        return value
    return immutables.Map(value or {})


@attrs.frozen
class ServiceRecord:
    """A service instance as the catalog stores it (Consul's NodeService, the fields this agent has)."""

    id: str
    name: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: immutables.Map[str, str] = attrs.field(factory=immutables.Map, converter=frozen_map)
    weights_passing: int = 1
    weights_warning: int = 1
    enable_tag_override: bool = False
    kind: str = ""


@attrs.frozen
class CheckRecord:
    """A health check with its current status (Consul's HealthCheck without node or indexes)."""

    id: str
    name: str
    status: str = "critical"
    output: str = ""
    notes: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""
    interval: str = ""
    timeout: str = ""


@attrs.frozen
class NodeCatalog:
    """Node ``node``'s services, checks and node meta at owner version ``version`` (strictly increasing)."""

    node: str
    version: int
    services: tuple[ServiceRecord, ...] = ()
    checks: tuple[CheckRecord, ...] = ()
    meta: immutables.Map[str, str] = attrs.field(factory=immutables.Map, converter=frozen_map)

    def same_content(self, other: NodeCatalog | None) -> bool:
        """Whether ``other`` holds the same data (whatever its version): no need to announce a new version."""
        return (
            other is not None
            and self.services == other.services
            and self.checks == other.checks
            and self.meta == other.meta
        )


# ------------------------------------------------------------------ wire form

_SERVICE_KEYS = (
    ("i", "id", str), ("n", "name", str), ("t", "tags", tuple), ("a", "address", str), ("p", "port", int),
    ("m", "meta", dict), ("wp", "weights_passing", int), ("ww", "weights_warning", int),
    ("o", "enable_tag_override", bool), ("k", "kind", str),
)  # fmt: skip
_CHECK_KEYS = (
    ("i", "id", str), ("n", "name", str), ("s", "status", str), ("o", "output", str), ("no", "notes", str),
    ("si", "service_id", str), ("sn", "service_name", str), ("st", "service_tags", tuple), ("t", "type", str),
    ("iv", "interval", str), ("to", "timeout", str),
)  # fmt: skip


def check_int(value: Any, what: str) -> int:
    """An integer field from the network, within its bounds (``what`` ends with the field's name)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{what}: expected an integer, got {type(value).__name__}")
    limit = _INT_LIMITS.get(what.rpartition(".")[2], MAX_VERSION)
    if not 0 <= value <= limit:
        raise RecordError(f"{what}: {value} is out of range (0..{limit})")
    return value


def _fields_to_wire(obj: Any, keys: tuple[tuple[str, str, type], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for short, name, kind in keys:
        value = getattr(obj, name)
        if kind is tuple:
            value = list(value)
        elif kind is dict:
            value = dict(value)
        out[short] = value
    return out


def service_to_wire(service: ServiceRecord) -> dict[str, Any]:
    """One service as a msgpack-ready map with short keys (records, registrations, the registered mirror)."""
    return _fields_to_wire(service, _SERVICE_KEYS)


def check_to_wire(check: CheckRecord) -> dict[str, Any]:
    return _fields_to_wire(check, _CHECK_KEYS)


def to_wire(record: NodeCatalog) -> dict[str, Any]:
    """The record as a msgpack-ready map (short keys: a 30-node digest round must stay small)."""
    return {
        "n": record.node,
        "v": record.version,
        "s": [service_to_wire(s) for s in record.services],
        "c": [check_to_wire(c) for c in record.checks],
        "m": dict(record.meta),
    }


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return [[k, _canonical(value[k])] for k in sorted(value)]
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def record_digest(record: NodeCatalog) -> str:
    """A short hash of the record's whole content and version, independent of map order and process.

    The owner announces it with the version (``Announcement``); a copy whose digest differs is not the owner's.
    """
    data = msgpack.packb(_canonical(to_wire(record)), use_bin_type=True, unicode_errors=WIRE_ERRORS)
    return hashlib.sha256(data).hexdigest()[:16]


@attrs.frozen
class Announcement:
    """What an owner publishes in its ``tcv`` tag: its record's version and content digest (``version:digest``).

    Every other agent accepts that owner's record only if it matches: so a record cannot be forged by a sender
    that cannot forge the owner's own gossip.
    """

    version: int
    digest: str

    @classmethod
    def of(cls, record: NodeCatalog) -> Announcement:
        return cls(record.version, record_digest(record))

    @classmethod
    def parse(cls, tag: str | None) -> Announcement | None:
        """The tag's value; None when absent or malformed (then the member is not a catalog peer)."""
        if tag is None:
            return None
        version, sep, digest = tag.partition(":")
        if not sep or not (version.isascii() and version.isdigit()) or len(digest) != 16 or digest.strip(_HEX):
            return None
        number = int(version)
        return cls(number, digest) if number <= MAX_VERSION else None

    def tag(self) -> str:
        return f"{self.version}:{self.digest}"

    def matches(self, record: NodeCatalog) -> bool:
        return record.version == self.version and record_digest(record) == self.digest


def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    if not isinstance(value, str):
        raise RecordError(f"{what}: expected a string, got {type(value).__name__}")
    return value


def _convert(value: Any, kind: type, what: str) -> Any:
    if kind is str:
        return _text(value, what)
    if kind is bool:
        if not isinstance(value, bool):
            raise RecordError(f"{what}: expected a bool")
        return value
    if kind is int:
        return check_int(value, what)
    if kind is tuple:
        if not isinstance(value, list | tuple):
            raise RecordError(f"{what}: expected a list")
        return tuple(_text(v, what) for v in value)
    if not isinstance(value, dict):
        raise RecordError(f"{what}: expected a map")
    return {_text(k, what): _text(v, what) for k, v in value.items()}


def _fields_from_wire(raw: Any, keys: tuple[tuple[str, str, type], ...], what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise RecordError(f"{what}: expected a map")
    raw = {_text(k, what): v for k, v in raw.items()}
    out: dict[str, Any] = {}
    for short, name, kind in keys:
        if short in raw:
            out[name] = _convert(raw[short], kind, f"{what}.{name}")
    for required in ("id", "name"):
        if required not in out:
            raise RecordError(f"{what}: missing {required}")
    return out


def service_from_wire(raw: Any, what: str) -> ServiceRecord:
    """A service from the network; RecordError names ``what`` and the bad field."""
    return ServiceRecord(**_fields_from_wire(raw, _SERVICE_KEYS, what))


def check_from_wire(raw: Any, what: str) -> CheckRecord:
    """A check from the network, its status one of `STATUSES`."""
    check = CheckRecord(**_fields_from_wire(raw, _CHECK_KEYS, what))
    if check.status not in STATUSES:
        raise RecordError(f"{what} {check.id}: bad status {check.status!r}")
    return check


def text_from_wire(value: Any, what: str) -> str:
    """A string field from the network (bytes as surrogate escapes, as every Go string here)."""
    return _text(value, what)


def meta_from_wire(value: Any, what: str) -> dict[str, str]:
    """A string-to-string map from the network."""
    return _convert(value, dict, what)  # type: ignore[no-any-return]


def from_wire(raw: Any) -> NodeCatalog:
    """A record from the network; RecordError (a ValueError) names the first bad field."""
    if not isinstance(raw, dict):
        raise RecordError("record: expected a map")
    raw = {_text(k, "record"): v for k, v in raw.items()}
    node = _convert(raw.get("n"), str, "record.node")
    version = _convert(raw.get("v"), int, "record.version")
    services = tuple(service_from_wire(s, f"record {node}: service")
                     for s in _convert_list(raw.get("s", []), "services"))
    checks = tuple(check_from_wire(c, f"record {node}: check") for c in _convert_list(raw.get("c", []), "checks"))
    meta = _convert(raw.get("m", {}), dict, f"record {node}: meta")
    return NodeCatalog(node=node, version=version, services=services, checks=checks, meta=meta)


def _convert_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise RecordError(f"record: {what}: expected a list")
    return list(value)
