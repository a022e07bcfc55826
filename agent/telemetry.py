"""What the agent counts, under Consul's metric names: the glue between its parts and agent/metrics.py.

Each part is measured where the supervisor already sees it, so the parts themselves stay metric-free: Raft writes
through a ``MeasuredReplica`` around the server's replica (``consul.raft.apply``, ``consul.raft.commitTime``),
leadership through the leader callback (``consul.raft.state.leader``), membership events in the supervisor's event
loop (``consul.serf.member.*``, ``consul.serf.events``).  Figures the sans-IO machines already keep (memberlist's
message counts, Serf's queue depths) and the process's own (tasks, memory) are read by collectors when the metrics
are asked for; a once-a-second sampler adds the summaries Consul samples on a timer (queue depths, the time since
the leader was last heard from).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import trio

from agent.metrics import Metrics

__all__ = [
    "STORE_COMMAND_METRICS",
    "LeaderCounter",
    "MeasuredReplica",
    "count_member_event",
    "members_collector",
    "mirror_counters",
    "runtime_collector",
    "sample_every_second",
]

SAMPLE_INTERVAL = 1.0  # serf's queue check and raft's lastContact are sampled about this often

MEMBER_EVENT_METRICS = {
    "member-join": "consul.serf.member.join",
    "member-update": "consul.serf.member.update",
    "member-leave": "consul.serf.member.left",
    "member-failed": "consul.serf.member.failed",
}
#: memberlist counters the gossip Node keeps in its ``stats`` (protocol/core.py) -> Consul's names.
MEMBERLIST_COUNTERS = {
    "msg_alive": "consul.memberlist.msg.alive",
    "msg_suspect": "consul.memberlist.msg.suspect",
    "msg_dead": "consul.memberlist.msg.dead",
}
#: Serf's coordinate counts (Serf.coordinate_counts) -> Consul's counter names.
SERF_COORDINATE_COUNTERS = {
    "rejected": "consul.serf.coordinate.rejected",
    "zero_rtt": "consul.serf.coordinate.zero-rtt",
}
#: Serf's queue depths (Serf.stats) -> Consul's sample names.
SERF_QUEUES = {
    "intent_queue": "consul.serf.queue.Intent",
    "event_queue": "consul.serf.queue.Event",
    "query_queue": "consul.serf.queue.Query",
}
#: A state command applied by the leader -> Consul's timer for that endpoint (by the command class's name).
STORE_COMMAND_METRICS = {
    "KVSet": "consul.kvs.apply", "KVCas": "consul.kvs.apply", "KVLock": "consul.kvs.apply",
    "KVUnlock": "consul.kvs.apply", "KVDelete": "consul.kvs.apply", "KVDeleteCas": "consul.kvs.apply",
    "KVDeleteTree": "consul.kvs.apply", "Txn": "consul.txn.apply", "SessionCreate": "consul.session.apply",
    "SessionDestroy": "consul.session.apply", "CatalogRegister": "consul.catalog.register",
    "CatalogDeregister": "consul.catalog.deregister",
}  # fmt: skip


def count_member_event(metrics: Metrics, kind: str) -> None:
    name = MEMBER_EVENT_METRICS.get(str(kind))
    if name is not None:
        metrics.incr(name)


def store_command_applied(metrics: Metrics, command: object, seconds: float) -> None:
    """The leader applied ``command`` in ``seconds`` (propose to result): its endpoint's timer, in ms."""
    name = STORE_COMMAND_METRICS.get(type(command).__name__)
    if name is not None:
        metrics.sample(name, seconds * 1000.0)


class MeasuredReplica:
    """The server's Raft replica as the store's service sees it, with every proposal counted and timed."""

    def __init__(self, replica: Any, metrics: Metrics) -> None:
        self._replica = replica
        self._metrics = metrics

    def is_leader(self) -> bool:
        return bool(self._replica.is_leader())

    def leader_address(self) -> str:
        return str(self._replica.leader_address())

    def leader_ready(self) -> bool:
        return bool(self._replica.leader_ready())

    def last_contact(self) -> float:
        return float(self._replica.last_contact())

    async def propose(self, data: bytes, timeout: float) -> Any:
        self._metrics.incr("consul.raft.apply")
        started = time.perf_counter()
        result = await self._replica.propose(data, timeout)
        self._metrics.measure_since("consul.raft.commitTime", started)
        return result

    async def read_index(self, timeout: float) -> None:
        await self._replica.read_index(timeout)


class LeaderCounter:
    """Wraps the Raft leader callback: ``consul.raft.state.leader`` counts the times this server became leader."""

    def __init__(self, metrics: Metrics, own_address: str, forward: Callable[[str, Any], Any]) -> None:
        self._metrics = metrics
        self._own = own_address
        self._forward = forward
        self._leader = ""

    def __call__(self, leader: str, servers: Any) -> Any:
        if leader == self._own and self._leader != self._own:
            self._metrics.incr("consul.raft.state.leader")
        self._leader = leader
        return self._forward(leader, servers)


def mirror_counters(metrics: Metrics, totals: Callable[[], Mapping[str, int]], names: Mapping[str, str]) -> None:
    """Register a collector that moves Consul's counters by what ``totals()`` (a machine's running counts)
    grew since the last read."""
    seen: dict[str, int] = {}

    def collect(m: Metrics) -> None:
        current = totals()
        for key, name in names.items():
            value = current.get(key, 0)
            if value > seen.get(key, 0):
                m.incr(name, value - seen.get(key, 0))
            seen[key] = value

    metrics.add_collector(collect)


async def drain_every_second(metrics: Metrics, values: Callable[[], deque[float]], name: str) -> None:
    """Each second, record every value a machine queued as a sample of ``name`` (emptying the queue), so the
    samples land in the interval they happened in."""
    while True:
        await trio.sleep(SAMPLE_INTERVAL)
        queued = values()
        while queued:
            metrics.sample(name, queued.popleft())


def members_collector(members: Callable[[], Any]) -> Callable[[Metrics], None]:
    """``consul.members.servers`` / ``consul.members.clients``: alive LAN members by role."""

    def collect(m: Metrics) -> None:
        alive = [x for x in members() if x.status == 1]
        servers = sum(1 for x in alive if x.tags.get("role") == "consul")
        m.gauge("consul.members.servers", servers)
        m.gauge("consul.members.clients", len(alive) - servers)

    return collect


def write_path_collector(prefix: str, stats: Callable[[], Mapping[str, int] | None]) -> Callable[[Metrics], None]:
    """``<prefix>.<count>`` gauges of running counts of the write path (the Raft driver's readies, fsyncs, entries
    persisted: agent.server.driver.DriverStats; the forwarding pool's calls and connections opened), so a
    benchmark can divide them by the writes it made."""

    def collect(m: Metrics) -> None:
        for key, value in (stats() or {}).items():
            m.gauge(f"{prefix}.{key}", value)

    return collect


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return float(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return 0.0


def _task_count() -> int:
    """All trio tasks of this run (Go's goroutine count has no closer analogue)."""
    count, stack = 0, [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def runtime_collector(metrics: Metrics) -> None:
    """``consul.runtime.*`` analogues, read when the metrics are: tasks for goroutines, resident memory."""
    with contextlib.suppress(RuntimeError):  # read outside trio (a test): no task count
        metrics.gauge("consul.runtime.num_goroutines", _task_count())
    rss = _rss_bytes()
    metrics.gauge("consul.runtime.alloc_bytes", rss)
    metrics.gauge("consul.runtime.sys_bytes", rss)


async def sample_every_second(metrics: Metrics, serf_stats: Callable[[], Mapping[str, int]],
                              last_contact: Callable[[], float] | None,
                              probe_durations: Callable[[], deque[float]]) -> None:  # fmt: skip
    """Serf's queue check (``consul.serf.queue.*``), a follower's ``consul.raft.leader.lastContact`` (ms), and the
    gossip Node's finished probes (``consul.memberlist.probeNode``, ms; the Node keeps their durations)."""
    while True:
        await trio.sleep(SAMPLE_INTERVAL)
        probes = probe_durations()
        while probes:
            metrics.sample("consul.memberlist.probeNode", probes.popleft() * 1000.0)
        stats = serf_stats()
        for key, name in SERF_QUEUES.items():
            metrics.sample(name, float(stats.get(key, 0)))
        if last_contact is not None:
            contact = last_contact()
            if 0 < contact < float("inf"):
                metrics.sample("consul.raft.leader.lastContact", contact * 1000.0)
