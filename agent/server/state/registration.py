"""``/v1/catalog/register`` and ``/deregister`` bodies into commands, with Consul's endpoint rules
(hashicorp/consul ``agent/consul/catalog_endpoint.go`` ``Register``/``Deregister``, ``checkPreApply``).

Keys are matched case-insensitively (Go's encoding/json).  Defaults as the endpoint: a service's ID is its name,
a check's ID its name, a check's node the request's; a check's status, when absent, is critical
(``ensureCheckTxn``).  Errors carry Consul's text (`leader.RequestError`, status 500 as its RPC errors, 400 for
a body that does not decode).  One departure: a check naming another node than the request's is refused
(Consul would register it on that node); the text for that is ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.catalog.record import STATUSES, CheckRecord, ServiceRecord

from .commands import CatalogDeregister, CatalogRegister
from .leader import RequestError, strings_field

__all__ = ["parse_deregister", "parse_register"]

_ANY_ADDRESSES = frozenset({"0.0.0.0", "::", "[::]"})


def _lower(body: Any, what: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise RequestError(f"Request decode failed: {what}: expected an object", 400)
    return {str(k).lower(): v for k, v in body.items()}


def _text(fields: Mapping[str, Any], key: str, what: str) -> str:
    value = fields.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RequestError(f"Request decode failed: {what}: expected a string", 400)
    return value


def _int(fields: Mapping[str, Any], key: str, what: str, default: int = 0) -> int:
    value = fields.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"Request decode failed: {what}: expected an integer", 400)
    return value


def _map(fields: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = fields.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise RequestError(f"Request decode failed: {what}: expected an object of strings", 400)
    return {str(k): v for k, v in value.items()}


def _service(raw: Any) -> ServiceRecord | None:
    fields = _lower(raw, "Service")
    if not fields:
        return None
    name = _text(fields, "service", "Service.Service")
    service_id = _text(fields, "id", "Service.ID") or name
    if not service_id:
        return None  # an empty service object: nothing to register
    if not name:
        raise RequestError("Must provide service name with ID", 500)
    address = _text(fields, "address", "Service.Address")
    if address in _ANY_ADDRESSES:
        raise RequestError("Invalid service address", 500)
    weights = _lower(fields.get("weights"), "Service.Weights")
    return ServiceRecord(
        id=service_id,
        name=name,
        tags=strings_field(fields.get("tags"), "Service.Tags"),
        address=address,
        port=_int(fields, "port", "Service.Port"),
        meta=_map(fields, "meta", "Service.Meta"),
        weights_passing=_int(weights, "passing", "Service.Weights.Passing", 1),
        weights_warning=_int(weights, "warning", "Service.Weights.Warning", 1),
        enable_tag_override=bool(fields.get("enabletagoverride", False)),
        kind=_text(fields, "kind", "Service.Kind"),
    )


def _check(raw: Any, node: str) -> CheckRecord:
    fields = _lower(raw, "Check")
    check_node = _text(fields, "node", "Check.Node") or node
    if check_node.lower() != node.lower():
        raise RequestError(f"Check node {check_node!r} is not the registered node {node!r}", 500)
    name = _text(fields, "name", "Check.Name")
    check_id = _text(fields, "checkid", "Check.CheckID") or name
    status = _text(fields, "status", "Check.Status") or "critical"
    if status not in STATUSES:
        raise RequestError(f"Invalid check status: {status!r}", 500)
    return CheckRecord(
        id=check_id,
        name=name or check_id,
        status=status,
        output=_text(fields, "output", "Check.Output"),
        notes=_text(fields, "notes", "Check.Notes"),
        service_id=_text(fields, "serviceid", "Check.ServiceID"),
        type=_text(fields, "type", "Check.Type"),
    )


def _uuid_problem(text: str) -> str | None:
    """hashicorp/go-uuid ``ParseUUID``'s complaint about ``text``, or None."""
    if len(text) != 36:
        return "uuid string is wrong length"
    if any(text[i] != "-" for i in (8, 13, 18, 23)):
        return "uuid is improperly formatted"
    for char in text.replace("-", ""):
        if char not in "0123456789abcdefABCDEF":
            return f"encoding/hex: invalid byte: U+{ord(char):04X} {char!r}"
    return None


def parse_register(body: Any) -> CatalogRegister:
    """A ``RegisterRequest`` body as the endpoint checks and completes it."""
    fields = _lower(body, "body")
    node = _text(fields, "node", "Node")
    if not node:
        raise RequestError("Must provide node", 500)
    address = _text(fields, "address", "Address")
    skip = fields.get("skipnodeupdate", False)
    if not isinstance(skip, bool):
        raise RequestError("Request decode failed: SkipNodeUpdate: expected a bool", 400)
    if not address and not skip:
        raise RequestError("Must provide address if SkipNodeUpdate is not set", 500)
    node_id = _text(fields, "id", "ID")
    if node_id and (problem := _uuid_problem(node_id)):
        raise RequestError(f"Bad node ID: {problem}", 500)
    raw_checks = fields.get("checks") or []
    if not isinstance(raw_checks, list):
        raise RequestError("Request decode failed: Checks: expected a list", 400)
    if fields.get("check") is not None:
        raw_checks = [*raw_checks, fields["check"]]
    return CatalogRegister(
        node=node,
        address=address,
        id=node_id,
        datacenter=_text(fields, "datacenter", "Datacenter"),
        tagged_addresses=_map(fields, "taggedaddresses", "TaggedAddresses"),
        node_meta=_map(fields, "nodemeta", "NodeMeta"),
        service=_service(fields.get("service")),
        checks=tuple(_check(raw, node) for raw in raw_checks),
        skip_node_update=skip,
    )


def parse_deregister(body: Any) -> CatalogDeregister:
    fields = _lower(body, "body")
    node = _text(fields, "node", "Node")
    if not node:
        raise RequestError("Must provide node", 500)
    return CatalogDeregister(
        node=node, service_id=_text(fields, "serviceid", "ServiceID"), check_id=_text(fields, "checkid", "CheckID")
    )
