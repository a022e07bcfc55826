"""How `consul acl` prints tokens, policies and roles: the pretty forms of Consul's
``command/acl/{token,policy,role}/formatter.go``, and ``-format json`` (the API objects indented by four spaces in
the Go API struct's field order)."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

from agent.gostrings import go_json_text

__all__ = [
    "POLICY_FIELDS",
    "POLICY_LIST_FIELDS",
    "ROLE_FIELDS",
    "TOKEN_FIELDS",
    "TOKEN_LIST_FIELDS",
    "as_json",
    "format_policy",
    "format_policy_list",
    "format_role",
    "format_role_list",
    "format_token",
    "format_token_list",
    "go_time_v",
]

_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def go_time_v(text: str) -> str:
    """Go's ``%v`` of the ``time.Time`` the API client decoded from ``text`` (RFC 3339):
    ``2006-01-02 15:04:05.999999999 -0700 MST`` (UTC as ``+0000 UTC``)."""
    m = _RFC3339.match(text or "")
    if m is None:
        return text or "0001-01-01 00:00:00 +0000 UTC"
    date, clock, fraction, zone = m.groups()
    fraction = (fraction or "").rstrip("0").rstrip(".")
    if zone == "Z":
        return f"{date} {clock}{fraction} +0000 UTC"
    offset = zone.replace(":", "")
    return f"{date} {clock}{fraction} {offset} {offset}"


def _hash_hex(value: Any) -> str:
    try:
        return base64.b64decode(value or "").hex()
    except ValueError:
        return ""


def _links(title: str, links: Sequence[Mapping[str, Any]] | None, indent: str = "") -> list[str]:
    if not links:
        return []
    return [f"{indent}{title}:", *(f"{indent}   {link.get('ID', '')} - {link.get('Name', '')}" for link in links)]


def _service_identities(ids: Sequence[Mapping[str, Any]] | None, indent: str = "") -> list[str]:
    out = []
    for sid in ids or ():
        dcs = ", ".join(sid.get("Datacenters") or ()) or "all"
        out.append(f"{indent}   {sid.get('ServiceName', '')} (Datacenters: {dcs})")
    return [f"{indent}Service Identities:", *out] if out else []


def _node_identities(ids: Sequence[Mapping[str, Any]] | None, indent: str = "") -> list[str]:
    out = [f"{indent}   {n.get('NodeName', '')} (Datacenter: {n.get('Datacenter', '')})" for n in ids or ()]
    return [f"{indent}Node Identities:", *out] if out else []


def _meta(obj: Mapping[str, Any], width: int, indent: str = "") -> list[str]:
    return [f"{indent}{'Hash:'.ljust(width)}{_hash_hex(obj.get('Hash'))}",
            f"{indent}{'Create Index:'.ljust(width)}{obj.get('CreateIndex', 0)}",
            f"{indent}{'Modify Index:'.ljust(width)}{obj.get('ModifyIndex', 0)}"]  # fmt: skip


def _token_head(t: Mapping[str, Any]) -> list[str]:
    lines = [f"AccessorID:       {t.get('AccessorID', '')}", f"SecretID:         {t.get('SecretID', '')}"]
    if t.get("Namespace"):
        lines.append(f"Namespace:        {t['Namespace']}")
    lines += [f"Description:      {t.get('Description', '')}",
              f"Local:            {'true' if t.get('Local') else 'false'}"]  # fmt: skip
    if t.get("AuthMethod"):
        lines.append(f"Auth Method:      {t['AuthMethod']} (Namespace: {t.get('AuthMethodNamespace', '')})")
    lines.append(f"Create Time:      {go_time_v(t.get('CreateTime', ''))}")
    if t.get("ExpirationTime"):
        lines.append(f"Expiration Time:  {go_time_v(t['ExpirationTime'])}")
    return lines


def format_token(t: Mapping[str, Any], meta: bool) -> str:
    """``prettyFormatter.FormatToken``."""
    lines = _token_head(t)
    if meta:
        lines += _meta(t, 18)
    lines += _links("Policies", t.get("Policies")) + _links("Roles", t.get("Roles"))
    lines += _service_identities(t.get("ServiceIdentities")) + _node_identities(t.get("NodeIdentities"))
    if t.get("Rules"):
        lines += ["Rules:", t["Rules"]]
    return "\n".join(lines) + "\n"


def format_token_list(tokens: Sequence[Mapping[str, Any]], meta: bool) -> str:
    """``prettyFormatter.FormatTokenList``: entries separated by an empty line, ``Legacy`` shown."""
    entries = []
    for t in tokens:
        lines = [*_token_head(t), f"Legacy:           {'true' if t.get('Legacy') else 'false'}"]
        if meta:
            lines += _meta(t, 18)
        lines += _links("Policies", t.get("Policies")) + _links("Roles", t.get("Roles"))
        lines += _service_identities(t.get("ServiceIdentities"))
        if t.get("NodeIdentities"):  # formatter.go's list entry repeats the service identities here, as Consul
            lines += ["Service Identities:", *_service_identities(t.get("ServiceIdentities"))[1:]]
        entries.append("\n".join(lines) + "\n")
    return "\n".join(entries)


def format_policy(p: Mapping[str, Any], meta: bool) -> str:
    """``prettyFormatter.FormatPolicy``: the rules last, as stored."""
    lines = [f"ID:           {p.get('ID', '')}", f"Name:         {p.get('Name', '')}"]
    if p.get("Namespace"):
        lines.append(f"Namespace:    {p['Namespace']}")
    lines += [f"Description:  {p.get('Description', '')}",
              f"Datacenters:  {', '.join(p.get('Datacenters') or ())}"]  # fmt: skip
    if meta:
        lines += _meta(p, 14)
    return "\n".join([*lines, "Rules:"]) + "\n" + (p.get("Rules") or "")


def format_policy_list(policies: Sequence[Mapping[str, Any]], meta: bool) -> str:
    out = []
    for p in policies:
        lines = [f"{p.get('Name', '')}:", f"   ID:           {p.get('ID', '')}"]
        if p.get("Namespace"):
            lines.append(f"   Namespace:    {p['Namespace']}")
        lines += [f"   Description:  {p.get('Description', '')}",
                  f"   Datacenters:  {', '.join(p.get('Datacenters') or ())}"]  # fmt: skip
        if meta:
            lines += _meta(p, 14, "   ")
        out.append("\n".join(lines) + "\n")
    return "".join(out)


def format_role(r: Mapping[str, Any], meta: bool) -> str:
    lines = [f"ID:           {r.get('ID', '')}", f"Name:         {r.get('Name', '')}"]
    if r.get("Namespace"):
        lines.append(f"Namespace:    {r['Namespace']}")
    lines.append(f"Description:  {r.get('Description', '')}")
    if meta:
        lines += _meta(r, 14)
    lines += _links("Policies", r.get("Policies"))
    lines += _service_identities(r.get("ServiceIdentities")) + _node_identities(r.get("NodeIdentities"))
    return "\n".join(lines) + "\n"


def format_role_list(roles: Sequence[Mapping[str, Any]], meta: bool) -> str:
    out = []
    for r in roles:
        lines = [f"{r.get('Name', '')}:", f"   ID:           {r.get('ID', '')}"]
        if r.get("Namespace"):
            lines.append(f"   Namespace:    {r['Namespace']}")
        lines.append(f"   Description:  {r.get('Description', '')}")
        if meta:
            lines += _meta(r, 14, "   ")
        lines += _links("Policies", r.get("Policies"), "   ")
        lines += _service_identities(r.get("ServiceIdentities"), "   ")
        lines += _node_identities(r.get("NodeIdentities"), "   ")
        out.append("\n".join(lines) + "\n")
    return "".join(out)


# The Go API structs' field order for -format json; a field named with "?" is omitempty.
_OMIT = object()
TOKEN_FIELDS = ("CreateIndex", "ModifyIndex", "AccessorID", "SecretID", "Description", "Policies?", "Roles?",
                 "ServiceIdentities?", "NodeIdentities?", "Local", "AuthMethod?", "ExpirationTTL?",
                 "ExpirationTime?", "CreateTime?", "Hash?", "Rules?")  # fmt: skip
TOKEN_LIST_FIELDS = ("CreateIndex", "ModifyIndex", "AccessorID", "SecretID", "Description", "Policies?", "Roles?",
                      "ServiceIdentities?", "NodeIdentities?", "Local", "AuthMethod?", "ExpirationTime?",
                      "CreateTime", "Hash", "Legacy")  # fmt: skip
POLICY_FIELDS = ("ID", "Name", "Description", "Rules", "Datacenters", "Hash", "CreateIndex", "ModifyIndex")
POLICY_LIST_FIELDS = ("ID", "Name", "Description", "Datacenters", "Hash", "CreateIndex", "ModifyIndex")
ROLE_FIELDS = ("ID", "Name", "Description", "Policies", "ServiceIdentities?", "NodeIdentities?", "Hash",
                "CreateIndex", "ModifyIndex")  # fmt: skip
_ZERO: dict[str, Any] = {"CreateIndex": 0, "ModifyIndex": 0, "Local": False, "Legacy": False, "CreateTime":
                         "0001-01-01T00:00:00Z"}  # fmt: skip


def _as_struct(obj: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in fields:
        name, omit = spec.rstrip("?"), spec.endswith("?")
        value = obj.get(name)
        if omit and not value:
            continue
        out[name] = _ZERO.get(name) if value is None else value
    return out


def _json(value: Any) -> str:
    return go_json_text(value, indent="    ")


def as_json(obj: Any, fields: Sequence[str], *, many: bool = False) -> str:
    """``-format json``: the object (or each of a list's) as the Go API struct with ``fields`` marshals it."""
    return _json([_as_struct(o, fields) for o in obj or ()] if many else _as_struct(obj, fields))
