"""The leader's side of sessions: what it decides before proposing, and the TTL timers it keeps.

Consul decides these outside the state machine (hashicorp/consul ``agent/session_endpoint.go``,
``agent/consul/session_endpoint.go``, ``session_ttl.go``, ``structs.go``; wave2-anchors §2.2), and so do we:

* `parse_session_create`: ``/v1/session/create``'s body (keys matched case-insensitively, as Go's
  encoding/json does) with Consul's defaults (node = this agent, serfHealth, 15 s lock-delay, release) and
  validation texts, into a `commands.SessionCreate` with the ID the proposer chose;
* `decode_lock_delay`: a duration string, or a number; under 1000 it means seconds, else nanoseconds;
* `session_create_error`: the node and its checks must exist and no check may be critical (``sessionCreateTxn``,
  ``validateSessionChecksTxn``) -- checked against the merged catalog, since agent nodes are not in the store;
* `SessionTimers`: renewals are not in the log.  The leader arms ``2 x TTL`` (``SessionTTLMultiplier``) on
  create, renew and when it takes office, and proposes a `commands.SessionDestroy` for what `expired` lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from agent.durations import go_duration, parse_duration

from .commands import CatalogDeregister, SessionCreate
from .tables import BEHAVIOR_DELETE, BEHAVIOR_RELEASE, State, node_key

__all__ = [
    "LOCK_DELAY_MIN_THRESHOLD",
    "SESSION_TTL_MAX_NS",
    "SESSION_TTL_MIN_NS",
    "SESSION_TTL_MULTIPLIER",
    "RequestError",
    "SessionTimers",
    "decode_lock_delay",
    "parse_session_create",
    "session_create_error",
    "shadowed_registrations",
    "strings_field",
    "ttl_ns",
]

SERF_CHECK = "serfHealth"
LOCK_DELAY_MIN_THRESHOLD = 1000
DEFAULT_LOCK_DELAY_NS = 15 * 10**9
SESSION_TTL_MIN_NS = 10 * 10**9  # Consul's session_ttl_min default
SESSION_TTL_MAX_NS = 86400 * 10**9  # structs.SessionTTLMax
SESSION_TTL_MULTIPLIER = 2


class RequestError(ValueError):
    """A request Consul refuses: ``status`` 400 for a body it cannot decode, 500 for a rule (its RPC's error)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def decode_lock_delay(value: Any) -> int:
    """``FixupLockDelay``: ``"15s"`` -> 15e9; ``15`` -> 15 s; ``15000000000`` -> 15 s (numbers truncate to ns
    as Go's ``time.Duration(float)``, then anything under 1000 is taken as seconds)."""
    if isinstance(value, str):
        try:
            ns = _ns(parse_duration(value))
        except ValueError as exc:
            raise RequestError(f"Request decode failed: {exc}", 400) from None
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        ns = int(value)
    else:
        raise RequestError(f"Request decode failed: LockDelay: cannot decode {value!r}", 400)
    return ns * 10**9 if ns < LOCK_DELAY_MIN_THRESHOLD else ns


def ttl_ns(ttl: str) -> int:
    """A stored TTL string in ns (0 for none); stored TTLs were validated at create."""
    return _ns(parse_duration(ttl)) if ttl else 0


def strings_field(value: Any, what: str) -> tuple[str, ...]:
    """A request's list of strings (absent: empty), else Consul's decode error naming the field."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"Request decode failed: {what}: expected a list of strings", 400)
    return tuple(value)


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RequestError(f"Request decode failed: {what}: expected a string", 400)
    return value


def parse_session_create(body: Mapping[str, Any] | None, *, agent_node: str, session_id: str) -> SessionCreate:
    """The session ``/v1/session/create`` would propose; `RequestError` with Consul's text otherwise."""
    fields = {k.lower(): v for k, v in (body or {}).items()}
    node = _text(fields.get("node"), "Node") if "node" in fields else agent_node
    checks = strings_field(fields["checks"], "Checks") if "checks" in fields else (SERF_CHECK,)
    node_checks = strings_field(fields["nodechecks"], "NodeChecks") if "nodechecks" in fields else (SERF_CHECK,)
    service_checks: list[tuple[str, str]] = []
    raw_service_checks = fields.get("servicechecks")
    if raw_service_checks is not None:
        if not isinstance(raw_service_checks, list):
            raise RequestError("Request decode failed: ServiceChecks: expected a list", 400)
        for item in raw_service_checks:
            if not isinstance(item, dict):
                raise RequestError("Request decode failed: ServiceChecks: expected objects", 400)
            lowered = {k.lower(): v for k, v in item.items()}
            service_checks.append((_text(lowered.get("id"), "ServiceChecks.ID"),
                                   _text(lowered.get("namespace"), "ServiceChecks.Namespace")))  # fmt: skip
    lock_delay = decode_lock_delay(fields["lockdelay"]) if "lockdelay" in fields else DEFAULT_LOCK_DELAY_NS
    # fixupEmptySessionChecks: an explicit empty Checks empties NodeChecks; the default Checks defers to
    # NodeChecks; an explicit empty NodeChecks drops the default Checks.
    if not checks:
        node_checks = ()
    elif checks == (SERF_CHECK,) or not node_checks:
        checks = ()
    behavior = _text(fields.get("behavior"), "Behavior") or BEHAVIOR_RELEASE
    if behavior not in (BEHAVIOR_RELEASE, BEHAVIOR_DELETE):
        raise RequestError(f"Invalid Behavior setting '{behavior}'", 500)
    ttl = _text(fields.get("ttl"), "TTL")
    if ttl:
        try:
            ns = _ns(parse_duration(ttl))
        except ValueError as exc:
            raise RequestError(f"Session TTL '{ttl}' invalid: {exc}", 500) from None
        if ns != 0 and not SESSION_TTL_MIN_NS <= ns <= SESSION_TTL_MAX_NS:
            raise RequestError(
                f"Invalid Session TTL '{ns}', must be between "
                f"[{go_duration(SESSION_TTL_MIN_NS / 1e9)}={go_duration(SESSION_TTL_MAX_NS / 1e9)}]",
                500,
            )
    if not node:
        raise RequestError("Must provide Node", 500)
    return SessionCreate(
        id=session_id,
        node=node,
        name=_text(fields.get("name"), "Name"),
        lock_delay=lock_delay,
        behavior=behavior,
        ttl=ttl,
        node_checks=node_checks,
        service_checks=tuple(service_checks),
        checks=checks,
    )


def session_create_error(state: State, cmd: SessionCreate, agent_nodes: Mapping[str, Mapping[str, str]]) -> str | None:
    """Consul's refusal of a create, or None.  ``agent_nodes``: lower-cased node name -> {check id: status} for
    the nodes the gossip catalog holds (their serfHealth included); registered nodes are read from ``state``."""
    key = node_key(cmd.node)
    checks: dict[str, str]
    if key in agent_nodes:
        checks = dict(agent_nodes[key])
    elif key in state.nodes:
        checks = {c.check.id: c.check.status for k, c in state.checks.items() if k[0] == key}
    else:
        return "Missing node registration"
    for check in (*cmd.checks, *cmd.node_checks, *(c[0] for c in cmd.service_checks)):
        status = checks.get(check)
        if status is None:
            return f"Missing check '{check}' registration"
        if status == "critical":
            return f"Check '{check}' is in critical state"
    return None


class SessionTimers:
    """The leader's TTL deadlines (ns, leader clock).  Not replicated: a new leader re-arms them all, which is
    exactly Consul's "timers are reset on leader failover"."""

    def __init__(self) -> None:
        self.deadlines: dict[str, int] = {}

    def arm_all(self, state: State, now: int) -> None:
        """On taking office: every session with a TTL gets a full ``2 x TTL`` from now."""
        self.deadlines = {
            s.id: now + SESSION_TTL_MULTIPLIER * ttl_ns(s.ttl) for s in state.sessions.values() if ttl_ns(s.ttl)
        }

    def renew(self, state: State, session_id: str, now: int) -> bool:
        """``/v1/session/renew`` (and create): False when the session is unknown (the endpoint answers 404)."""
        session = state.sessions.get(session_id)
        if session is None:
            self.deadlines.pop(session_id, None)
            return False
        ttl = ttl_ns(session.ttl)
        if ttl:
            self.deadlines[session_id] = now + SESSION_TTL_MULTIPLIER * ttl
        return True

    def clear(self, session_id: str) -> None:
        self.deadlines.pop(session_id, None)

    def expired(self, state: State, now: int) -> list[str]:
        """Sessions past their deadline, sorted: propose a destroy for each.  Forgets sessions gone."""
        for gone in [i for i in self.deadlines if i not in state.sessions]:
            del self.deadlines[gone]
        return sorted(i for i, deadline in self.deadlines.items() if deadline <= now)

    def next_deadline(self) -> int | None:
        """When the leader's timer should next look (None: no TTL session)."""
        return min(self.deadlines.values(), default=None)


def shadowed_registrations(state: State, agent_nodes: Mapping[str, Mapping[str, str]]) -> list[CatalogDeregister]:
    """Registrations an agent's node shadows (docs/state.md rule 1), to deregister: a registered node whose
    name (any case) is a node of the gossip catalog.  The agent's record wins for that name, as Consul's
    anti-entropy removes from an agent's node whatever the agent does not hold; the node's sessions stay (they
    are the agent's, and follow its health), sessions bound to the registered checks go with those checks."""
    return [CatalogDeregister(node=node.node, keep_sessions=True)
            for key, node in sorted(state.nodes.items()) if key in agent_nodes]
