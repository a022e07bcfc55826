"""The bodies of ``/v1/acl/token``, ``/policy`` and ``/role`` writes into store commands (sans-IO).

Go's ``encoding/json`` decodes them into ``structs.ACLToken``/``ACLPolicy``/``ACLRole``: keys match field names
case-insensitively, unknown keys are ignored, a wrong type is an error naming the field; Consul's endpoints
answer that with a 400 ``Token decoding failed: ...`` (``Policy decoding failed``, ``Role decoding failed``).
Read-only fields (``Hash``, ``CreateIndex``, ``CreateTime``...) are ignored, as Consul ignores them.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from agent.durations import parse_duration
from agent.http.errors import HTTPError
from agent.server.state import commands as c

__all__ = ["AccessorMismatch", "body_fields", "parse_go_time", "policy_command", "role_command", "token_command"]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


class AccessorMismatch(HTTPError):
    """The URL names one object and the body another."""


def parse_go_time(text: str) -> int:
    """RFC 3339 (Go's ``time.Time`` JSON, nanoseconds allowed) to ns since the epoch; ValueError if not."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f'parsing time "{text}" as RFC 3339: cannot parse')
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    if m.group(9):
        offset = datetime.timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        moment -= offset if m.group(9) == "+" else -offset
    nanos = int((m.group(7) or "").ljust(9, "0") or 0)
    return int(moment.timestamp()) * 10**9 + nanos


def _go_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


class _Fields:
    """A JSON object read as Go reads it into a struct: case-insensitive keys, typed fields, precise errors."""

    def __init__(self, body: Any, struct: str, what: str) -> None:
        self.struct, self.what = struct, what
        if not isinstance(body, dict):
            self.fail(f"json: cannot unmarshal {_go_kind(body)} into Go value of type structs.{struct}")
        self.values = {str(k).lower(): v for k, v in body.items()}

    def fail(self, message: str) -> None:
        raise HTTPError(400, f"{self.what} decoding failed: {message}")

    def _typed(self, name: str, value: Any, go_type: str, ok: bool) -> Any:
        if not ok:
            self.fail(f"json: cannot unmarshal {_go_kind(value)} into Go struct field {self.struct}.{name} "
                      f"of type {go_type}")  # fmt: skip
        return value

    def get(self, name: str) -> Any:
        return self.values.get(name.lower())

    def str(self, name: str) -> str:
        value = self.get(name)
        return "" if value is None else self._typed(name, value, "string", isinstance(value, str))

    def bool(self, name: str) -> bool:
        value = self.get(name)
        return False if value is None else self._typed(name, value, "bool", isinstance(value, bool))

    def strs(self, name: str) -> tuple[str, ...]:
        value = self.get(name)
        if value is None:
            return ()
        self._typed(name, value, "[]string", isinstance(value, list))
        return tuple(self._typed(name, v, "string", isinstance(v, str)) for v in value)

    def objects(self, name: str, go_type: str) -> list[_Fields]:
        value = self.get(name)
        if value is None:
            return []
        self._typed(name, value, f"[]structs.{go_type}", isinstance(value, list))
        return [_Fields(item, go_type, self.what) for item in value]

    def links(self, name: str, go_type: str) -> tuple[tuple[str, str], ...]:
        return tuple((link.str("ID"), link.str("Name")) for link in self.objects(name, go_type))

    def service_identities(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple((s.str("ServiceName"), s.strs("Datacenters"))
                     for s in self.objects("ServiceIdentities", "ACLServiceIdentity"))  # fmt: skip

    def node_identities(self) -> tuple[tuple[str, str], ...]:
        return tuple((n.str("NodeName"), n.str("Datacenter"))
                     for n in self.objects("NodeIdentities", "ACLNodeIdentity"))  # fmt: skip


def body_fields(body: Any, struct: str, what: str) -> _Fields:
    return _Fields(body, struct, what)


def _expiration(f: _Fields) -> tuple[int, int]:
    """ExpirationTime (RFC 3339) and ExpirationTTL (a duration string, or a number of ns) in ns."""
    expires = 0
    raw_time = f.get("ExpirationTime")
    if raw_time is not None:
        f._typed("ExpirationTime", raw_time, "time.Time", isinstance(raw_time, str))
        try:
            expires = parse_go_time(raw_time)
        except ValueError as exc:
            f.fail(str(exc))
    ttl = 0
    raw_ttl = f.get("ExpirationTTL")
    if isinstance(raw_ttl, str):
        try:
            ttl = round(parse_duration(raw_ttl) * 10**9)
        except ValueError as exc:
            f.fail(str(exc))
    elif isinstance(raw_ttl, (int, float)) and not isinstance(raw_ttl, bool):
        ttl = int(raw_ttl)
    elif raw_ttl is not None:
        f._typed("ExpirationTTL", raw_ttl, "time.Duration", False)
    if ttl < 0:
        raise HTTPError(500, f"Token Expiration TTL '{raw_ttl}' should be > 0")
    return expires, ttl


def token_command(body: Any, *, accessor_id: str, create: bool) -> c.ACLTokenSet:
    """A token create (``accessor_id`` chosen by the endpoint when the body has none) or update.

    For an update the body's AccessorID, when given, must be the URL's (Consul: ``Token Accessor ID in URL and
    payload do not match``)."""
    f = _Fields(body, "ACLToken", "Token")
    given = f.str("AccessorID")
    if not create and given and given != accessor_id:
        raise AccessorMismatch(400, "Token Accessor ID in URL and payload do not match")
    expires, ttl = _expiration(f)
    return c.ACLTokenSet(
        accessor_id=given or accessor_id,
        secret_id=f.str("SecretID"),
        description=f.str("Description"),
        policies=f.links("Policies", "ACLTokenPolicyLink"),
        roles=f.links("Roles", "ACLTokenRoleLink"),
        service_identities=f.service_identities(),
        node_identities=f.node_identities(),
        local=f.bool("Local"),
        expiration_time=expires,
        expiration_ttl=ttl,
        create=create,
    )


def _written_id(f: _Fields, url_id: str, what: str) -> str:
    """The ID a policy or role write names: the URL's, which a body ID must match, else the body's ("": none, a
    create)."""
    given = f.str("ID")
    if url_id and given and given != url_id:
        raise AccessorMismatch(400, f"{what} ID in URL and payload do not match")
    return url_id or given


def policy_command(body: Any, *, policy_id: str, new_id: str) -> c.ACLPolicySet:
    """A policy write: ``policy_id`` from the URL ("" on create); a body ID must match it.  No ID at all is a
    create with ``new_id`` (Consul: ``PolicySet`` creates when the ID is empty)."""
    f = _Fields(body, "ACLPolicy", "Policy")
    chosen = _written_id(f, policy_id, "Policy")
    return c.ACLPolicySet(id=chosen or new_id, name=f.str("Name"), description=f.str("Description"),
                          rules=f.str("Rules"), datacenters=f.strs("Datacenters"), create=not chosen)  # fmt: skip


def role_command(body: Any, *, role_id: str, new_id: str) -> c.ACLRoleSet:
    f = _Fields(body, "ACLRole", "Role")
    chosen = _written_id(f, role_id, "Role")
    return c.ACLRoleSet(id=chosen or new_id, name=f.str("Name"), description=f.str("Description"),
                        policies=f.links("Policies", "ACLRolePolicyLink"),
                        service_identities=f.service_identities(), node_identities=f.node_identities(),
                        create=not chosen)  # fmt: skip
