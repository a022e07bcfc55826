"""The agent's own services and checks with their current statuses (Consul's agent/local.State), sync and pure.

Who registered what matters: definitions from config files are replaced wholesale on reload; those from the API
survive reloads and restarts (the manager persists them).  A check belongs to at most one service; removing the
service removes its checks.  Every mutation returns whether the catalog record must be republished.
"""

from __future__ import annotations

import attrs

from agent.catalog.record import CheckRecord, ServiceRecord
from agent.durations import go_duration
from agent.services.definitions import CheckDef, ServiceDef

__all__ = ["API", "CONFIG", "CheckState", "LocalState", "ServiceState"]

CONFIG = "config"
API = "api"


@attrs.define
class ServiceState:
    definition: ServiceDef
    source: str


@attrs.define
class CheckState:
    definition: CheckDef
    source: str
    status: str
    output: str = ""
    critical_since: float | None = None  # for deregister_critical_service_after


def definition_duration(seconds: float) -> str:
    """A definition's interval/timeout as Consul shows it: Go's Duration.String, ``""`` when unset (0)."""
    return go_duration(seconds) if seconds > 0 else ""


class LocalState:
    """Services and checks by ID.  Not thread-safe, not async: the manager is its only caller."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceState] = {}
        self.checks: dict[str, CheckState] = {}

    # ------------------------------------------------------------------ services

    def add_service(self, service: ServiceDef, source: str, *, replace_existing_checks: bool = False,
                    now: float = 0.0) -> list[CheckDef]:  # fmt: skip
        """Register (or replace) a service and its checks; returns the checks whose runners must (re)start.

        Re-registering keeps the status of a check whose definition did not change (no flap to critical).
        """
        self.services[service.id] = ServiceState(service, source)
        if replace_existing_checks:
            keep = {c.id for c in service.checks}
            for check_id in [i for i, c in self.checks.items() if c.definition.service_id == service.id]:
                if check_id not in keep:
                    del self.checks[check_id]
        return [c for c in service.checks if self.add_check(c, source, now=now)]

    def remove_service(self, service_id: str) -> list[str]:
        """Deregister a service and its checks; KeyError if unknown. Returns the removed check IDs."""
        del self.services[service_id]
        gone = [i for i, c in self.checks.items() if c.definition.service_id == service_id]
        for check_id in gone:
            del self.checks[check_id]
        return gone

    # ------------------------------------------------------------------ checks

    def add_check(self, check: CheckDef, source: str, *, now: float = 0.0) -> bool:
        """Register (or replace) a check; LookupError for an unknown ServiceID.  True if its runner must
        (re)start: a new check, or a changed definition."""
        self.require_service(check)
        old = self.checks.get(check.id)
        if old is not None and old.definition == check:
            old.source = source
            return False
        status = check.status
        self.checks[check.id] = CheckState(check, source, status, critical_since=now if status == "critical" else None)
        return True

    def require_service(self, check: CheckDef) -> None:
        """LookupError (the API's 404) when ``check`` names a service that is not registered."""
        if check.service_id and check.service_id not in self.services:
            raise LookupError(f'ServiceID "{check.service_id}" does not exist')

    def remove_check(self, check_id: str) -> None:
        del self.checks[check_id]

    def set_status(self, check_id: str, status: str, output: str, now: float = 0.0) -> tuple[bool, bool]:
        """(status changed, output changed); a check deregistered meanwhile is ignored."""
        state = self.checks.get(check_id)
        if state is None:
            return False, False
        status_changed = state.status != status
        output_changed = state.output != output
        if status_changed:
            state.critical_since = now if status == "critical" else None
        state.status, state.output = status, output
        return status_changed, output_changed

    # ------------------------------------------------------------------ views

    def of_source(self, source: str) -> tuple[list[str], list[str]]:
        """(service IDs, top-level check IDs) registered from ``source``."""
        services = [i for i, s in self.services.items() if s.source == source]
        checks = [i for i, c in self.checks.items() if c.source == source and not c.definition.service_id]
        return services, checks

    def service_record(self, service: ServiceDef) -> ServiceRecord:
        return ServiceRecord(
            id=service.id,
            name=service.name,
            tags=service.tags,
            address=service.address,
            port=service.port,
            meta=dict(service.meta),
            weights_passing=service.weights_passing,
            weights_warning=service.weights_warning,
            enable_tag_override=service.enable_tag_override,
            kind=service.kind,
        )

    def check_record(self, state: CheckState) -> CheckRecord:
        check = state.definition
        service = self.services.get(check.service_id)
        return CheckRecord(
            id=check.id,
            name=check.name,
            status=state.status,
            output=state.output,
            notes=check.notes,
            service_id=check.service_id,
            service_name=service.definition.name if service else "",
            service_tags=service.definition.tags if service else (),
            type=check.kind,
            interval=definition_duration(check.interval),
            timeout=definition_duration(check.timeout),
        )

    def records(self) -> tuple[tuple[ServiceRecord, ...], tuple[CheckRecord, ...]]:
        """What the catalog publishes for this node, sorted by ID (a stable record compares equal)."""
        services = tuple(self.service_record(self.services[i].definition) for i in sorted(self.services))
        checks = tuple(self.check_record(self.checks[i]) for i in sorted(self.checks))
        return services, checks
