"""Node and service maintenance mode as Consul models it: a critical check of Type ``maintenance`` (pure).

Why a check: everything that hides unhealthy instances (DNS, ``?passing``, the catalog's anti-entropy) already
drops a node or service with a critical check, so maintenance needs no rule of its own.  The check is registered
like an API check (persisted, so it survives a restart) and never has a runner: it stays critical until removed.
"""

from __future__ import annotations

from agent.services.definitions import CheckDef

__all__ = [
    "NODE_MAINT_CHECK_ID",
    "SERVICE_MAINT_PREFIX",
    "is_maintenance",
    "node_maintenance_check",
    "service_maintenance_check",
    "service_maintenance_check_id",
]

NODE_MAINT_CHECK_ID = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
MAINTENANCE_KIND = "maintenance"
DEFAULT_NODE_REASON = (
    "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
)
DEFAULT_SERVICE_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)


def service_maintenance_check_id(service_id: str) -> str:
    return SERVICE_MAINT_PREFIX + service_id


def is_maintenance(check: CheckDef) -> bool:
    """A maintenance check: kept across config reloads (only disabling maintenance removes it)."""
    return check.kind == MAINTENANCE_KIND


def node_maintenance_check(reason: str) -> CheckDef:
    return CheckDef(id=NODE_MAINT_CHECK_ID, name="Node Maintenance Mode", notes=reason or DEFAULT_NODE_REASON,
                    status="critical", other_kind=MAINTENANCE_KIND)  # fmt: skip


def service_maintenance_check(service_id: str, reason: str) -> CheckDef:
    return CheckDef(id=service_maintenance_check_id(service_id), name="Service Maintenance Mode",
                    service_id=service_id, notes=reason or DEFAULT_SERVICE_REASON, status="critical",
                    other_kind=MAINTENANCE_KIND)  # fmt: skip
