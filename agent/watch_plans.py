"""Consul's watch plans (api/watch: funcs.go and plan.go), sans-IO: which endpoint each watch type asks, what
result it hands the handler, and when a blocking answer counts as a change.

``parse_plan`` turns the watch parameters into a :class:`Plan` (Consul's error texts); :class:`PlanState` is
``Plan.Run``'s bookkeeping: the index to block on next, whether an answer is news (the index moved *and* the
result differs from the last one handed over), and the retry backoff after an error (5 s x failures^2, at most
180 s).  An index that goes backwards resets the next query to index 0 (``WaitIndexVal.Next``).  The ``event``
type's index is not monotonic (uuidToUint64 of the last event), so its result is pruned to the events after the
one whose index was last seen, as Consul's eventWatch does; unlike Consul it is exempt from the backwards reset,
which in Consul re-runs the handler with every listed event about half the time an event arrives (hashicorp/consul
issues 3443 and 3742, the fix proposed in PR 3625).  The CLI (agent/cli_events.py ``watch``) does the I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import attrs

from agent.events import uuid_to_uint64
from agent.goflags import parse_bool
from agent.gostrings import to_bytes

__all__ = ["MAX_BACKOFF", "RETRY_INTERVAL", "WATCH_TYPES", "Plan", "PlanState", "WatchError", "parse_plan"]

RETRY_INTERVAL = 5.0  # retryInterval
MAX_BACKOFF = 180.0  # maxBackoffTime
WATCH_TYPES = ("key", "keyprefix", "services", "nodes", "service", "checks", "event")
_UNSET: Any = object()


class WatchError(ValueError):
    """Parameters a watch type does not take or lacks (watch.Parse's text)."""


@attrs.frozen
class Plan:
    """One watch: the GET to block on, and how an answer (status, JSON) becomes the handler's result."""

    type: str
    path: str
    params: Mapping[str, str]
    #: 404 means "nothing there" (KV), not an error: the result is None (JSON null).
    missing_ok: bool = False
    #: The index only grows (reset to 0 when it goes backwards); False for ``event``'s uuid-derived index.
    monotonic: bool = True
    shape: Callable[[Any, int | None], Any] = attrs.field(default=lambda value, _last: value)

    def result(self, status: int, value: Any, last_index: int | None) -> Any:
        """The result for the handler from one answer (``last_index``: the index last seen, for ``event``)."""
        if status == 404 and self.missing_ok:
            return None
        return self.shape(value, last_index)


def _kv_pair(entry: Mapping[str, Any]) -> dict[str, Any]:
    """api.KVPair's fields in its order (the HTTP answer leaves Session out when empty)."""
    return {"Key": entry.get("Key", ""), "CreateIndex": entry.get("CreateIndex", 0),
            "ModifyIndex": entry.get("ModifyIndex", 0), "LockIndex": entry.get("LockIndex", 0),
            "Flags": entry.get("Flags", 0), "Value": entry.get("Value"), "Session": entry.get("Session", "")}


def _single_pair(value: Any, _last: int | None) -> Any:
    return _kv_pair(value[0]) if isinstance(value, list) and value else None


def _pairs(value: Any, _last: int | None) -> Any:
    return [_kv_pair(e) for e in value] if isinstance(value, list) else None


def _new_events(value: Any, last_index: int | None) -> Any:
    """eventWatch: only the events after the one whose uuidToUint64 is the last index seen."""
    events = value if isinstance(value, list) else []
    for i, event in enumerate(events):
        if last_index is not None and uuid_to_uint64(str(event.get("ID", ""))) == last_index:
            return events[i + 1:]
    return events


def _escape(segment: str) -> str:
    return quote(to_bytes(segment), safe="/:@!$&'()*+,;=-._~")


def _bool(params: dict[str, Any], name: str) -> bool:
    raw = params.pop(name, None)
    if raw is None or isinstance(raw, bool):
        return bool(raw)
    parsed = parse_bool(raw)
    if parsed is not None:
        return parsed
    raise WatchError(f'Failed to parse {name}: strconv.ParseBool: parsing "{raw}": invalid syntax')


def _string(params: dict[str, Any], name: str) -> str:
    return str(params.pop(name, "") or "")


def parse_plan(watch_type: str, given: Mapping[str, Any]) -> Plan:
    """watch.Parse + the type's factory: the plan, or WatchError with Consul's text."""
    params = dict(given)
    query: dict[str, str] = {}
    if _bool(params, "stale"):
        query["stale"] = ""
    match watch_type:
        case "key":
            key = _string(params, "key")
            if not key:
                raise WatchError("Must specify a single key to watch")
            plan = Plan("key", "/v1/kv/" + _escape(key), query, missing_ok=True, shape=_single_pair)
        case "keyprefix":
            prefix = _string(params, "prefix")
            if not prefix:
                raise WatchError("Must specify a single prefix to watch")
            plan = Plan("keyprefix", "/v1/kv/" + _escape(prefix), {**query, "recurse": ""}, missing_ok=True,
                        shape=_pairs)
        case "services":
            plan = Plan("services", "/v1/catalog/services", query)
        case "nodes":
            plan = Plan("nodes", "/v1/catalog/nodes", query)
        case "service":
            service = _string(params, "service")
            if not service:
                raise WatchError("Must specify a single service to watch")
            tag = _string(params, "tag")
            if _bool(params, "passingonly"):
                query["passing"] = "1"
            if tag:
                query["tag"] = tag
            plan = Plan("service", "/v1/health/service/" + _escape(service), query)
        case "checks":
            service, state = _string(params, "service"), _string(params, "state")
            if service and state:
                raise WatchError("Cannot specify service and state")
            path = f"/v1/health/checks/{_escape(service)}" if service else f"/v1/health/state/{_escape(state or 'any')}"
            plan = Plan("checks", path, query)
        case "event":
            name = _string(params, "name")
            plan = Plan("event", "/v1/event/list", {**query, **({"name": name} if name else {})}, monotonic=False,
                        shape=_new_events)
        case _:
            raise WatchError(f"Unsupported watch type: {watch_type}")
    unused = sorted(k for k, v in params.items() if v not in (None, ""))
    if unused:
        raise WatchError(f"Invalid parameters: [{' '.join(unused)}]")
    return plan


@attrs.define
class PlanState:
    """Plan.Run's loop state: the next index to block on and whether an answer is news for the handler."""

    #: False for a plan whose index is not ordered (``event``): never reset because it went down.
    monotonic: bool = True
    last_index: int | None = None
    last_result: Any = _UNSET
    failures: int = 0

    def _next(self, old: int | None, index: int) -> int:
        """WaitIndexVal.Next: an index below the previous one means "start over" (0), for ordered indexes."""
        return 0 if self.monotonic and old is not None and old > index else index

    def query_index(self) -> int:
        """The ``?index=`` of the next query (0: don't block)."""
        return self.last_index or 0

    def answered(self, index: int, result: Any) -> bool:
        """Record one answer; True when the handler is due (first answer, or a new index with a new result)."""
        self.failures = 0
        if self.last_index is not None and self.last_index == index:
            return False
        old = self.last_index
        self.last_index = self._next(old, index)
        if old is not None and result == self.last_result:
            return False
        self.last_result = result
        return True

    def failed(self, index: int | None = None) -> float:
        """Record an error; the seconds to wait before retrying."""
        self.failures += 1
        self.last_index = None if index is None else self._next(self.last_index, index)
        return min(RETRY_INTERVAL * self.failures * self.failures, MAX_BACKOFF)
