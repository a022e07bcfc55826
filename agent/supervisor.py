"""The agent process: one root nursery supervising gossip, the member table and the HTTP API.

Startup order (each step reports ready before the next begins, so a failure stops the agent before anything
later binds): config -> data dir (lock, node ID) -> gossip (probing and anti-entropy nurseries, inside
GossipDriver) -> the member-table feeder -> Raft (servers) or the leader follower (clients) -> the
registered-nodes mirror -> catalog replication and services -> HTTP, DNS -> banner -> joins. Signals as
Consul's: SIGINT leaves gracefully unless skip_leave_on_interrupt, SIGTERM leaves when leave_on_terminate, SIGHUP
reloads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from agent import consul, telemetry
from agent.acl.agent_tokens import AgentTokens, TokenFileError, TokenStore, load_token_store
from agent.agent_joins import initial_joins
from agent.agent_signals import handle_signals
from agent.agent_watches import parse_watches
from agent.api import JoinError
from agent.catalog.query import agent_members, agent_node, node_checks
from agent.catalog.replication import ReplicatorConfig
from agent.catalog.runner import CatalogRunner
from agent.config import (
    RESTART_REQUIRED,
    AgentConfig,
    ConfigError,
    HelpRequested,
    diff_config,
    load_config,
    reload_config,
)
from agent.config_flags import AGENT_USAGE
from agent.coordinate_book import CoordinateBook
from agent.datadir import DataDir, DataDirError
from agent.dns import serve_dns
from agent.event_log import EventLog
from agent.events import (
    REMOTE_EXEC_NAME,
    UserEvent,
    accepts,
    encode,
    ingest_user_event,
    serf_name,
)
from agent.gossip import GossipDriver
from agent.hostport import with_default_port
from agent.http.server import serve_http
from agent.keyring_file import initial_keys, write_keyring_file
from agent.logstream import JsonLogFormatter, LogHub, python_level
from agent.member_feed import MemberFeed
from agent.members import STATUS_FAILED, STATUS_LEFT, Member, MemberTable
from agent.metrics import Metrics
from agent.pidfile import pid_file
from agent.server.access import NoLeader, StoreAccess
from agent.server.acl_resolver import TokenResolver
from agent.server.cluster import RaftServer, ServerSettings
from agent.server.driver import DEFAULT_SNAPSHOT_EVERY, Timing
from agent.server.duties import acl_init_for
from agent.server.follow import LeaderFollower
from agent.server.forwarding import ForwardAccess, leader_rpc
from agent.server.mirror import RegisteredMirror
from agent.server.pool import CLUSTER_TAG, bootstrap_warnings
from agent.server.service import StoreService
from agent.server.state.store import StateStore
from agent.services.manager import ServiceManager
from agent.version import __version__
from agent.watch_runner import run_watches
from protocol.config import Config
from protocol.keymanager import KeyQueryDone, KeyringChanged
from protocol.keyring import Keyring
from protocol.serf import MemberEvent, MemberStatusChanged, Serf
from protocol.serf import UserEvent as SerfUserEvent

log = logging.getLogger("agent")

VERSION = __version__
#: A key query ends by itself within serf's query timeout (seconds even for large clusters); this is a backstop.
KEY_QUERY_BOUND = 60.0
EXIT_AFTER_LEAVE_DELAY = 0.2
FIRE_SETTLE_SECONDS = 5.0  # how long a fire waits for its own event to reach this agent's list (normally microseconds)


class Agent:
    """The running agent; also what the HTTP handlers may ask of it (agent.api.AgentAPI)."""

    def __init__(self, config: AgentConfig, log_output: logging.Handler | None = None) -> None:
        self.config = config
        #: The agent's log records for /v1/agent/monitor; ``log_output`` (stderr) stays at the configured level.
        self.logs = LogHub(python_level(config.log_level), log_output)
        #: The agent's metrics (/v1/agent/metrics); the parts below count into it (agent/telemetry.py).
        self.metrics = Metrics()
        self.metrics.add_collector(telemetry.runtime_collector)
        self.metrics.add_collector(telemetry.write_path_collector("triumvir.rpc_pool", self._pool_counts))
        self.metrics.add_collector(telemetry.members_collector(lambda: self.table.current.members.values()))
        self.table = MemberTable(datacenter=config.datacenter)
        self.services: ServiceManager | None = None
        self.catalog: CatalogRunner | None = None
        self.started = time.time()
        self.node_id = ""
        self.datadir: DataDir | None = None
        self.driver: GossipDriver | None = None
        self.member_feed: MemberFeed | None = None
        self.coordinates = CoordinateBook()  # Serf's cache once gossip runs (_start_gossip)
        self._root: trio.Nursery | None = None
        self._exit_code = 0
        self._leaving = False
        self.keyring: Keyring | None = None
        #: A server's Raft (None on a client, which asks a server for the leader: _follow_leader).
        self.raft: RaftServer | None = None
        self.timing = Timing.consul(config.raft_multiplier)
        self._dev_tmp: tempfile.TemporaryDirectory[str] | None = None
        self._follower: LeaderFollower | None = None
        #: The servers' state store as this agent reaches it (KV, sessions, txn, registrations): a server's own
        #: StoreService, or a client's ForwardAccess to the servers.
        self._client_access = ForwardAccess(lambda: self.table.current.leader, lambda: self.table.current.servers)
        self.store_access: StoreAccess = self._client_access
        self.store_service: StoreService | None = None
        #: The agent's own ACL tokens (acl.tokens, PUT /v1/agent/token/*); loaded with the data dir in run().
        self.acl_tokens = TokenStore(AgentTokens.from_config(config.acl.tokens))
        #: Who a request's token is: built once the store access is known (run), asked by HTTP and DNS.
        self.acl = self._token_resolver()
        #: key queries in flight: handle -> (set when done, the result)
        self._key_waiters: dict[int, tuple[trio.Event, list[KeyQueryDone]]] = {}
        #: Consul user events this agent accepted (the last 256), for /v1/event/list.
        self.events = EventLog()
        #: The config's watch plans run here (agent/watch_runner.py); a reload that changes them restarts them.
        self._watches: trio.CancelScope | None = None
        self._http_addr: Any = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        config = self.config
        if config.data_dir:
            self.datadir = DataDir(config.data_dir)
            self.datadir.lock()
            self.node_id = (config.node_id or self.datadir.node_id()).lower()
        else:
            self.node_id = (config.node_id or str(uuid.uuid4())).lower()
        self.acl_tokens = load_token_store(config.acl, self.datadir)
        closing = contextlib.ExitStack()  # the forwarders' idle server-port connections, however run ends
        closing.callback(self._client_access.close)
        closing.callback(lambda: self.store_service is not None and self.store_service.close())
        receiver = trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        with closing, self.logs.installed(), receiver as signals:
            async with trio.open_nursery() as root:
                self._root = root
                await self._start_gossip(root)
                root.start_soon(self._feed_members)
                await self._start_raft(root)
                self.acl = self._token_resolver()
                root.start_soon(self.acl.watch)
                root.start_soon(self.acl.refresh, self.acl.dns_secret)
                # every agent follows the registered (external) nodes into its snapshot, for HTTP and DNS
                await root.start(RegisteredMirror(self.store_access, self.table).run)
                await self._start_services(root)
                http_addr = None
                if config.ports.http >= 0:
                    http_addr = await root.start(serve_http, self, config.client_addr, config.ports.http)
                dns_addr = None
                if config.ports.dns > 0:
                    dns_view = functools.partial(_dns_view, self.acl)
                    dns_addr = await root.start(functools.partial(serve_dns, metrics=self.metrics, acl=dns_view),
                                                self.table,
                                                config, config.client_addr, config.ports.dns)
                self._http_addr = http_addr
                await root.start(self._run_watches, config)
                self._banner(http_addr, dns_addr)
                await initial_joins(config, self.join, self.datadir, f"{config.advertise_addr}:{self.serf_addr[1]}",
                                    root, self._fail_start)
                assert self.member_feed is not None
                root.start_soon(self.member_feed.save_peers_loop)
                assert self.driver is not None
                driver = self.driver
                root.start_soon(telemetry.sample_every_second, self.metrics, driver.machine.stats,
                                self.raft.last_contact if self.raft is not None else None,
                                lambda: driver.machine.node.probe_durations)
                code = await handle_signals(signals, config, self._reload_logged, self._do_leave)
                self._exit_code = self._exit_code if code is None else code
                root.cancel_scope.cancel()
        if self._dev_tmp is not None:
            self._dev_tmp.cleanup()
        return self._exit_code

    async def _run_watches(self, config: AgentConfig, *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The config's watches, in a scope of their own (reloadWatches: a reload stops them and starts the new)."""
        with trio.CancelScope() as self._watches:
            if not config.watches or self._http_addr is None:
                task_status.started()
                return
            await run_watches(parse_watches(config.watches, http_enabled=True), self._http_addr,
                              task_status=task_status)

    async def _start_raft(self, nursery: trio.Nursery) -> None:
        """A server runs Raft on the server port (its data in <data_dir>/raft, or a temp dir under -dev); a client
        follows the leader a server reports (docs/raft.md "Servers in the agent")."""
        config = self.config
        if not config.server:
            self._follower = LeaderFollower(self.table, config.datacenter, min(1.0, self.timing.heartbeat_timeout / 4))
            nursery.start_soon(self._follower.run)
            return
        data_dir = config.data_dir
        if data_dir is None:  # -dev without -data-dir: Consul keeps Raft in memory; we use a throwaway dir
            self._dev_tmp = tempfile.TemporaryDirectory(prefix="triumvir-dev-raft-")
            data_dir = self._dev_tmp.name
        settings = ServerSettings(
            node_id=self.node_id, data_dir=Path(data_dir), bind_addr=config.bind_addr,
            advertise_addr=config.advertise_addr, port=config.ports.server, datacenter=config.datacenter,
            bootstrap=config.bootstrap or config.dev,
            bootstrap_expect=config.bootstrap_expect, timing=self.timing,
            snapshot_every=config.raft_snapshot_threshold or DEFAULT_SNAPSHOT_EVERY)
        for warning in bootstrap_warnings(config.bootstrap, config.bootstrap_expect):
            log.warning("agent: %s", warning)
        if config.bootstrap_expect > 1:
            log.info("agent: bootstrap_expect > 0: expecting %d servers", config.bootstrap_expect)
        store = StateStore()
        self.raft = RaftServer(settings, store, telemetry.LeaderCounter(self.metrics, settings.address,
                                                                        self.table.set_leader),
                               self._announce_raft_cluster)
        replica = telemetry.MeasuredReplica(self.raft, self.metrics)
        self.store_service = self.store_access = StoreService(store, replica, agent_nodes=self._agent_nodes,
                                                              write_timeout=max(10.0, 2 * self.timing.election_timeout),
                                                              acl=acl_init_for(config))
        self.store_service.register(self.raft.rpc)
        self.store_service.on_applied = functools.partial(telemetry.store_command_applied, self.metrics)
        raft = self.raft
        self.metrics.add_collector(telemetry.write_path_collector(
            "triumvir.raft", lambda: attrs.asdict(raft.driver.stats) if raft.driver is not None else None))
        self.raft.update_pool(self.table.current.members.values())
        await nursery.start(self.raft.run)
        nursery.start_soon(self.store_service.duties.run)

    def _pool_counts(self) -> dict[str, int] | None:
        """The forwarding connection pool's counts (a client's, or a server's for what it forwards as follower)."""
        pool = getattr(self.store_access, "pool", None)
        return None if pool is None else {"calls": pool.calls, "opened": pool.opened, "retries": pool.retries}

    def _token_resolver(self) -> TokenResolver:
        """A server resolves tokens from its own store; a client through the servers, with a cache.  ``tokens`` is
        the one read of the agent's own tokens (``acl.tokens``): runtime-set tokens (``/v1/agent/token/*``, an
        AgentTokens holder) replace this function."""
        config = self.config
        service = self.store_service
        return TokenResolver(config.acl, node_name=config.node_name, datacenter=config.datacenter,
                             access=self.store_access, tokens=lambda: self.acl_tokens.current,
                             local_state=None if service is None else (lambda: service.store.current))

    def _announce_raft_cluster(self, cluster_id: str) -> None:
        """Our Raft cluster id into our gossip tags, so a server starting on another cluster's data dir sees it."""
        assert self.driver is not None
        tags = dict(self.driver.machine.tags)  # type: ignore[attr-defined]
        tags[CLUSTER_TAG] = cluster_id
        self.driver.set_tags(tags)

    def _agent_nodes(self) -> dict[str, dict[str, str]]:
        """The gossip catalog's nodes with their checks' statuses (serfHealth included), by lower-cased name:
        what a session may bind to, and what the leader invalidates sessions by."""
        snap = self.table.current
        return {m.name.lower(): {v.check.id: v.check.status for v in node_checks(snap, agent_node(snap, m))}
                for m in agent_members(snap, self.config.datacenter)}

    async def _start_services(self, nursery: trio.Nursery) -> None:
        """Catalog replication over gossip, then the local services and their check runners (which publish)."""
        config = self.config
        assert self.driver is not None
        digest = Config.profile(config.gossip_profile).push_pull_interval
        self.catalog = CatalogRunner(self.driver, self.table, config.node_name, datadir=self.datadir,
                                     config=ReplicatorConfig(digest_interval=digest), node_meta=config.node_meta)
        self.services = ServiceManager(config, self.datadir, self.catalog.publish_local)
        await nursery.start(self.catalog.run)
        await nursery.start(self.services.run)

    async def _start_gossip(self, nursery: trio.Nursery) -> None:
        config = self.config
        profile = Config.profile(
            config.gossip_profile,
            reconnect_timeout=config.reconnect_timeout,
            gossip_verify_incoming=config.encrypt_verify_incoming,
            gossip_verify_outgoing=config.encrypt_verify_outgoing,
            disable_coordinates=config.disable_coordinates,
        )
        tags = consul.lan_tags(config, self.node_id, VERSION)
        keys = initial_keys(config.encrypt, None if config.disable_keyring_file else self.datadir)
        self.keyring = Keyring.from_base64(keys) if keys else None

        def machine(bound: tuple[str, int]) -> Serf:
            return Serf(
                profile,
                name=config.node_name,
                addr=(config.advertise_addr, bound[1]),
                rng=random.Random(),
                now=trio.current_time(),
                tags=tags,
                keyring=self.keyring,
            )

        self.driver = GossipDriver(machine, (config.bind_addr, config.ports.serf_lan), tcp_timeout=profile.tcp_timeout)
        self._events = self.driver.subscribe(4096)
        self.serf_addr = await nursery.start(self.driver.run)
        driver = self.driver
        telemetry.mirror_counters(self.metrics, lambda: driver.machine.node.stats, telemetry.MEMBERLIST_COUNTERS)
        self.member_feed = MemberFeed(self.table, self.metrics, config.node_name, self._update_leader, self.datadir)
        self.member_feed.add_local(self.driver.machine.local_member())
        if driver.machine.coordinate() is not None:
            self.coordinates = CoordinateBook(driver.machine.cached_coordinates)
            nursery.start_soon(self.coordinates.run)
            telemetry.mirror_counters(self.metrics, lambda: driver.machine.coordinate_counts,
                                      telemetry.SERF_COORDINATE_COUNTERS)
            nursery.start_soon(telemetry.drain_every_second, self.metrics,
                               lambda: driver.machine.coordinate_adjustments, "consul.serf.coordinate.adjustment-ms")

    def _banner(self, http_addr: Any, dns_addr: Any) -> None:
        config = self.config
        lines = [
            "Consul agent running!",
            f"           Version: '{VERSION}' (triumvir)",
            f"           Node ID: '{self.node_id}'",
            f"         Node name: '{config.node_name}'",
            f"        Datacenter: '{config.datacenter}' (Segment: '')",
            f"            Server: {str(config.server).lower()} (Bootstrap: {str(config.bootstrap).lower()})",
            f"       Client Addr: [{config.client_addr}] (HTTP: {http_addr[1] if http_addr else -1}, "
            f"DNS: {dns_addr[1] if dns_addr else -1})",
            f"      Cluster Addr: {config.advertise_addr} (LAN: {self.serf_addr[1]})",
            f"  Gossip Encryption: {str(self.keyring is not None).lower()}",
        ]
        print("==> " + "\n".join(lines), file=sys.stderr, flush=True)

    def _fail_start(self) -> None:
        """A join the start depends on failed (-join, or -retry-join out of attempts): stop, exit 1."""
        self._exit_code = 1
        assert self._root is not None
        self._root.cancel_scope.cancel()

    # ------------------------------------------------------------------ membership feed

    async def _feed_members(self) -> None:
        """Every gossip event to its owner: member events to the member feed (agent/member_feed.py), user events,
        keyring changes and key query results here."""
        assert self.member_feed is not None
        async for ev in self._events:
            if isinstance(ev, MemberEvent | MemberStatusChanged):
                self.member_feed.apply(ev)
            elif isinstance(ev, SerfUserEvent):
                self.metrics.incr("consul.serf.events")
                self._ingest_user_event(ev)
            elif isinstance(ev, KeyringChanged):
                self._save_keyring(ev.keys)
            elif isinstance(ev, KeyQueryDone) and ev.handle in self._key_waiters:
                done, results = self._key_waiters[ev.handle]
                results.append(ev)
                done.set()

    def _local_services(self) -> list[tuple[str, Sequence[str]]]:
        """This agent's services as (ID, tags), what a user event's service and tag filters are matched against."""
        local = self.services.local.services if self.services is not None else {}
        return [(sid, state.definition.tags) for sid, state in local.items()]

    def _ingest_user_event(self, ev: SerfUserEvent) -> None:
        """Consul's handleEvents: a ``consul:event:`` Serf event, decoded, filtered for this agent, then kept."""
        event = ingest_user_event(ev.name, ev.payload, ev.ltime, self.config.node_name, self._local_services())
        if event is not None:
            self.events.add(event)

    async def fire_event(self, event: UserEvent) -> None:
        """Internal.EventFire: the event as a ``consul:event:<name>`` Serf user event, never coalesced.

        Consul routes this through a server; every agent here is on the LAN pool itself, so it fires directly.
        Serf delivers the event to its sender through the event loop above; when this agent keeps it, the answer
        waits (bounded) until it is in the list, so a client's fire-then-list sees it even on a busy machine.
        """
        assert self.driver is not None
        self.driver.user_event(serf_name(event.name), encode(event), coalesce=False)
        if event.name != REMOTE_EXEC_NAME and accepts(event, self.config.node_name, self._local_services()):
            with trio.move_on_after(FIRE_SETTLE_SECONDS):
                await self.events.wait_for(event.id)

    def _save_keyring(self, keys: Sequence[str]) -> None:
        """Serf's writeKeyringFile after each key query that changed the ring (none under -dev without data_dir)."""
        if self.datadir is None or self.config.disable_keyring_file:
            return
        try:
            write_keyring_file(self.datadir, keys)
        except (OSError, DataDirError) as exc:
            log.error("agent: failed to write the keyring file: %s", exc)

    def _update_leader(self) -> None:
        """The leader comes from Raft (ours, or a server's for a client); gossip tells Raft who the servers are."""
        if self.raft is not None:
            self.raft.update_pool(self.table.current.members.values())
        if self.store_service is not None:
            self.store_service.duties.poke()
        if self._follower is not None:
            self._follower.poke()

    # ------------------------------------------------------------------ AgentAPI

    async def join(self, addrs: list[str]) -> int:
        assert self.driver is not None
        port = self.config.ports.serf_lan
        targets = [with_default_port(a, port) for a in addrs]
        errors: list[str] = []
        try:
            count = await self.driver.join(targets)
            errors += self.driver.last_join_errors
        except (OSError, ValueError, OverflowError) as exc:  # unresolvable, bad port, bad name: Consul's text
            errors.append(str(exc))
            count = 0
        if count == 0:
            raise JoinError(f"1 error occurred:\n\t* Failed to join {', '.join(targets)}: "
                            f"{'; '.join(errors) or 'no address answered'}")
        return count

    async def leave(self) -> None:
        """PUT /v1/agent/leave: leave gracefully, then the process exits 0."""
        await self._do_leave()
        self._exit_code = 0
        assert self._root is not None
        self._root.start_soon(self._exit_after_response)

    async def _exit_after_response(self) -> None:
        """Stop the process a moment after a leave requested over HTTP, so its 200 reaches the caller."""
        await trio.sleep(EXIT_AFTER_LEAVE_DELAY)
        assert self._root is not None
        self._root.cancel_scope.cancel()

    async def _do_leave(self) -> None:
        if self._leaving:
            return
        self._leaving = True
        assert self.driver is not None
        await self.driver.leave()
        if self.raft is not None:  # after the gossip leave: the next leader sees us left and never re-adds us
            await self.raft.leave()
        if self.datadir is not None:
            self.datadir.mark_left(True)

    async def force_leave(self, node: str, prune: bool) -> None:
        assert self.driver is not None
        if node not in self.table.current.members:
            raise LookupError(f"agent: No node found with name '{node}'")
        self.driver.force_leave(node, prune=prune)

    async def reload(self) -> list[str]:
        """Re-read the config; what a running agent cannot change keeps its old value and is named in the log.

        Returns the changes applied. Keeping the old value matters: /v1/agent/self and every reader of
        ``self.config`` must describe the agent that is running, not the one the next restart will be.
        """
        new = reload_config(self.config)
        changes = diff_config(self.config, new)
        pending = [name for name in changes if name in RESTART_REQUIRED]
        if pending:
            log.warning("agent: Reload: these changes take effect only after a restart: %s", ", ".join(pending))
            new = attrs.evolve(new, **{name: getattr(self.config, name) for name in pending})
            changes = [name for name in changes if name not in pending]
        if self.services is not None:
            self.services.load_config(new)  # ConfigError: nothing changed, the reload fails
        if self.catalog is not None and new.node_meta != self.config.node_meta:
            self.catalog.set_node_meta(new.node_meta)
        if new.log_level != self.config.log_level:
            self.logs.set_base_level(python_level(new.log_level))
        if new.watches != self.config.watches and self._root is not None:
            if self._watches is not None:
                self._watches.cancel()
            await self._root.start(self._run_watches, new)
        self.config = new
        return changes

    async def _reload_logged(self) -> None:
        log.info("agent: Caught: signal=hangup")
        try:
            changes = await self.reload()
        except ConfigError as exc:
            log.error("agent: Reload config failed: %s", exc)
            return
        log.info("agent: Reloaded configuration: %s", ", ".join(changes) or "no changes")

    async def keyring_operation(self, operation: str, key: str = "", relay_factor: int = 0) -> KeyQueryDone:
        """Run a Serf key query on the LAN pool and wait for its aggregate (bounded by the query timeout)."""
        assert self.driver is not None
        handle = self.driver.key_query(operation, key, relay_factor)
        done, results = self._key_waiters[handle] = (trio.Event(), [])
        try:
            with trio.move_on_after(KEY_QUERY_BOUND):
                await done.wait()
        finally:
            del self._key_waiters[handle]
        if not results:
            raise TimeoutError(f"no answer to the {operation} query within {KEY_QUERY_BOUND:g}s")
        return results[0]

    async def server_rpc(self, method: str, args: dict[str, Any], *, stale: bool = False) -> Any:
        """Consul's forwarding, held for a leader as Consul's RPC hold holds it (`forwarding.leader_rpc`).
        LookupError("No cluster leader") without one; RPCError with the server's text otherwise."""
        try:
            return await leader_rpc(method, args, here=self.raft, leader=lambda: self.table.current.leader,
                                    servers=lambda: self.table.current.servers,
                                    timeout=max(2.0, 2 * self.timing.election_timeout), stale=stale)
        except NoLeader:
            raise LookupError(str(NoLeader())) from None

    def self_member(self) -> Member:
        return self.table.current.members[self.config.node_name]

    def stats(self) -> dict[str, dict[str, str]]:
        snap = self.table.current
        serf_stats: dict[str, Any] = dict(self.driver.machine.stats()) if self.driver else {}
        members = list(snap.members.values())
        return {
            "agent": dict(self.services.stats()) if self.services is not None else
            {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "0"},
            "build": {"prerelease": "", "revision": "", "version": VERSION, "version_metadata": ""},
            "consul": {
                "server": str(self.config.server).lower(),
                "known_datacenters": "1",
                "leader": str(snap.leader == self._own_server_addr()).lower(),
                "leader_addr": snap.leader,
                "bootstrap": str(self.config.bootstrap).lower(),
            },
            "serf_lan": {
                "members": str(len(members)),
                "failed": str(sum(1 for m in members if m.status == STATUS_FAILED)),
                "left": str(sum(1 for m in members if m.status == STATUS_LEFT)),
                **{k: str(v) for k, v in serf_stats.items() if k not in {"members", "failed", "left"}},
                "encrypted": str(self.keyring is not None).lower(),
                # ours: packets and streams refused because no key opened them (or plaintext under verify-incoming)
                "decrypt_failed": str(self.driver.machine.node.stats["decrypt_failed"]) if self.driver else "0",
            },
            "runtime": {"os": sys.platform, "arch": "", "version": sys.version.split()[0]},
            **({"raft": self.raft.stats()} if self.raft is not None else {}),
        }

    def _own_server_addr(self) -> str:
        return f"{self.config.advertise_addr}:{self.config.ports.server}"


def _dns_view(resolver: TokenResolver) -> Any:
    """What DNS may answer now: the ``dns`` token's decisions (None with ACLs off)."""
    return resolver.view(resolver.dns_secret())


def main(argv: Sequence[str]) -> int:
    """`python -m agent [agent] FLAGS`: exit 1 with `==> message` on a config error, before binding anything."""
    try:
        config = load_config(list(argv))
    except HelpRequested:
        print(AGENT_USAGE, file=sys.stderr)
        return 0
    except ConfigError as exc:
        print(f"==> {exc}", file=sys.stderr)
        return 1
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if config.log_json else
                         logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    logging.basicConfig(level=python_level(config.log_level), handlers=[handler])
    for warning in config.warnings:
        log.warning("agent: %s", warning)
    agent = Agent(config, log_output=handler)
    try:
        with pid_file(config.pid_file):
            return trio.run(agent.run)
    except (OSError, DataDirError, ConfigError, TokenFileError, BaseExceptionGroup) as exc:
        # A failure to start (a port in use, a locked data dir) is one clear line, not a traceback.
        leaves = _leaves(exc)
        if not all(isinstance(leaf, OSError | DataDirError | ConfigError | TokenFileError) for leaf in leaves):
            raise
        for leaf in leaves:
            print(f"==> Error starting agent: {leaf}", file=sys.stderr)
        return 1


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for exc in group.exceptions for leaf in _leaves(exc)]
    return [group]
