"""A server agent's Raft: the store, the transport, the driver, and Consul's bootstrap and membership rules.

Servers find each other in the gossip pool (agent/server/pool.py reads it and holds the pure membership rules).
A server with no Raft state waits until it may bootstrap (Consul's maybeBootstrap): ``bootstrap`` (or -dev) alone
at once; with ``bootstrap_expect`` N, once N servers of its datacenter are alive in
the pool, all expecting N, and none of them reports Raft peers already (asked over the server port's RPC, as
Consul does).  Then every one of them writes the same first entries (`membership.bootstrap` of the same sorted
list) and the same cluster id, derived from that list.  A server that does not bootstrap waits for a leader to
replicate to it and adopts that leader's cluster id.

The leader reconciles the configuration with the pool (Consul's leader loop and autopilot's dead-server
clean-up): alive servers not in the configuration are added as voters; servers that left, were reaped or were
force-left are removed, one change at a time, never when the remaining alive voters would be fewer than a quorum
of the current voters.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import trio

from agent.hostport import join_host_port
from agent.members import STATUS_ALIVE, STATUS_LEFT, Member
from protocol.raft import Config, RawNode, bootstrap
from protocol.raft.errors import NotLeader, RaftError
from protocol.raft.types import ConfChange, ConfChangeKind, Message, Role, Server, Suffrage

from .access import NOT_THE_LEADER, NoLeader
from .driver import DEFAULT_SNAPSHOT_EVERY, Driver, StateMachine, Timing
from .errors import ClusterMismatch
from .pool import PoolServer, announced_clusters, cluster_id_for, next_change, pool_servers
from .raftstore import RaftStore
from .rpc import RPCError, RPCServer, call
from .transport import Transport

log = logging.getLogger("triumvir.raft.server")

BOOTSTRAP_POLL = 0.2  # seconds between bootstrap checks while a new server waits
RECONCILE_INTERVAL = 0.5  # seconds between the leader's membership reconciliations (and on every pool change)
#: at start, a server whose data dir names a cluster watches the pool this long for that cluster's servers ...
HOME_WINDOW = 30.0
#: ... and refuses to run once only other clusters' servers were in sight for this long
FOREIGN_SETTLE = 2.0
TRANSFER_TIMEOUTS = 2  # election timeouts a leaving leader waits for the server it hands leadership to
REMOVE_GRACE = 5.0  # seconds a leaving server waits to be removed from the configuration (Consul's grace)


@attrs.frozen(kw_only=True)
class ServerSettings:
    node_id: str
    data_dir: Path
    bind_addr: str
    advertise_addr: str
    port: int
    datacenter: str
    bootstrap: bool = False  # -bootstrap (or -dev): bootstrap alone
    bootstrap_expect: int = 0
    timing: Timing = attrs.Factory(lambda: Timing.consul(5))  # Consul's default raft_multiplier
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY

    @property
    def address(self) -> str:
        return join_host_port(self.advertise_addr, self.port)


class RaftServer:
    def __init__(
        self,
        settings: ServerSettings,
        machine: StateMachine,
        on_leader: Callable[[str, tuple[str, ...]], None],
        announce_cluster: Callable[[str], None] = lambda _cluster_id: None,
    ) -> None:
        self.settings = settings
        self.machine = machine
        self.on_leader = on_leader  # (leader's IP:port or "", voters' IP:port sorted) on every change
        self.announce_cluster = announce_cluster  # our cluster id into our gossip tags (CLUSTER_TAG)
        self.pool: dict[str, PoolServer] = {}
        self.store: RaftStore | None = None
        self.transport: Transport | None = None
        self.driver: Driver | None = None
        self.rpc = RPCServer({"Status.Leader": self._rpc_leader, "Status.Peers": self._rpc_peers,
                              "Operator.RaftGetConfiguration": self._rpc_configuration,
                              "Operator.RaftRemovePeer": self._rpc_remove_peer})
        self._pool_changed = trio.Event()
        self._leader = ""
        self._warned_bootstrap: set[str] = set()

    # ---------------------------------------------------------------- what the agent asks

    def update_pool(self, members: Iterable[Member]) -> None:
        """Every gossip change: the servers we know, their addresses for the transport."""
        self.pool = pool_servers(members, self.settings.datacenter)
        self._sync_peers()
        self._pool_changed.set()
        self._pool_changed = trio.Event()

    def _sync_peers(self) -> None:
        """The transport's peers: the alive servers of the pool, and every server of the configuration (so a
        restarted cluster reconnects from its log alone); the pool's address wins.  A server that is neither and
        has left the pool or was reaped is dropped, so nobody keeps redialing it (a leaving or failed one is kept:
        gossip statuses flap during a leave, and dropping on every flap would churn connections)."""
        if self.transport is None:
            return
        wanted = {p.id: p.address for p in self.pool.values() if p.status == STATUS_ALIVE}
        if self.driver is not None:
            for server in self.driver.status().conf.servers:
                if server.address:
                    wanted.setdefault(server.id, server.address)
        wanted.pop(self.settings.node_id, None)
        for sid, address in wanted.items():
            self.transport.add_peer(sid, address)
        for sid, address in self.transport.peers().items():
            p = self.pool.get(sid)
            if sid not in wanted and address is not None and (p is None or p.status == STATUS_LEFT):
                self.transport.remove_peer(sid)

    def leader(self) -> str:
        return self._leader

    # ---------------------------------------------------------------- service.Replica

    def leader_address(self) -> str:
        return self._leader

    def leader_ready(self) -> bool:
        return self.driver is not None and self.driver.leader_ready()

    def last_contact(self) -> float:
        if self.is_leader():
            return 0.0
        if self.driver is None or not self.driver.last_contact:
            return float("inf")
        return trio.current_time() - self.driver.last_contact

    async def propose(self, data: bytes, timeout: float) -> Any:
        if self.driver is None:
            raise NotLeader("", "proposal")
        return await self.driver.propose(data, timeout=timeout)

    async def read_index(self, timeout: float) -> None:
        if self.driver is None:
            raise NotLeader("", "read index")
        await self.driver.read_index(timeout=timeout)

    def voters(self) -> tuple[str, ...]:
        if self.driver is None:
            return ()
        conf = self.driver.status().conf
        return tuple(sorted(s.address for s in conf.servers if s.suffrage is Suffrage.VOTER))

    async def _rpc_leader(self, _args: Any) -> str:
        return self._leader

    async def _rpc_peers(self, _args: Any) -> list[str]:
        return list(self.voters())

    def stats(self) -> dict[str, str]:
        """Consul's Stats.raft keys, where we have the figure."""
        if self.driver is None or self.store is None:
            return {"state": "Follower", "num_peers": "0", "applied_index": "0", "commit_index": "0", "term": "0"}
        driver, st = self.driver, self.driver.status()
        snap = self.store.snapshot().meta
        last_contact = "never"
        if st.role is Role.LEADER:
            last_contact = "0"
        elif driver.last_contact:
            last_contact = f"{(trio.current_time() - driver.last_contact) * 1000:.3f}ms"
        latest = " ".join(  # hashicorp/raft's []Server printed with %+v, as Consul shows it
            f"{{Suffrage:{'Voter' if x.suffrage is Suffrage.VOTER else 'Nonvoter'} ID:{x.id} Address:{x.address}}}"
            for x in st.conf.servers)
        return {
            "applied_index": str(driver.applied),
            "commit_index": str(st.commit),
            "fsm_pending": "0",
            "last_contact": last_contact,
            "last_log_index": str(st.last_index),
            "last_log_term": str(st.last_term),
            "last_snapshot_index": str(snap.index),
            "last_snapshot_term": str(snap.term),
            "latest_configuration": f"[{latest}]",
            "num_peers": str(max(0, len(st.conf.voters()) - 1)),
            "protocol_version": "3",
            "protocol_version_max": "3",
            "protocol_version_min": "0",
            "snapshot_version_max": "1",
            "snapshot_version_min": "0",
            "state": {Role.LEADER: "Leader", Role.CANDIDATE: "Candidate"}.get(st.role, "Follower"),
            "term": str(st.term),
        }

    # ---------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        s = self.settings
        store = self.store = await trio.to_thread.run_sync(RaftStore.open, s.data_dir, None)
        try:
            transport = self.transport = Transport(s.node_id, store.cluster_id or "", host=s.bind_addr, port=s.port,
                                                   rpc_handler=self.rpc.serve)
            async with trio.open_nursery() as nursery:
                await nursery.start(transport.run)
                self._sync_peers()
                if store.cluster_id:
                    self.announce_cluster(store.cluster_id)
                    nursery.start_soon(self._refuse_another_clusters_data, store.cluster_id)
                task_status.started()
                first: Message | None = None
                if not _has_state(store):
                    first = await self._wait_to_start(store, transport)
                await self._start_driver(nursery, store, transport, first)
        finally:
            store.close()

    async def _start_driver(self, nursery: trio.Nursery, store: RaftStore, transport: Transport,
                            first: Message | None) -> None:
        s = self.settings
        snap = store.snapshot()
        if not snap.is_empty:
            self.machine.restore(snap.data)
        config = Config(id=s.node_id, election_tick=s.timing.election_tick, heartbeat_tick=1,
                        check_quorum=True, pre_vote=True, applied=snap.meta.index)
        node = RawNode(config, store, random.Random())
        driver = self.driver = Driver(node, store, transport, self.machine, tick_interval=s.timing.tick,
                                      snapshot_every=s.snapshot_every)
        await nursery.start(driver.run)
        if first is not None:
            await driver.inject(first)
        voters = node.status().conf.voters()
        if voters == {s.node_id}:  # alone: no one to wait for (Consul's single server elects itself at once)
            await driver.call(lambda n: n.campaign())
        nursery.start_soon(self._publish_loop, driver)
        nursery.start_soon(self._reconcile_loop, driver)
        if store.cluster_id is None:
            nursery.start_soon(self._adopt_cluster, driver, store, transport)
        log.info("raft: server %s started (term %d, last index %d, %d servers in the configuration)",
                 s.node_id, store.hard_state.term, store.last_index(), len(node.status().conf.servers))

    # ---------------------------------------------------------------- bootstrap

    async def _wait_to_start(self, store: RaftStore, transport: Transport) -> Message | None:
        """Until we bootstrap (None) or a leader's message arrives (returned: the driver gets it first)."""
        s = self.settings
        disabled = False
        while True:
            if not disabled:
                servers = self._bootstrap_list()
                if servers is not None:
                    if await self._peers_exist(servers):
                        log.info("agent: Existing Raft peers reported by server, disabling bootstrap mode")
                        disabled = True
                    else:
                        await trio.to_thread.run_sync(self._write_bootstrap, store, servers)
                        transport.set_cluster(store.cluster_id or "")
                        self.announce_cluster(store.cluster_id or "")
                        return None
            with trio.move_on_after(BOOTSTRAP_POLL):
                msg = await transport.inbox.receive()
                log.info("raft: server %s joins the cluster of %s", s.node_id, msg.from_)
                return msg

    def _bootstrap_list(self) -> list[Server] | None:
        s = self.settings
        if s.bootstrap:
            return [Server(s.node_id, s.address)]
        if s.bootstrap_expect <= 0:
            return None
        alive = [p for p in self.pool.values() if p.status == STATUS_ALIVE]
        for p in alive:
            if p.bootstrap:
                log.error("agent: '%s' is in bootstrap mode; not bootstrapping with bootstrap_expect", p.name)
                return None
            if p.expect and p.expect != s.bootstrap_expect:
                log.error("agent: Member %s has a conflicting expect value. All nodes should expect the same number.",
                          p.name)
                return None
        if len(alive) < s.bootstrap_expect or s.node_id not in {p.id for p in alive}:
            return None
        return [Server(p.id, p.address) for p in alive]

    async def _peers_exist(self, servers: list[Server]) -> bool:
        for server in servers:
            if server.id == self.settings.node_id:
                continue
            try:
                peers = await call(server.address, "Status.Peers", timeout=1.0)
            except RPCError as err:
                log.info("agent: cannot ask %s for its Raft peers before bootstrapping: %s", server.address, err)
                continue
            if peers:
                return True
        return False

    def _write_bootstrap(self, store: RaftStore, servers: list[Server]) -> None:
        entries, hard = bootstrap(servers)
        store.set_cluster_id(cluster_id_for(servers))
        store.append(entries)
        store.set_hard_state(hard)
        store.sync()
        log.info("raft: bootstrapped cluster %s with %d servers: %s", store.cluster_id, len(servers),
                 ", ".join(f"{x.id} ({x.address})" for x in sorted(servers, key=lambda x: x.id)))

    async def _adopt_cluster(self, driver: Driver, store: RaftStore, transport: Transport) -> None:
        """A new server takes the cluster id of the first leader it hears from, and keeps it on disk: from the
        leader's hello, or from its gossip tag (CLUSTER_TAG) when the connection was made before the leader had an
        id (a leader that bootstrapped after the connection opened never says it again in a hello); checked on
        every change and every BOOTSTRAP_POLL, since neither arrives with a change of leader."""
        me = self.settings.node_id
        while store.cluster_id is None:
            leader = driver.soft_state.leader
            cluster = ""
            if leader and leader != me:
                p = self.pool.get(leader)
                cluster = transport.peer_cluster(leader) or (p.cluster if p is not None else "")
            if cluster:
                await trio.to_thread.run_sync(store.set_cluster_id, cluster)
                transport.set_cluster(cluster)
                self.announce_cluster(cluster)
                log.info("raft: joined cluster %s (leader %s)", cluster, leader)
                return
            with trio.move_on_after(BOOTSTRAP_POLL):
                await driver.wait_changed()

    async def _refuse_another_clusters_data(self, cluster_id: str) -> None:
        """At start: a data dir from another cluster stops the agent (exit 1) instead of running a second Raft
        cluster inside this pool.  The servers announce their cluster id in gossip (CLUSTER_TAG); if within
        HOME_WINDOW seconds the other alive servers of our datacenter show only other clusters' ids for
        FOREIGN_SETTLE seconds, and none shows ours, our data is not theirs.  Seeing a server of our own cluster
        ends the check (the transport's hello check still refuses other clusters' connections afterwards)."""
        s = self.settings
        foreign_since: float | None = None
        with trio.move_on_after(HOME_WINDOW):
            while True:
                clusters = announced_clusters(s.node_id, self.pool)
                if cluster_id in clusters:
                    return
                now = trio.current_time()
                if not clusters:
                    foreign_since = None
                elif foreign_since is None:
                    foreign_since = now
                elif now - foreign_since >= FOREIGN_SETTLE:
                    theirs = "; ".join(f"{cid} ({', '.join(names)})" for cid, names in sorted(clusters.items()))
                    raise ClusterMismatch(
                        f"raft data in {s.data_dir / 'raft'} belongs to cluster {cluster_id}, but the servers of "
                        f"datacenter {s.datacenter!r} are in cluster {theirs}: this data dir is from another "
                        f"cluster; remove {s.data_dir / 'raft'} to join them as a new server, or start this server "
                        f"with its own cluster's data dir")
                with trio.move_on_after(BOOTSTRAP_POLL):
                    await self._pool_changed.wait()

    # ---------------------------------------------------------------- the leader, published

    async def _publish_loop(self, driver: Driver) -> None:
        while True:
            status = driver.status()
            self._sync_peers()
            leader = status.conf.get(status.lead) if status.lead else None
            self._leader = leader.address if leader is not None else ""
            self.on_leader(self._leader, self.voters())
            await driver.wait_changed()

    # ---------------------------------------------------------------- membership (leader)

    async def _reconcile_loop(self, driver: Driver) -> None:
        while True:
            with trio.move_on_after(RECONCILE_INTERVAL):
                await self._pool_changed.wait()
            if driver.soft_state.role is Role.LEADER:
                status = driver.status()
                connected = self.transport.connected() if self.transport is not None else frozenset()
                change = next_change(status.id, status.conf, self._joinable_pool(), connected)
                if change is not None:
                    await self._propose_change(driver, change)

    def _joinable_pool(self) -> dict[str, PoolServer]:
        """The pool less what Consul's leader refuses to add: with us in bootstrap mode, another server in
        bootstrap mode ("Two nodes are in bootstrap mode. Only one node should be in bootstrap mode")."""
        if not self.settings.bootstrap:
            return self.pool
        pool = {}
        for sid, p in self.pool.items():
            if sid != self.settings.node_id and p.bootstrap:
                if sid not in self._warned_bootstrap:
                    self._warned_bootstrap.add(sid)
                    log.error("raft: Two nodes are in bootstrap mode. Only one node should be in bootstrap mode, "
                              "not adding Raft peer: %s", p.name)
                continue
            pool[sid] = p
        return pool

    async def _propose_change(self, driver: Driver, change: ConfChange) -> None:
        try:
            await driver.change_membership(change, timeout=self.settings.timing.election_timeout * 2)
        except (RaftError, trio.TooSlowError) as err:
            log.info("raft: membership change %s %s not made: %s", change.kind.name, change.server_id,
                     err or "timed out")
            return
        log.info("raft: membership change applied: %s %s %s", change.kind.name, change.server_id, change.address)

    # ---------------------------------------------------------------- operator (the leader answers; others forward)

    def is_leader(self) -> bool:
        return self.driver is not None and self.driver.soft_state.role is Role.LEADER

    async def _rpc_configuration(self, args: Any) -> dict[str, Any]:
        """Consul's RaftConfigurationResponse: every server with its node name, and the configuration's index.
        The leader's, or with ``stale`` this server's own (none yet while it waits for ``bootstrap_expect``)."""
        stale = isinstance(args, dict) and bool(args.get("stale"))
        if not stale and not self.is_leader():
            raise _not_leading(self._leader)
        if self.driver is None:
            return {"Servers": [], "Index": 0}
        st = self.driver.status()
        names = {p.id: p.name for p in self.pool.values()}
        servers = [{"ID": x.id, "Node": names.get(x.id, ""), "Address": x.address, "Leader": x.id == st.lead,
                    "ProtocolVersion": "3", "Voter": x.suffrage is Suffrage.VOTER} for x in st.conf.servers]
        return {"Servers": servers, "Index": self.driver.conf_index}

    async def _rpc_remove_peer(self, args: Any) -> None:
        """Remove a server by ``id`` or ``address`` (Consul's RaftRemovePeerByID / ByAddress)."""
        if not self.is_leader():
            raise _not_leading(self._leader)
        assert self.driver is not None
        server_id, address = str(args.get("id") or ""), str(args.get("address") or "")
        conf = self.driver.status().conf
        target = next((x for x in conf.servers if (server_id and x.id == server_id)
                       or (address and x.address == address)), None)
        if target is None:
            what = f'id "{server_id}"' if server_id else f'address "{address}"'
            raise RPCError(f"{what} was not found in the Raft configuration")
        try:
            await self.driver.change_membership(ConfChange(ConfChangeKind.REMOVE_SERVER, target.id),
                                                timeout=self.settings.timing.election_timeout * 2)
        except (RaftError, trio.TooSlowError) as err:
            raise RPCError(f"removing {target.id}: {err or 'timed out'}") from None
        log.info("raft: removed peer %s (%s) on request", target.id, target.address)

    async def leave(self) -> None:
        """A graceful leave (Consul's server Leave), called once the gossip leave is done, so the next leader
        already sees us left and never adds us back.

        A leader first hands leadership to its most up-to-date alive voter (`RawNode.transfer_leadership`: the
        voter is caught up, then campaigns at once on TIMEOUT_NOW), and waits for that new leader (at most
        `TRANSFER_TIMEOUTS` election timeouts); writes pause for about one round trip instead of an election
        timeout.  Then, as every leaving server, it has the leader remove it from the configuration
        (``Operator.RaftRemovePeer``), within Consul's 5 s grace, so the cluster's quorum shrinks with it rather
        than counting a voter that is gone.  A leader whose transfer fails (no other voter caught up in time)
        removes itself instead: the core then hands over once the removal commits."""
        driver = self.driver
        if driver is None or len(driver.status().conf.voters()) < 2:
            return
        if self.is_leader() and not await self._transfer_leadership(driver):
            await self._remove_self_as_leader(driver)
            return
        await self._have_leader_remove_us(driver)

    async def _transfer_leadership(self, driver: Driver) -> bool:
        """Hand leadership to the alive voter with the longest log; True once another server leads."""
        status = driver.status()
        candidates = [(pr.match, sid) for sid, pr in status.progress.items()
                      if sid != status.id and sid in status.conf.voters()
                      and (p := self.pool.get(sid)) is not None and p.status == STATUS_ALIVE]
        if not candidates:
            log.warning("raft: no alive voter to hand leadership to before leaving")
            return False
        _, target = max(candidates)
        try:
            await driver.call(lambda node: node.transfer_leadership(target))
        except RaftError as err:
            log.warning("raft: could not start a leadership transfer to %s: %s", target, err)
            return False
        with trio.move_on_after(TRANSFER_TIMEOUTS * self.settings.timing.election_timeout):
            while driver.soft_state.role is Role.LEADER or driver.soft_state.leader in ("", status.id):
                await driver.wait_changed()
            log.info("raft: handed leadership to %s before leaving", driver.soft_state.leader)
            return True
        log.warning("raft: leadership transfer to %s did not complete within %d election timeouts", target,
                    TRANSFER_TIMEOUTS)
        return False

    async def _remove_self_as_leader(self, driver: Driver) -> None:
        try:
            await driver.change_membership(ConfChange(ConfChangeKind.REMOVE_SERVER, self.settings.node_id),
                                           timeout=self.settings.timing.election_timeout * 2)
            log.info("raft: removed ourselves from the configuration before leaving")
        except (RaftError, trio.TooSlowError) as err:
            log.warning("raft: could not remove ourselves before leaving: %s", err or "timed out")

    async def _have_leader_remove_us(self, driver: Driver) -> None:
        """Ask the leader to remove us, retrying (a leader change, a change in flight) for REMOVE_GRACE seconds."""
        me = self.settings.node_id
        with trio.move_on_after(REMOVE_GRACE):
            while True:
                leader = self._leader
                if leader and not self.is_leader():
                    try:
                        await call(leader, "Operator.RaftRemovePeer", {"id": me}, timeout=REMOVE_GRACE,
                                   cluster=(self.store.cluster_id if self.store is not None else None) or "")
                        log.info("raft: the leader removed us from the configuration before we leave")
                        return
                    except RPCError as err:
                        if "was not found in the Raft configuration" in str(err):
                            return  # removed already (its membership loop saw us leave)
                        log.info("raft: asking %s to remove us before leaving: %s", leader, err)
                await trio.sleep(BOOTSTRAP_POLL)
        log.warning("raft: not removed from the configuration within %gs; leaving anyway", REMOVE_GRACE)

    async def local_rpc(self, method: str, args: dict[str, Any]) -> Any:
        """Run one of our RPC methods in-process (the leader answering its own agent's HTTP request)."""
        return await self.rpc.handlers[method](args)



def _not_leading(leader: str) -> RPCError:
    """A leader-only call on a server that does not lead: it did nothing (the caller may hold it for the next)."""
    return RPCError(NOT_THE_LEADER if leader else str(NoLeader()))


def _has_state(store: RaftStore) -> bool:
    return store.last_index() > 0 or store.hard_state.term > 0 or not store.snapshot().is_empty
