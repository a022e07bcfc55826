"""SimNet: a seeded in-memory network with a virtual clock, for sans-IO gossip machines.

No trio, no sockets, no wall clock: a heap of timestamped deliveries, processed in order. Any object with
the IO surface of docs/internals.md can be a host (protocol.Node, protocol.Serf, a fake):

    handle_datagram(now, addr, data)              handle_timeout(now)
    handle_stream(now, addr, data) -> bytes|None  poll_transmit() -> Datagram | StreamOpen | None
    handle_stream_reply(now, sid, data) -> bool   poll_event() -> event | None
    handle_stream_error(now, sid, reason)         poll_timeout() -> float | None

Quick start::

    net = SimNet(seed=7)                                    # latency 0.5-2 ms per link, no loss
    a = net.add_node("a", Config.local())                  # a protocol.Node at a fresh address
    b = net.spawn("b", lambda addr, rng, now: Serf(cfg, name="b", addr=addr, rng=rng, now=now, tags={}))
    net.do("b", lambda m, now: m.join(now, [a.addr]))      # call a command, then flush its outputs
    assert net.run_until(lambda: all_see_each_other(), deadline=net.now + 10)
    net.run_for(5.0)

Network knobs (change any time):

* ``net.loss`` -- UDP loss probability (global); ``set_link_loss(a, b, p)`` overrides one link.
* latency: each link gets a fixed latency drawn uniformly from ``latency=(lo, hi)`` on first use; with
  ``hashed_latency=True`` it is a hash of the seed and the link's two addresses instead (the same fixed, uniform,
  seed-dependent latency per link, but nothing stored: random gossip makes nearly every pair of N hosts talk, and a
  table of N^2 / 2 links is gigabytes at N = 5000).
* ``partition(group1, group2, ...)`` -- hosts in different groups cannot exchange anything (UDP or TCP);
  hosts in no group talk to everyone. ``heal()`` ends all partitions.
* ``block_udp(a, b)`` -- only UDP between a and b is dropped (TCP still works).
* ``kill(name)`` -- the host stops processing forever (no shutdown call: a crash). ``replace(name, machine)``
  puts a new machine (a restart) at the same address.
* ``stall(name, seconds)`` -- the host processes nothing for that long (a GC pause, a frozen VM); what
  arrived meanwhile is processed as a backlog when it resumes, then its overdue timers run.

TCP model: ``StreamOpen`` data arrives whole after the link latency; the target's ``handle_stream`` reply
comes back whole after the latency and is fed to ``handle_stream_reply`` (``handle_stream_error(…, "EOF")`` if
the reply is incomplete). If the target is dead, missing or partitioned away, the opener gets
``handle_stream_error(…, "timeout")`` when the StreamOpen's timeout expires.

Observation: every host keeps ``host.log``, a list of ``(time, event)`` for all polled events (Diagnostics
at "debug" level only if ``SimNet(debug=True)``); ``net.events(name, EventType)`` filters it. ``keep_log=False``
keeps nothing (N hosts each reporting N joins is N^2 records): read the events through ``net.on_event`` then.
``net.stats`` counts datagrams sent/lost/delivered and streams. Everything is deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from protocol.config import Config
from protocol.interning import share_widely
from protocol.node import Datagram, Delegate, Diagnostic, Node, StreamOpen

Addr = tuple[str, int]
Factory = Callable[[Addr, random.Random, float], Any]

__all__ = ["Host", "SimNet"]


@attrs.define(eq=False)
class Host:
    """A machine attached to the network."""

    name: str
    addr: Addr
    machine: Any
    rng: random.Random
    alive: bool = True
    stalled_until: float = 0.0
    backlog: list[Callable[[float], None]] = attrs.Factory(list)
    log: list[tuple[float, Any]] = attrs.Factory(list)
    wake_at: float | None = None
    wake_gen: int = 0


@attrs.define(eq=False)
class _Stream:
    opener: Host
    stream_id: int
    timeout_at: float
    open: bool = True
    epoch: int = 0  # the opener's machine epoch: a replaced machine must not get old replies


class SimNet:
    """The simulated network; see the module docstring."""

    def __init__(
        self,
        seed: int = 0,
        *,
        latency: tuple[float, float] = (0.0005, 0.002),
        loss: float = 0.0,
        debug: bool = False,
        port: int = 7946,
        keep_log: bool = True,
        hashed_latency: bool = False,
    ) -> None:
        share_widely()  # many members in one process: the simulator's tables, shared queue ids (interning.py)
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.latency = latency
        self.loss = loss
        self.debug = debug
        self.port = port
        self.keep_log = keep_log
        self.hashed_latency = hashed_latency
        self.hosts: dict[str, Host] = {}
        self.stats: Counter[str] = Counter()
        self.on_event: Callable[[Host, float, Any], None] | None = None
        self._by_addr: dict[Addr, Host] = {}
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._link_latency: dict[tuple[Addr, Addr], float] = {}
        self._addr_text: dict[Addr, str] = {}  # repr of each address met, for hashed_latency
        self._link_loss: dict[frozenset[str], float] = {}
        self._group: dict[str, int] = {}
        self._udp_blocked: set[frozenset[str]] = set()
        self._epochs: dict[str, int] = {}

    # --------------------------------------------------------------------------------------------------
    # hosts

    def next_addr(self) -> Addr:
        """A fresh address, 10.x.y.z:port."""
        i = len(self._by_addr) + 1
        return (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", self.port)

    def add(self, name: str, machine: Any, addr: Addr) -> Host:
        """Attach an existing machine at `addr` (it must already use `addr` and this net's clock)."""
        if name in self.hosts:
            raise ValueError(f"duplicate host {name}")
        host = Host(name, addr, machine, random.Random(f"{self.seed}/{name}"))
        self.hosts[name] = host
        self._by_addr[addr] = host
        self._epochs[name] = 0
        self._pump(host)
        return host

    def spawn(self, name: str, factory: Factory, addr: Addr | None = None) -> Host:
        """Create a machine with `factory(addr, rng, now)` at a fresh (or given) address and attach it."""
        addr = addr or self.next_addr()
        rng = random.Random(f"{self.seed}/{name}/machine")
        return self.add(name, factory(addr, rng, self.now), addr)

    def add_node(self, name: str, config: Config, delegate: Delegate | None = None, addr: Addr | None = None) -> Host:
        """Spawn a bare protocol.Node."""
        return self.spawn(
            name, lambda a, rng, now: Node(config, name=name, addr=a, rng=rng, now=now, delegate=delegate), addr
        )

    def machine(self, name: str) -> Any:
        return self.hosts[name].machine

    def do(self, name: str, fn: Callable[[Any, float], Any]) -> Any:
        """Call `fn(machine, now)` (a command such as join/leave) and flush what it produced."""
        host = self.hosts[name]
        result = fn(host.machine, self.now)
        self._pump(host)
        return result

    def kill(self, name: str) -> None:
        """Crash the host: it processes nothing from now on."""
        self.hosts[name].alive = False

    def replace(self, name: str, machine: Any) -> Host:
        """Put a new machine (a restarted process) at the host's address; the old one is gone."""
        host = self.hosts[name]
        host.machine = machine
        host.alive = True
        host.backlog.clear()
        host.stalled_until = 0.0
        host.wake_at = None
        host.wake_gen += 1
        self._epochs[name] += 1
        self._pump(host)
        return host

    def stall(self, name: str, seconds: float) -> None:
        """Freeze the host for `seconds`; it then processes its backlog and overdue timers."""
        host = self.hosts[name]
        host.stalled_until = max(host.stalled_until, self.now + seconds)
        self._push(host.stalled_until, lambda: self._resume(host))

    # --------------------------------------------------------------------------------------------------
    # network conditions

    def partition(self, *groups: Iterable[str]) -> None:
        """Hosts in different groups cannot talk; replaces any earlier partition."""
        self._group = {name: i for i, group in enumerate(groups) for name in group}

    def heal(self) -> None:
        self._group = {}

    def block_udp(self, a: str, b: str) -> None:
        self._udp_blocked.add(frozenset((a, b)))

    def unblock_udp(self, a: str, b: str) -> None:
        self._udp_blocked.discard(frozenset((a, b)))

    def set_link_loss(self, a: str, b: str, p: float) -> None:
        self._link_loss[frozenset((a, b))] = p

    def set_link_latency(self, a: Addr, b: Addr, seconds: float) -> None:
        """Fix the one-way latency between two addresses (otherwise drawn at first use)."""
        self._link_latency[(a, b) if a <= b else (b, a)] = seconds

    def can_talk(self, a: Host, b: Host) -> bool:
        ga, gb = self._group.get(a.name), self._group.get(b.name)
        return ga is None or gb is None or ga == gb

    def link_latency(self, src: Addr, dst: Addr) -> float:
        key = (src, dst) if src <= dst else (dst, src)
        if self.hashed_latency:
            # f"{seed}|{key}" hashed, from each address's text made once (str(key) is "(a, b)" of their reprs)
            texts = self._addr_text
            a, b = texts.get(key[0]), texts.get(key[1])
            if a is None or b is None:
                a, b = texts.setdefault(key[0], repr(key[0])), texts.setdefault(key[1], repr(key[1]))
            digest = hashlib.blake2b(f"{self.seed}|({a}, {b})".encode(), digest_size=8).digest()
            lo, hi = self.latency
            return lo + (hi - lo) * (int.from_bytes(digest, "big") / 2**64)
        lat = self._link_latency.get(key)
        if lat is None:
            lat = self._link_latency[key] = self.rng.uniform(*self.latency)
        return lat

    # --------------------------------------------------------------------------------------------------
    # running

    def run_for(self, seconds: float) -> None:
        """Advance the clock by `seconds`, processing everything due."""
        self._run_to(self.now + seconds)

    def run_until(self, condition: Callable[[], bool], deadline: float, check_every: float = 0.05) -> bool:
        """Run until `condition()` holds (checked every `check_every` simulated seconds) or the absolute
        time `deadline` passes; True if the condition was met. The clock stops where it was met."""
        if condition():
            return True
        while self.now < deadline:
            self._run_to(min(self.now + check_every, deadline))
            if condition():
                return True
        return False

    def events(self, name: str, kind: type | tuple[type, ...] | None = None) -> list[Any]:
        """The host's logged events (optionally only instances of `kind`), without timestamps."""
        return [e for _t, e in self.hosts[name].log if kind is None or isinstance(e, kind)]

    # --------------------------------------------------------------------------------------------------
    # internals

    def _push(self, when: float, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, fn))

    def _run_to(self, t: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t:
            when, _seq, fn = heapq.heappop(heap)
            self.now = when
            fn()
        self.now = t

    def _deliver(self, host: Host, fn: Callable[[float], None]) -> None:
        """Run `fn(now)` on the host unless it is dead; queue it while the host is stalled."""
        if not host.alive:
            return
        if self.now < host.stalled_until:
            host.backlog.append(fn)
            return
        fn(self.now)
        self._pump(host)

    def _resume(self, host: Host) -> None:
        if not host.alive or self.now < host.stalled_until:
            return
        backlog, host.backlog = host.backlog, []
        for fn in backlog:
            fn(self.now)
        host.machine.handle_timeout(self.now)
        self._pump(host)

    def _wake(self, host: Host, gen: int) -> None:
        if gen != host.wake_gen or not host.alive:
            return
        host.wake_at = None
        if self.now < host.stalled_until:
            return  # _resume runs the timers
        host.machine.handle_timeout(self.now)
        self._pump(host)

    def _pump(self, host: Host) -> None:
        """Route the host's transmits, log its events and re-arm its wake-up."""
        machine = host.machine
        while (tx := machine.poll_transmit()) is not None:
            if isinstance(tx, Datagram):
                self._send_datagram(host, tx)
            elif isinstance(tx, StreamOpen):
                self._open_stream(host, tx)
            else:  # pragma: no cover
                raise TypeError(f"unknown transmit {tx!r}")
        while (ev := machine.poll_event()) is not None:
            if isinstance(ev, Diagnostic) and ev.level == "debug" and not self.debug:
                continue
            if self.keep_log:
                host.log.append((self.now, ev))
            if self.on_event is not None:
                self.on_event(host, self.now, ev)
        when = machine.poll_timeout()
        if when != host.wake_at and when is not None:
            host.wake_at = when
            host.wake_gen += 1
            gen = host.wake_gen
            self._push(max(when, self.now), lambda: self._wake(host, gen))

    def _send_datagram(self, src: Host, tx: Datagram) -> None:
        self.stats["udp_sent"] += 1
        dst = self._by_addr.get(tx.addr)
        # the per-link tables are looked up only when something is in them (a pair's frozenset per datagram)
        if (
            dst is None
            or (self._group and not self.can_talk(src, dst))
            or (self._udp_blocked and frozenset((src.name, dst.name)) in self._udp_blocked)
        ):
            self.stats["udp_dropped"] += 1
            return
        loss = self._link_loss.get(frozenset((src.name, dst.name)), self.loss) if self._link_loss else self.loss
        if loss and self.rng.random() < loss:
            self.stats["udp_lost"] += 1
            return
        data, from_addr = tx.data, src.addr

        def arrive() -> None:
            self.stats["udp_delivered"] += 1
            self._deliver(dst, lambda now: dst.machine.handle_datagram(now, from_addr, data))

        self._push(self.now + self.link_latency(src.addr, dst.addr), arrive)

    def _open_stream(self, src: Host, tx: StreamOpen) -> None:
        self.stats["tcp_opened"] += 1
        stream = _Stream(src, tx.stream_id, self.now + tx.timeout, epoch=self._epochs[src.name])
        self._push(stream.timeout_at, lambda: self._stream_timeout(stream))
        dst = self._by_addr.get(tx.addr)
        if dst is None or not dst.alive or not self.can_talk(src, dst):
            return  # the dial hangs until the timeout
        latency = self.link_latency(src.addr, dst.addr)
        data, from_addr, expect = tx.data, src.addr, tx.expect_reply

        def serve(now: float) -> None:
            reply = dst.machine.handle_stream(now, from_addr, data)
            if not expect:
                stream.open = False
                return
            if reply is None:
                reply = b""  # it wanted more bytes than were sent: the opener sees EOF
            if self.can_talk(src, dst):
                self._push(self.now + latency, lambda: self._stream_reply(stream, reply))

        self._push(self.now + latency, lambda: self._deliver(dst, serve))

    def _stream_reply(self, stream: _Stream, data: bytes) -> None:
        host = stream.opener

        def feed(now: float) -> None:
            if not stream.open or stream.epoch != self._epochs[host.name]:
                return
            stream.open = False
            self.stats["tcp_replies"] += 1
            if not host.machine.handle_stream_reply(now, stream.stream_id, data):
                host.machine.handle_stream_error(now, stream.stream_id, "EOF")

        self._deliver(host, feed)

    def _stream_timeout(self, stream: _Stream) -> None:
        host = stream.opener

        def fail(now: float) -> None:
            if not stream.open or stream.epoch != self._epochs[host.name]:
                return
            stream.open = False
            self.stats["tcp_timeouts"] += 1
            host.machine.handle_stream_error(now, stream.stream_id, "timeout")

        if stream.open:
            self._deliver(host, fail)
