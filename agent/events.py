"""Consul's user events over Serf (agent/user_event.go, agent/event_endpoint.go): the record, its wire form, the
filters a receiving agent applies and the index of a list of events; pure (no trio: the CLI's watch plans use it).
The ring of the last 256 events an agent answers ``/v1/event/list`` from is agent/event_log.py.

On the wire an event is a Serf user event named ``consul:event:<name>`` (Consul's ``userEventName``), fired with
coalescing off, whose payload is the ``UserEvent`` struct msgpack-encoded with Consul's handle (``WriteExt``:
strings as str, ``[]byte`` as bin) and no leading message-type byte.  The struct's keys are its codec tags:
``ID``, ``n``, ``p`` (omitempty), ``nf``, ``sf``, ``tf`` (omitempty), ``v``; ``LTime`` is not encoded (the
receiver takes Serf's Lamport time).  Decoding accepts any key order, unknown keys, and a payload written as str
(older Consul handles wrote ``[]byte`` as raw).

The filters are regular expressions matched anywhere in the string (Go's ``MatchString``): the node filter
against the receiving agent's node name, the service filter against its local service IDs, the tag filter
against the tags of a service that matched.  Python's ``re`` stands in for Go's RE2 (the common syntax is the same).
"""

from __future__ import annotations

import base64
import logging
import re
import uuid
from collections.abc import Iterable
from typing import Any

import attrs
import msgpack

from protocol.codec import go_str

log = logging.getLogger("agent")  # the agent's log, where these lines always were

__all__ = [
    "BUFFER_SIZE",
    "REMOTE_EXEC_NAME",
    "SERF_PREFIX",
    "USER_EVENT_MAX_VERSION",
    "EventDecodeError",
    "UserEvent",
    "accepts",
    "consul_name",
    "decode",
    "encode",
    "ingest_user_event",
    "new_event",
    "serf_name",
    "uuid_to_uint64",
    "validate",
]

SERF_PREFIX = "consul:event:"  # Consul's userEventPrefix
USER_EVENT_MAX_VERSION = 1  # userEventMaxVersion
BUFFER_SIZE = 256  # the agent's eventBuf
REMOTE_EXEC_NAME = "_rexec"  # remoteExecName: `consul exec`'s event, never listed (exec is not implemented here)


class EventDecodeError(ValueError):
    """A ``consul:event:`` payload that is not a msgpack UserEvent."""


@attrs.frozen
class UserEvent:
    """Consul's UserEvent; ``ltime`` is Serf's Lamport time on receipt (0 in the answer to a fire)."""

    id: str
    name: str
    payload: bytes | None = None
    node_filter: str = ""
    service_filter: str = ""
    tag_filter: str = ""
    version: int = USER_EVENT_MAX_VERSION
    ltime: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON Consul answers (Go's []byte is base64, nil is null)."""
        return {
            "ID": self.id,
            "Name": self.name,
            "Payload": None if self.payload is None else base64.b64encode(self.payload).decode("ascii"),
            "NodeFilter": self.node_filter,
            "ServiceFilter": self.service_filter,
            "TagFilter": self.tag_filter,
            "Version": self.version,
            "LTime": self.ltime,
        }


def _compile(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(f"Invalid {what} filter: error parsing regexp: {err}: `{pattern}`") from None


def validate(event: UserEvent) -> None:
    """validateUserEventParams: a name, no tag filter without a service filter, filters that compile."""
    if not event.name:
        raise ValueError("User event missing name")
    if event.tag_filter and not event.service_filter:
        raise ValueError("Cannot provide tag filter without service filter")
    for pattern, what in ((event.node_filter, "node"), (event.service_filter, "service"), (event.tag_filter, "tag")):
        if pattern:
            _compile(pattern, what)


def new_event(name: str, payload: bytes | None = None, *, node: str = "", service: str = "", tag: str = "",
              event_id: str | None = None) -> UserEvent:  # fmt: skip
    """A validated event to fire, with a fresh UUID and the current version (raises ValueError as Consul words it)."""
    event = UserEvent(event_id or str(uuid.uuid4()), name, payload, node, service, tag, USER_EVENT_MAX_VERSION)
    validate(event)
    return event


def serf_name(name: str) -> str:
    """userEventName: the Serf event name Consul fires."""
    return SERF_PREFIX + name


def consul_name(serf_event_name: str) -> str | None:
    """rawUserEventName: the Consul event name of a Serf event, None for Serf events that are not Consul's."""
    if not serf_event_name.startswith(SERF_PREFIX):
        return None
    return serf_event_name[len(SERF_PREFIX):]


def encode(event: UserEvent) -> bytes:
    """encodeMsgPack(&UserEvent): a map in the struct's field order, omitempty fields left out."""
    fields: dict[str, Any] = {"ID": event.id, "n": event.name}
    if event.payload:
        fields["p"] = event.payload
    fields["nf"] = event.node_filter
    fields["sf"] = event.service_filter
    if event.tag_filter:
        fields["tf"] = event.tag_filter
    fields["v"] = event.version
    return msgpack.packb(fields, use_bin_type=True)


def _text(value: Any, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return go_str(value)
    raise EventDecodeError(f"user event field {key!r}: expected a string, got {type(value).__name__}")


def decode(data: bytes, ltime: int = 0) -> UserEvent:
    """decodeMsgPack into a UserEvent (``ltime`` from Serf); EventDecodeError says what is wrong."""
    try:
        raw = msgpack.unpackb(data, raw=True, strict_map_key=False, use_list=True)
    except (ValueError, msgpack.UnpackException) as err:
        raise EventDecodeError(f"user event payload is not msgpack: {err}") from None
    if not isinstance(raw, dict):
        raise EventDecodeError(f"user event payload is a {type(raw).__name__}, not a map")
    fields = {(go_str(k) if isinstance(k, bytes) else k): v for k, v in raw.items()}
    payload = fields.get("p")
    if payload is not None and not isinstance(payload, bytes):
        raise EventDecodeError(f"user event field 'p': expected bytes, got {type(payload).__name__}")
    version = fields.get("v", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise EventDecodeError(f"user event field 'v': expected an integer, got {type(version).__name__}")
    return UserEvent(
        id=_text(fields.get("ID"), "ID"),
        name=_text(fields.get("n"), "n"),
        payload=payload,
        node_filter=_text(fields.get("nf"), "nf"),
        service_filter=_text(fields.get("sf"), "sf"),
        tag_filter=_text(fields.get("tf"), "tf"),
        version=version,
        ltime=ltime,
    )


def accepts(event: UserEvent, node_name: str, services: Iterable[tuple[str, Iterable[str]]]) -> bool:
    """shouldProcessUserEvent: does this agent (its node name, its local services as (ID, tags)) take the event?

    A filter that does not compile rejects the event (Consul logs it and drops it; the sender validated it).
    """
    try:
        if event.node_filter and not _compile(event.node_filter, "node").search(node_name):
            return False
        if not event.service_filter:
            return True
        service_re = _compile(event.service_filter, "service")
        tag_re = _compile(event.tag_filter, "tag") if event.tag_filter else None
    except ValueError:
        return False
    for service_id, tags in services:
        if not service_re.search(service_id):
            continue
        if tag_re is None or any(tag_re.search(tag) for tag in tags):
            return True
    return False


def uuid_to_uint64(event_id: str) -> int:
    """Consul's uuidToUint64: the UUID's two 64-bit halves XORed, the index of /v1/event/list."""
    hex_digits = event_id.replace("-", "")
    try:
        return int(hex_digits[:16], 16) ^ int(hex_digits[16:32], 16)
    except ValueError:
        return 0  # an ID that is not a UUID (a foreign sender's): no index of its own


def ingest_user_event(serf_event_name: str, payload: bytes, ltime: int, node_name: str,
                      services: Iterable[tuple[str, Iterable[str]]]) -> UserEvent | None:
    """Consul's handleEvents/ingestUserEvent: a ``consul:event:`` Serf event decoded and filtered for this agent
    (its node name, its services with their tags); None, after logging why, for what the agent does not keep."""
    name = consul_name(serf_event_name)
    if name is None:
        return None  # a plain Serf event (or another consul: one): not a Consul user event
    try:
        event = decode(payload, ltime)
    except EventDecodeError as err:
        log.error("agent: Failed to decode event %r: %s", name, err)
        return None
    if event.version > USER_EVENT_MAX_VERSION:
        log.warning("agent: Event version %d may have unsupported features (%s)", event.version, event.name)
    if not accepts(event, node_name, services):
        log.debug("agent: event %s (%s) filtered out", event.name, event.id)
        return None
    if event.name == REMOTE_EXEC_NAME:  # ingestUserEvent with disable_remote_exec (Consul's default)
        log.info("agent: ignoring remote exec event (%s), disabled.", event.id)
        return None
    log.debug("agent: new event: %s (%s)", event.name, event.id)
    return event
