"""The agent's services and checks at run time: registration (config and API), runners, persistence, publishing.

``ServiceManager.run`` opens the checks nursery; every check with a runner gets a task there under its own cancel
scope, so deregistering or redefining one check cancels exactly that task.  Every change that other agents must
see calls ``publish(services, checks)`` (the catalog runner versions and announces it); a change of output
alone is published at most every ``CHECK_UPDATE_INTERVAL`` (Consul's check_update_interval), so a check whose
output carries a timestamp does not flood the cluster.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from agent.catalog.record import CheckRecord, ServiceRecord
from agent.config import AgentConfig, ConfigError
from agent.datadir import DataDir, DataDirError
from agent.gostrings import valid_utf8
from agent.services.checks import TtlTimer, run_check
from agent.services.definitions import (
    CheckDef,
    DefinitionError,
    ServiceDef,
    parse_check,
    parse_service,
    script_refusal,
)
from agent.services.local import API, CONFIG, LocalState
from agent.services.maintenance import (
    NODE_MAINT_CHECK_ID,
    is_maintenance,
    node_maintenance_check,
    service_maintenance_check,
    service_maintenance_check_id,
)
from agent.services.persist import Persistence

__all__ = ["CHECK_UPDATE_INTERVAL", "ServiceManager", "UnknownCheck", "UnknownService"]

log = logging.getLogger("agent.services")

CHECK_UPDATE_INTERVAL = 300.0
REAP_INTERVAL = 30.0
MIN_DEREGISTER_AFTER = 60.0

Publish = Callable[[tuple[ServiceRecord, ...], tuple[CheckRecord, ...]], None]


class UnknownService(LookupError):
    """404 ``Unknown service ID "x". Ensure that the service ID is passed, not the service name.``"""


class UnknownCheck(LookupError):
    """404 ``Unknown check ID "x". Ensure that the check ID is passed, not the check name.``"""


class NotTTL(ValueError):
    """500 ``CheckID "x" does not have associated TTL``."""


class ServiceManager:
    """Owns LocalState; the HTTP agent endpoints and the supervisor's reload are its callers."""

    def __init__(self, config: AgentConfig, datadir: DataDir | None, publish: Publish,
                 *, rng: random.Random | None = None) -> None:  # fmt: skip
        self.config = config
        self.local = LocalState()
        self.persist = Persistence(datadir) if datadir is not None else None
        self._publish_cb = publish
        self._rng = rng or random.Random()
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[str, trio.CancelScope] = {}
        self._ttl: dict[str, TtlTimer] = {}
        self._last_publish = -CHECK_UPDATE_INTERVAL
        self._output_dirty = False

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore persisted API definitions, load the config's, start every runner, then reap until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            waiting = self._restore()
            self.load_config(self.config)
            if waiting:
                self._restore_checks(waiting)
                self._publish()
            nursery.start_soon(self._reaper)
            nursery.start_soon(self._output_flusher)
            task_status.started()

    def _restore(self) -> list[CheckDef]:
        """Restore the persisted services and checks; returns the checks of services the config files define
        (a service in maintenance may be one), which ``run`` restores once the config is loaded."""
        if self.persist is None:
            return []
        services, checks, states = self.persist.load()
        waiting = []
        for service in services:
            service = self._without_refused_scripts(service)
            self._start(self.local.add_service(service, API, now=trio.current_time()))
        for check in checks:
            if check.kind == "script" and not self.config.enable_script_checks:
                self._refuse_restore(check.id)
                try:
                    self.persist.remove_check(check.id)
                except OSError as exc:
                    log.error("agent: cannot remove persisted check %r: %s", check.id, exc)
                continue
            if check.service_id and check.service_id not in self.local.services:
                waiting.append(check)
                continue
            self._restore_checks([check])
        for check_id, (status, output) in states.items():
            state = self.local.checks.get(check_id)
            if state is not None and state.definition.kind == "ttl":
                self.local.set_status(check_id, status, output, trio.current_time())
        self._publish()
        return waiting

    def _restore_checks(self, checks: list[CheckDef]) -> None:
        for check in checks:
            try:
                if self.local.add_check(check, API, now=trio.current_time()):
                    self._start([check])
            except LookupError as exc:
                log.warning("agent: dropping persisted check %r: %s", check.id, exc)

    def _without_refused_scripts(self, service: ServiceDef) -> ServiceDef:
        """A persisted (API) service minus the script checks enable_script_checks no longer allows; its file is
        rewritten without them, as Consul purges a check it cannot restore."""
        if self.config.enable_script_checks or not any(c.kind == "script" for c in service.checks):
            return service
        for check in service.checks:
            if check.kind == "script":
                self._refuse_restore(check.id)
        service = attrs.evolve(service, checks=tuple(c for c in service.checks if c.kind != "script"))
        assert self.persist is not None
        try:
            self.persist.save_service(service)
        except (OSError, DataDirError) as exc:
            log.error("agent: cannot rewrite persisted service %r without its script checks: %s", service.id, exc)
        return service

    @staticmethod
    def _refuse_restore(check_id: str) -> None:
        log.warning("agent: Failed to restore check, not re-armed and removed: check=%s error=%s", check_id,
                    script_refusal(api=True).message)  # fmt: skip

    # ------------------------------------------------------------------ config

    def load_config(self, config: AgentConfig) -> None:
        """Make the config-file definitions exactly ``config``'s (at start and on every reload).

        Raises ConfigError (and changes nothing) when a definition is refused: a script check with scripts off,
        a check for an unknown service.
        """
        scripts = config.enable_script_checks or config.enable_local_script_checks
        try:
            services = [parse_service(raw, api=False, path=f"services[{i}]") for i, raw in enumerate(config.services)]
            checks = [parse_check(raw, api=False, path=f"checks[{i}]") for i, raw in enumerate(config.checks)]
        except DefinitionError as exc:
            raise ConfigError(exc.message) from None
        known = {s.id for s in services} | {i for i, s in self.local.services.items() if s.source == API}
        for service in services:
            if not scripts and any(c.kind == "script" for c in service.checks):
                raise ConfigError(f'Failed to register service "{service.name}": {script_refusal(api=False)}')
        for check in checks:
            if not scripts and check.kind == "script":
                raise ConfigError(f'Failed to register check "{check.name}": {script_refusal(api=False)}')
            if check.service_id and check.service_id not in known:
                raise ConfigError(f'Failed to register check "{check.name}": ServiceID "{check.service_id}" '
                                  "does not exist")  # fmt: skip
        self.config = config
        old_services, old_checks = self.local.of_source(CONFIG)
        new_service_ids = {s.id for s in services}
        for service_id in old_services:
            if service_id not in new_service_ids:
                self._stop(self.local.remove_service(service_id))
        now = trio.current_time()
        for service in services:
            previous = self.local.services.get(service.id)
            stale = [c for c, st in self.local.checks.items() if st.definition.service_id == service.id
                     and c not in {x.id for x in service.checks} and not is_maintenance(st.definition)]  # fmt: skip
            for check_id in stale:
                self.local.remove_check(check_id)
            self._stop(stale)
            if previous is not None and previous.source == API and self.persist is not None:
                self.persist.remove_service(service.id)
            self._start(self.local.add_service(service, CONFIG, now=now))
        new_check_ids = {c.id for c in checks}
        for check_id in old_checks:
            if check_id not in new_check_ids and check_id in self.local.checks:
                self.local.remove_check(check_id)
                self._stop([check_id])
        for check in checks:
            if self.local.add_check(check, CONFIG, now=now):
                self._start([check])
        self._publish()

    # ------------------------------------------------------------------ API

    def _script_policy(self, checks: list[CheckDef]) -> None:
        if not self.config.enable_script_checks and any(c.kind == "script" for c in checks):
            raise script_refusal(api=True)

    def register_service(self, body: Any, *, replace_existing_checks: bool = False,
                         vet: Callable[[ServiceDef], None] | None = None) -> ServiceDef:
        """PUT /v1/agent/service/register; DefinitionError carries the HTTP status.  ``vet`` (the ACL check of
        the request's token) sees the parsed definition first and may raise to refuse it."""
        service = parse_service(body, api=True)
        if vet is not None:
            vet(service)
        self._script_policy(list(service.checks))
        self._persist(lambda p: p.save_service(service), "service", service.id)  # before it goes live
        had = {c for c, st in self.local.checks.items() if st.definition.service_id == service.id}
        started = self.local.add_service(service, API, replace_existing_checks=replace_existing_checks,
                                         now=trio.current_time())  # fmt: skip
        self._stop([c for c in had if c not in self.local.checks])
        self._start(started)
        self._publish()
        return service

    def _persist(self, write: Callable[[Persistence], None], kind: str, item_id: str) -> None:
        """Write to the data dir first: a write that fails is a clear 500 and nothing changes in memory."""
        if self.persist is None:
            return
        try:
            write(self.persist)
        except (OSError, DataDirError) as exc:
            log.error("agent: failed to persist %s %r: %s", kind, item_id, exc)
            raise DefinitionError(f"failed to persist {kind} {valid_utf8(item_id)!r}: {exc}", 500) from None

    def deregister_service(self, service_id: str) -> None:
        if service_id not in self.local.services:
            raise UnknownService(
                f'Unknown service ID "{service_id}". Ensure that the service ID is passed, not the service name.'
            )
        source = self.local.services[service_id].source
        owned = [c for c, st in self.local.checks.items() if st.definition.service_id == service_id]

        def remove(persist: Persistence) -> None:
            persist.remove_service(service_id)
            for check_id in owned:
                persist.remove_check(check_id)

        self._persist(remove, "service", service_id)
        gone = self.local.remove_service(service_id)
        self._stop(gone)
        if source == CONFIG:
            log.warning("agent: deregistered service %r from a config file; it returns on reload", service_id)
        self._publish()

    def register_check(self, body: Any, vet: Callable[[CheckDef], None] | None = None) -> CheckDef:
        """PUT /v1/agent/check/register; LookupError for an unknown ServiceID (404).  ``vet`` as for services."""
        check = parse_check(body, api=True)
        if vet is not None:
            vet(check)
        self._script_policy([check])
        self.local.require_service(check)
        self._persist(lambda p: p.save_check(check), "check", check.id)
        if self.local.add_check(check, API, now=trio.current_time()):
            self._start([check])
        self._publish()
        return check

    def deregister_check(self, check_id: str) -> None:
        if check_id not in self.local.checks:
            raise UnknownCheck(
                f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.'
            )
        self._persist(lambda p: p.remove_check(check_id), "check", check_id)
        self.local.remove_check(check_id)
        self._stop([check_id])
        self._publish()

    # ------------------------------------------------------------------ maintenance

    def enable_node_maintenance(self, reason: str) -> None:
        """PUT /v1/agent/maintenance?enable=true: a no-op when already enabled (the first reason stays)."""
        if NODE_MAINT_CHECK_ID not in self.local.checks:
            self._add_api_check(node_maintenance_check(reason))
            log.info("agent: Node entered maintenance mode")

    def disable_node_maintenance(self) -> None:
        if NODE_MAINT_CHECK_ID in self.local.checks:
            self.deregister_check(NODE_MAINT_CHECK_ID)
            log.info("agent: Node left maintenance mode")

    def enable_service_maintenance(self, service_id: str, reason: str) -> None:
        """UnknownService (404 ``No service registered with ID "x"``) when ``service_id`` is not registered."""
        self._require_service(service_id)
        if service_maintenance_check_id(service_id) not in self.local.checks:
            self._add_api_check(service_maintenance_check(service_id, reason))
            log.info("agent: Service entered maintenance mode: service=%s", service_id)

    def disable_service_maintenance(self, service_id: str) -> None:
        self._require_service(service_id)
        check_id = service_maintenance_check_id(service_id)
        if check_id in self.local.checks:
            self.deregister_check(check_id)
            log.info("agent: Service left maintenance mode: service=%s", service_id)

    def _require_service(self, service_id: str) -> None:
        if service_id not in self.local.services:
            raise UnknownService(f'No service registered with ID "{service_id}"')

    def _add_api_check(self, check: CheckDef) -> None:
        """Persist, register and publish a check the agent itself defines (it has no runner)."""
        self._persist(lambda p: p.save_check(check), "check", check.id)
        self.local.add_check(check, API, now=trio.current_time())
        self._publish()

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        """pass/warn/fail/update: set the status, restart the TTL countdown."""
        state = self.local.checks.get(check_id)
        if state is None:
            raise UnknownCheck(
                f'Unknown check ID "{check_id}". Ensure that the check ID is passed, not the check name.'
            )
        if state.definition.kind != "ttl":
            raise NotTTL(f'CheckID "{check_id}" does not have associated TTL')
        timer = self._ttl.get(check_id)
        if timer is not None:
            timer.refresh(output)
        self._report(check_id, status, output)
        if self.persist is not None:
            try:
                self.persist.save_check_state(check_id, status, output)
            except (OSError, DataDirError) as exc:  # the status applies; only its survival across a restart is lost
                log.warning("agent: cannot persist the state of check %r: %s", check_id, exc)

    # ------------------------------------------------------------------ runners

    def _start(self, checks: list[CheckDef]) -> None:
        for check in checks:
            self._stop([check.id])
            if self._nursery is None or check.kind not in ("ttl", "http", "tcp", "script"):
                continue
            scope = trio.CancelScope()
            self._scopes[check.id] = scope
            timer = None
            if check.kind == "ttl":
                timer = self._ttl[check.id] = TtlTimer()
            self._nursery.start_soon(self._runner, check, scope, timer, name=f"check {check.id}")

    def _stop(self, check_ids: list[str]) -> None:
        for check_id in check_ids:
            scope = self._scopes.pop(check_id, None)
            if scope is not None:
                scope.cancel()
            self._ttl.pop(check_id, None)

    async def _runner(self, check: CheckDef, scope: trio.CancelScope, timer: TtlTimer | None) -> None:
        def report(status: str, output: str) -> None:
            if self._scopes.get(check.id) is scope:  # a replaced check's last word doesn't count
                self._report(check.id, status, output)

        with scope:
            try:
                await run_check(check, report, rng=self._rng, ttl=timer)
            except Exception:
                log.exception("agent: check %r failed unexpectedly", check.id)
                report("critical", "check runner failed")

    def _report(self, check_id: str, status: str, output: str) -> None:
        status_changed, output_changed = self.local.set_status(check_id, status, output, trio.current_time())
        if status_changed:
            log.info("agent: Check status changed: check=%s status=%s", check_id, status)
            self._publish()
        elif output_changed:
            self._output_dirty = True

    async def _output_flusher(self) -> None:
        while True:
            await trio.sleep(CHECK_UPDATE_INTERVAL)
            if self._output_dirty:
                self._publish()

    async def _reaper(self) -> None:
        """deregister_critical_service_after: a service whose check stayed critical too long is removed."""
        while True:
            await trio.sleep(REAP_INTERVAL)
            self.reap(trio.current_time())

    def reap(self, now: float) -> list[str]:
        doomed = []
        for state in self.local.checks.values():
            after = state.definition.deregister_critical_service_after
            if after <= 0 or state.critical_since is None or not state.definition.service_id:
                continue
            if now - state.critical_since > max(after, MIN_DEREGISTER_AFTER):
                doomed.append(state.definition.service_id)
        for service_id in dict.fromkeys(doomed):
            if service_id in self.local.services:
                log.info("agent: Check critical for too long, deregistering service: service=%s", service_id)
                self.deregister_service(service_id)
        return doomed

    def _publish(self) -> None:
        self._output_dirty = False
        self._publish_cb(*self.local.records())

    # ------------------------------------------------------------------ stats

    def stats(self) -> Mapping[str, str]:
        checks = self.local.checks.values()
        return {
            "services": str(len(self.local.services)),
            "checks": str(len(self.local.checks)),
            "check_ttls": str(sum(1 for c in checks if c.definition.kind == "ttl")),
            "check_monitors": str(sum(1 for c in checks if c.definition.kind == "script")),
        }
