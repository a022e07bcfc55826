"""protocol.Node: memberlist's failure detector and membership gossip as a sans-IO state machine.

It reproduces hashicorp/memberlist (state.go, net.go, memberlist.go) behaviour for behaviour, so that a
cluster mixing Go and Python nodes agrees on who is alive:

* probing: randomized round robin over a shuffled member list; a ping with an ack deadline of
  probe_timeout, then indirect pings through `indirect_checks` peers (asking for nacks) and a TCP ping in
  parallel, all awaited until the (awareness-scaled) probe interval ends; no ack -> suspect.
* Lifeguard: awareness deltas (-1 per successful probe, +missed nacks or +1 per failed one, +1 per refute),
  suspicion timers that shrink with independent confirmations, refutation by incarnation bump.
* dissemination: every outgoing packet piggybacks queued broadcasts (and the delegate's user messages) up to
  udp_buffer_size; periodic gossip to `gossip_nodes` random live or recently dead members.
* anti-entropy: push/pull of the full state over TCP on join and every push_pull_interval (scaled).

Nothing here does IO or reads a clock: inputs arrive through `handle_*` with the current time, outputs are
pulled with `poll_transmit` / `poll_event`, and `poll_timeout` says when to call `handle_timeout` next.
The precedence rules of alive/suspect/dead live in protocol/state.py; this module carries them out.
"""

from __future__ import annotations

import heapq
import ipaddress
import math
import random
import sys
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import attrs

from protocol import packets
from protocol.awareness import Awareness
from protocol.broadcast import BroadcastQueue
from protocol.codec import (
    Ack,
    Alive,
    Dead,
    DecodeError,
    ErrResp,
    IndirectPing,
    MessageType,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    User,
    UserStream,
    decode,
    encode,
)
from protocol.config import Config
from protocol.keyring import DecryptError, Keyring, encrypt_overhead
from protocol.state import (
    INCARNATION_JUMP_LIMIT,
    MAX_INCARNATION,
    MERGE_AS,
    META_MAX_SIZE,
    Action,
    Addr,
    MergeAs,
    NodeState,
    NodeStateType,
    Notify,
    implausible_incarnation,
    judge_alive,
    judge_dead,
    judge_suspect,
    notify_after_alive,
    valid_versions,
    verify_protocol,
)
from protocol.suspicion import Suspicion, push_pull_scale, random_offset, retransmit_limit, suspicion_timeout

__all__ = [
    "Datagram",
    "Delegate",
    "Diagnostic",
    "JoinResult",
    "LeaveDone",
    "Node",
    "NodeEvent",
    "NodeJoin",
    "NodeLeave",
    "NodeUpdate",
    "StreamOpen",
    "Transmit",
]

COMPOUND_HEADER_OVERHEAD = 2  # memberlist compoundHeaderOverhead
COMPOUND_OVERHEAD = 2  # per part
USER_MSG_OVERHEAD = 1
MAX_DATAGRAM = 65507  # the largest UDP payload; anything larger is counted as oversized
DECRYPT_LOG_INTERVAL = 10.0  # at most one "cannot decrypt" line per source address this often


# --------------------------------------------------------------------------------------------------------
# outputs


@attrs.frozen
class Datagram:
    """Send `data` as one UDP packet to `addr`."""

    addr: Addr
    data: bytes


@attrs.frozen
class StreamOpen:
    """Dial `addr` over TCP and write `data`; with `expect_reply`, feed the reply to handle_stream_reply."""

    stream_id: int
    addr: Addr
    data: bytes
    expect_reply: bool
    timeout: float


Transmit = Datagram | StreamOpen


@attrs.frozen
class NodeJoin:
    node: NodeState


@attrs.frozen
class NodeLeave:
    """A member died or left; `node.state` says which."""

    node: NodeState


@attrs.frozen
class NodeUpdate:
    node: NodeState


@attrs.frozen
class JoinResult:
    addr: Addr
    ok: bool
    error: str = ""


@attrs.frozen
class LeaveDone:
    """The leave broadcast went out (or there was nobody to tell); `timed_out` if we gave up waiting."""

    timed_out: bool = False


@attrs.frozen
class Diagnostic:
    """A log line. `kind` is a stable tag for tests and metrics (e.g. "suspect", "udp-blocked")."""

    level: str  # debug, info, warning, error
    message: str
    kind: str = ""


NodeEvent = NodeJoin | NodeLeave | NodeUpdate | JoinResult | LeaveDone | Diagnostic


class Delegate:
    """Hooks into the node, all optional (memberlist's Delegate, EventDelegate, PingDelegate,
    ConflictDelegate, AliveDelegate and MergeDelegate rolled into one). Override what you need."""

    def node_meta(self, limit: int) -> bytes:
        return b""

    def notify_msg(self, now: float, payload: bytes) -> None:
        pass

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def has_broadcasts(self) -> bool:
        """Whether get_broadcasts may return something now. The node's gossip ticker sleeps while neither its
        own queue nor this has anything to send, so a delegate that overrides get_broadcasts should override
        this too; the default says "maybe" whenever get_broadcasts is overridden."""
        return type(self).get_broadcasts is not Delegate.get_broadcasts

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, now: float, buf: bytes, join: bool) -> None:
        pass

    def ack_payload(self) -> bytes:
        return b""

    def notify_ping_complete(self, node: NodeState, rtt: float, payload: bytes) -> None:
        pass

    def notify_conflict(self, existing: NodeState, other: NodeState) -> None:
        pass

    def notify_join(self, now: float, node: NodeState) -> None:
        pass

    def notify_leave(self, now: float, node: NodeState) -> None:
        pass

    def notify_update(self, now: float, node: NodeState) -> None:
        pass

    def notify_alive(self, node: NodeState) -> str | None:
        """Return an error text to ignore an alive message (memberlist AliveDelegate)."""
        return None

    def notify_merge(self, nodes: list[NodeState]) -> str | None:
        """Return an error text to refuse a join's push/pull (memberlist MergeDelegate)."""
        return None


# --------------------------------------------------------------------------------------------------------
# internals


@attrs.define(eq=False)
class _Timer:
    when: float
    fn: Callable[[float], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@attrs.define(eq=False)
class _AckHandler:
    on_ack: Callable[[float, bytes], None]
    on_nack: Callable[[], None] | None
    timer: _Timer


@attrs.define(eq=False)
class _Probe:
    """One probe round against `target` (memberlist probeNode's locals)."""

    target: NodeState
    seq: int
    sent: float
    deadline: float
    indirect_timer: _Timer | None = None  # probe_timeout: indirect pings and TCP fallback, unless acked by then
    indirect: bool = False  # past probe_timeout: indirect pings and TCP fallback are out
    expected_nacks: int = 0
    nacks: int = 0
    fallback_ok: bool = False
    done: bool = False


@attrs.define(eq=False)
class _PendingStream:
    kind: str  # "push_pull" or "ping"
    addr: Addr
    join: bool = False
    probe: _Probe | None = None
    seq: int = 0
    reader: packets.StreamReader | None = None  # the reply, as it arrives


@attrs.define(eq=False)
class _Inbound:
    """A TCP connection someone opened to us: its reader keeps the partial message between chunks."""

    addr: Addr
    opened: float
    reader: packets.StreamReader


@attrs.define(eq=False)
class _SuspicionTimer:
    suspicion: Suspicion
    timer: _Timer
    change_time: float


_GOSSIP_TYPES = frozenset((MessageType.ALIVE, MessageType.SUSPECT, MessageType.DEAD))
_DECODED: dict[bytes, Any] = {}
_DECODED_MAX = 8192


def _decode(part: bytes) -> Any:
    """codec.decode, memoized for gossip messages: epidemic dissemination delivers each alive/suspect/dead
    to every member several times, and the decoded records are immutable."""
    if part and part[0] in _GOSSIP_TYPES:
        msg = _DECODED.get(part)
        if msg is None:
            msg = decode(part)
            if len(_DECODED) >= _DECODED_MAX:
                _DECODED.clear()
            _DECODED[part] = msg
        return msg
    return decode(part)


def _addr_text(packed: bytes) -> str:
    if len(packed) not in (4, 16):
        raise DecodeError(f"address of {len(packed)} bytes is neither IPv4 nor IPv6")
    return str(ipaddress.ip_address(packed))


# Member records are per pair of members (every member holds one about every other): N^2 of them. The values they
# hold are mostly equal across records (the same address text, meta and versions, learned by every member), so
# they are shared rather than decoded into a copy per record (issue 14: 5,000 members in one process). Shared by
# every Node in the process (all immutable values), bounded so hostile input cannot grow them without end.
_SHARED_MAX = 1 << 16
_ADDR_TEXT: dict[bytes, str] = {}
_ADDR_PACKED: dict[str, bytes] = {}
_SHARED_VALUES: dict[Any, Any] = {}


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= _SHARED_MAX:
        cache.clear()
    cache[key] = value
    return value


def _shared(value: Any) -> Any:
    """One copy of equal immutable values (meta, versions, address tuples, encoded alives) for all holders."""
    shared = _SHARED_VALUES.get(value)
    return shared if shared is not None else _bounded_put(_SHARED_VALUES, value, value)


class Node:
    """One memberlist member; see the module docstring and docs/internals.md for the IO surface."""

    INCARNATION_JUMP_LIMIT = INCARNATION_JUMP_LIMIT

    def __init__(
        self,
        config: Config,
        *,
        name: str,
        addr: Addr,
        rng: random.Random,
        now: float,
        delegate: Delegate | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.addr = addr
        #: gossip encryption (protocol/keyring.py); shared with Serf, whose key queries change it in place
        self.keyring = keyring
        self._decrypt_logged: dict[str, float] = {}
        self.stats: Counter[str] = Counter()
        #: Seconds each finished probe took, ack or probe interval end (memberlist's probeNode timer); the agent's
        #: metrics drain it, and only the latest are kept for a reader that never comes.
        self.probe_durations: deque[float] = deque(maxlen=256)
        self._rng = rng
        self._delegate = delegate if delegate is not None else Delegate()
        self._packed_addr = ipaddress.ip_address(addr[0]).packed
        self._nodes: dict[str, NodeState] = {}
        self._order: list[str] = []  # memberlist m.nodes: the probe order
        self._probe_index = 0
        self._probe: _Probe | None = None
        self._probe_tick_pending = False
        self._followups_pending = 0  # join follow-up push/pulls still to run
        self._incarnation = 0
        self._seq = 0
        self._stream_seq = 0
        self._awareness = Awareness(config.awareness_max_multiplier)
        self._broadcasts = BroadcastQueue(config.retransmit_mult)
        self._suspicions: dict[str, _SuspicionTimer] = {}
        self._acks: dict[int, _AckHandler] = {}
        self._streams: dict[int, _PendingStream] = {}
        self._inbound: dict[int, _Inbound] = {}
        self._inbound_seq = 0
        self._timers: list[tuple[float, int, _Timer]] = []
        self._timer_seq = 0
        self._transmits: deque[Transmit] = deque()
        self._events: deque[NodeEvent] = deque()
        self._left = False
        self._leave_pending = False
        self._leave_timer: _Timer | None = None
        self._shutdown = False
        self._conflict_refuted: dict[Addr, float] = {}
        self._custom = {
            hook: getattr(type(self._delegate), hook) is not getattr(Delegate, hook)
            for hook in ("notify_alive", "notify_merge")
        }
        self._set_alive(now)
        self._schedule_tickers(now)

    # ----------------------------------------------------------------------------------------------------
    # public views

    @property
    def local(self) -> NodeState:
        return self._nodes[self.name]

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @property
    def health_score(self) -> int:
        """Lifeguard awareness score (0 = healthy)."""
        return self._awareness.score

    @property
    def has_left(self) -> bool:
        return self._left

    def members(self) -> list[NodeState]:
        """Live members (alive or suspect), ourselves included, as memberlist Members()."""
        return [s for s in self.all_members() if not s.dead_or_left]

    def all_members(self) -> list[NodeState]:
        """Every known member, dead and left ones included, in probe order."""
        return [self._nodes[n] for n in self._order]

    def get(self, name: str) -> NodeState | None:
        return self._nodes.get(name)

    def num_alive(self) -> int:
        """Members not dead or left, ourselves included (memberlist NumMembers)."""
        return sum(1 for s in self._nodes.values() if not s.dead_or_left)

    def estimated_nodes(self) -> int:
        """memberlist estNumNodes: everything in the probe list, recently dead included."""
        return len(self._order)

    # ----------------------------------------------------------------------------------------------------
    # outputs

    def poll_transmit(self) -> Transmit | None:
        return self._transmits.popleft() if self._transmits else None

    def poll_event(self) -> NodeEvent | None:
        return self._events.popleft() if self._events else None

    def poll_timeout(self) -> float | None:
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        deadline = timers[0][0] if timers else None
        if self._gossip_ticking and self._has_gossip():
            gossip_at = self._gossip_tick_at
            if deadline is None or gossip_at < deadline:
                deadline = gossip_at
        return deadline

    # ----------------------------------------------------------------------------------------------------
    # timers

    def _at(self, when: float, fn: Callable[[float], None]) -> _Timer:
        timer = _Timer(when, fn)
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, timer))
        return timer

    def handle_timeout(self, now: float) -> None:
        """Run every timer due at or before `now` (in deadline order), the gossip ticker's included."""
        timers = self._timers
        while not self._shutdown:
            first = timers[0][0] if timers else math.inf
            if self._gossip_ticking and self._gossip_tick_at <= now and self._gossip_tick_at <= first:
                self._guarded(self._gossip_tick, now)  # moves _gossip_tick_at past now first: no loop
                continue
            if first > now:
                break
            _when, _seq, timer = heapq.heappop(timers)
            if timer.cancelled:
                continue
            timer.cancelled = True
            self._guarded(timer.fn, now)

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn; a bug must never escape into the driver: count it and report it instead."""
        try:
            return fn(*args)
        except (MemoryError, RecursionError):
            raise  # the process is in trouble, not one packet: let the owner see it
        except Exception as exc:  # pragma: no cover - the tests assert stats["internal_error"] == 0
            self.stats["internal_error"] += 1
            self._diag("error", f"internal error in {getattr(fn, '__name__', fn)}: {exc!r}", "internal-error")
            return None

    def _schedule_tickers(self, now: float) -> None:
        """memberlist schedule(): probe, push/pull and gossip tickers, each with a random stagger.

        The gossip ticker is not a heap timer: it keeps its phase in ``_gossip_tick_at`` and ``poll_timeout``
        only reports it while something waits to be gossiped. memberlist's gossip() sends nothing without
        broadcasts, so skipping those ticks changes nothing on the wire; it spares an idle node five wake-ups a
        second (the caller re-reads poll_timeout after every input, which is when broadcasts get queued).
        """
        cfg = self.config
        self._probe_tick_at = now + self._rng.random() * cfg.probe_interval
        self._gossip_tick_at = now + self._rng.random() * cfg.gossip_interval
        if cfg.probe_interval > 0:
            self._at(self._probe_tick_at, self._probe_tick)
        if cfg.push_pull_interval > 0:
            self._at(now + self._rng.random() * cfg.push_pull_interval, self._push_pull_tick)
        self._gossip_ticking = cfg.gossip_interval > 0 and cfg.gossip_nodes > 0

    def _next_tick(self, scheduled: float, interval: float, now: float) -> float:
        """A ticker's next time: missed ticks (a stalled process) are dropped, as Go's time.Ticker does."""
        nxt = scheduled + interval
        if nxt <= now:
            nxt += ((now - nxt) // interval + 1) * interval
        return nxt

    # ----------------------------------------------------------------------------------------------------
    # events and diagnostics

    def _diag(self, level: str, message: str, kind: str = "") -> None:
        self._events.append(Diagnostic(level, f"memberlist: {message}", kind))

    def _notify(self, now: float, kind: Notify | str, node: NodeState) -> None:
        if kind is Notify.JOIN:
            self._events.append(NodeJoin(node))
            self._delegate.notify_join(now, node)
        elif kind is Notify.UPDATE:
            self._events.append(NodeUpdate(node))
            self._delegate.notify_update(now, node)
        elif kind == "leave":
            self._events.append(NodeLeave(node))
            self._delegate.notify_leave(now, node)

    def _malformed(self, what: str, addr: Addr | None, exc: Exception | str) -> None:
        self.stats["malformed"] += 1
        src = f" from {addr[0]}:{addr[1]}" if addr else ""
        self._diag("debug", f"dropped malformed {what}{src}: {exc}", "malformed")

    # ----------------------------------------------------------------------------------------------------
    # sending

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _packed(self, text: str) -> bytes:
        packed = _ADDR_PACKED.get(text)
        if packed is None:
            packed = _bounded_put(_ADDR_PACKED, text, ipaddress.ip_address(text).packed)
        return packed

    def _ip(self, packed: bytes) -> str:
        text = _ADDR_TEXT.get(packed)
        if text is None:
            text = _bounded_put(_ADDR_TEXT, bytes(packed), _addr_text(packed))
        return text

    @property
    def _sealing(self) -> Keyring | None:
        """The keyring to encrypt with: none without keys, or while gossip_verify_outgoing is off."""
        ring = self.keyring
        return ring if ring is not None and ring.enabled and self.config.gossip_verify_outgoing else None

    def _encrypt_overhead(self) -> int:
        """memberlist subtracts encryptOverhead(vsn) from the piggyback budget whenever a keyring is set."""
        return encrypt_overhead(1) if self.keyring is not None and self.keyring.enabled else 0

    def _decrypt_failed(self, now: float, what: str, addr: Addr, exc: Exception) -> None:
        """Count every packet or stream no key opens; log its source at most once per DECRYPT_LOG_INTERVAL."""
        self.stats["decrypt_failed"] += 1
        last = self._decrypt_logged.get(addr[0])
        if last is None or now - last >= DECRYPT_LOG_INTERVAL:
            self._decrypt_logged[addr[0]] = now
            total = self.stats["decrypt_failed"]
            self._diag(
                "warning", f"decrypt {what} failed from {addr[0]}:{addr[1]}: {exc} ({total} refused so far)", "decrypt"
            )

    def _raw_send(self, addr: Addr, msgs: list[bytes], node: NodeState | None) -> None:
        """One UDP packet of `msgs` (compound if several), CRC'd when the target understands v5."""
        cfg = self.config
        data = packets.wrap_packet(
            msgs,
            crc=node is not None and node.pmax >= 5,
            label=cfg.label,
            compress=cfg.enable_compression,
            limit=MAX_DATAGRAM,
            keyring=self._sealing,
        )
        self.stats["udp_sent"] += 1
        self._transmits.append(Datagram(addr, data))

    def _send_msg(self, addr: Addr, msg: bytes, node: NodeState | None = None) -> None:
        """memberlist sendMsg: piggyback whatever broadcasts fit in the rest of the packet."""
        avail = self.config.udp_buffer_size - len(msg) - COMPOUND_HEADER_OVERHEAD - self._encrypt_overhead()
        extra = self._get_broadcasts(COMPOUND_OVERHEAD, avail)
        self._raw_send(addr, [msg, *extra], node)

    def _get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Our queued broadcasts, then the delegate's user messages in the space left."""
        to_send = self._broadcasts.get_broadcasts(overhead, limit, self.estimated_nodes())
        used = sum(len(m) + overhead for m in to_send)
        avail = limit - used
        if avail > overhead + USER_MSG_OVERHEAD:
            for msg in self._delegate.get_broadcasts(overhead + USER_MSG_OVERHEAD, avail):
                to_send.append(encode(User(msg)))
        return to_send

    def _broadcast(self, key: str, msg: bytes, on_finished: Callable[[], None] | None = None) -> None:
        self._broadcasts.queue(key, msg, on_finished)

    def _wrap_stream(self, msg: bytes) -> bytes:
        cfg = self.config
        return packets.wrap_stream(msg, label=cfg.label, compress=cfg.enable_compression, keyring=self._sealing)

    def _open_stream(self, addr: Addr, data: bytes, pending: _PendingStream | None, timeout: float) -> int:
        self._stream_seq += 1
        sid = self._stream_seq
        if pending is not None:
            self._streams[sid] = pending
        self.stats["tcp_opened"] += 1
        self._transmits.append(StreamOpen(sid, addr, data, pending is not None, timeout))
        return sid

    # ----------------------------------------------------------------------------------------------------
    # random member selection

    def _k_random(self, k: int, exclude: Callable[[NodeState], bool]) -> list[NodeState]:
        """memberlist kRandomNodes: up to k distinct members not excluded, 3n random draws at most."""
        order, nodes = self._order, self._nodes
        n = len(order)
        picked: list[NodeState] = []
        seen: set[str] = set()
        for _ in range(3 * n):
            if len(picked) >= k:
                break
            name = order[random_offset(self._rng, n)]
            if name in seen:
                continue
            state = nodes[name]
            if exclude(state):
                continue
            seen.add(name)
            picked.append(state)
        return picked

    # ----------------------------------------------------------------------------------------------------
    # commands

    def join(self, now: float, addrs: list[Addr]) -> None:
        """Push/pull (join=True) with each address; one JoinResult event per address."""
        if self._shutdown:
            return
        for addr in addrs:
            self._start_push_pull(now, tuple(addr), join=True)  # type: ignore[arg-type]

    def leave(self, now: float) -> None:
        """Broadcast a dead message about ourselves with From == us (a graceful leave); LeaveDone follows
        once that broadcast has been fully sent, at once if nobody is alive to tell, or after
        broadcast_timeout (then with timed_out=True)."""
        if self._shutdown:
            return
        if self._left:
            self._events.append(LeaveDone())
            return
        self._left = True
        self._leave_pending = True
        me = self.local
        self._dead_node(now, Dead(me.incarnation, me.name, me.name))
        self.gossip_now(now)
        if not self._leave_pending:
            return  # already finished
        if any(not s.dead_or_left and s.name != self.name for s in self._nodes.values()):
            self._leave_timer = self._at(now + self.config.broadcast_timeout, self._leave_timeout)
        else:
            self._leave_finished()

    def _leave_finished(self, timed_out: bool = False) -> None:
        """memberlist Leave returns: the leave broadcast retired (or was replaced), or we timed out."""
        if not self._leave_pending:
            return
        self._leave_pending = False
        if self._leave_timer is not None:
            self._leave_timer.cancel()
            self._leave_timer = None
        if timed_out:
            self._diag("warning", "timeout waiting for leave broadcast", "leave-timeout")
        self._events.append(LeaveDone(timed_out))

    def _leave_timeout(self, now: float) -> None:
        self._leave_timer = None
        self._leave_finished(timed_out=True)

    def update_meta(self, now: float) -> None:
        """Re-read delegate.node_meta, bump the incarnation and gossip the new alive (UpdateNode)."""
        if self._shutdown:
            return
        me = self.local
        self._incarnation = self._next_incarnation()
        alive = Alive(self._incarnation, self.name, self._packed_addr, self.addr[1], self._read_meta(), self.config.vsn)
        self._alive_node(now, alive, me.addr, bootstrap=True)

    def shutdown(self) -> None:
        """Stop everything: no timers, no transmits, inputs ignored (memberlist Shutdown, no leave)."""
        self._shutdown = True
        self._timers.clear()
        self._gossip_ticking = False
        self._transmits.clear()
        self._streams.clear()
        self._inbound.clear()
        self._acks.clear()

    def send_best_effort(self, addr: Addr, payload: bytes, node_name: str = "") -> None:
        """A user message over UDP to one member (memberlist SendBestEffort / SendToAddress)."""
        if not self._shutdown:
            self._raw_send(addr, [encode(User(payload))], self._nodes.get(node_name))

    def send_reliable(self, addr: Addr, payload: bytes) -> None:
        """A user message over TCP (memberlist SendReliable); no reply is read."""
        if not self._shutdown:
            self._open_stream(addr, self._wrap_stream(encode(UserStream(payload))), None, self.config.tcp_timeout)

    # ----------------------------------------------------------------------------------------------------
    # our own alive

    def _read_meta(self) -> bytes:
        meta = self._delegate.node_meta(META_MAX_SIZE)
        if len(meta) > META_MAX_SIZE:
            raise ValueError(f"node meta of {len(meta)} bytes is longer than the limit of {META_MAX_SIZE}")
        return meta

    def _set_alive(self, now: float) -> None:
        """memberlist setAlive: our own alive, applied locally as if received (bootstrap)."""
        self._incarnation += 1
        alive = Alive(self._incarnation, self.name, self._packed_addr, self.addr[1], self._read_meta(), self.config.vsn)
        self._alive_node(now, alive, self.addr, bootstrap=True)

    def _next_incarnation(self) -> int:
        """Our incarnation plus one; past the top of the uint32 range we take a new base, 1 (memberlist wraps
        the same way, to 0). Peers then see us as stale until they forget us (docs/wire.md, "Incarnations")."""
        if self._incarnation < MAX_INCARNATION:
            return self._incarnation + 1
        self.stats["incarnation_wrapped"] += 1
        self._diag("warning", f"incarnation {MAX_INCARNATION} reached: starting again at 1", "incarnation-wrapped")
        return 1

    def _refute(self, now: float, accused_inc: int) -> None:
        """Beat `accused_inc` with a new incarnation and broadcast our alive (memberlist refute).

        An accusation at the top of the uint32 range cannot be beaten: memberlist's arithmetic wraps there and
        encodes a lower number; we do not jump at all, just step by one (so we stay ahead of what honest peers
        know) and say so. Peers that check plausibility never accepted such an accusation in the first place.
        """
        inc = self._next_incarnation()
        if accused_inc >= inc:
            if accused_inc < MAX_INCARNATION:
                inc = accused_inc + 1
            else:
                self.stats["unbeatable_accusation"] += 1
                self._diag(
                    "warning",
                    f"cannot beat an accusation at incarnation {accused_inc} (the uint32 maximum); refuting at {inc}",
                    "incarnation-unbeatable",
                )
        self._incarnation = inc
        me = attrs.evolve(self.local, incarnation=inc)
        self._nodes[self.name] = me
        self._awareness.apply_delta(1)
        self.stats["refutes"] += 1
        alive = Alive(inc, me.name, self._packed_addr, me.addr[1], me.meta, me.vsn)
        self._broadcast(me.name, encode(alive))

    # ----------------------------------------------------------------------------------------------------
    # the state rules, carried out

    def _alive_node(self, now: float, a: Alive, addr: Addr, *, bootstrap: bool = False) -> None:
        """memberlist aliveNode."""
        self.stats["msg_alive"] += 1  # memberlist.msg.alive: every alive message processed
        current = self._nodes.get(a.node)
        if (
            current is not None
            and a.incarnation <= current.incarnation
            and current.addr == addr
            and a.node != self.name
            and not self._custom["notify_alive"]
        ):
            return  # the common case, an old alive gossiped back to us: judge_alive's "stale" without a verdict
        if self._custom["notify_alive"] and valid_versions(a.vsn) and not (self._left and a.node == self.name):
            err = self._delegate.notify_alive(NodeState(a.node, addr, a.meta, a.incarnation, vsn=a.vsn))
            if err:
                self._diag("warning", f"ignoring alive message for '{a.node}': {err}", "alive-rejected")
                return
        verdict = judge_alive(
            current,
            node=a.node,
            incarnation=a.incarnation,
            addr=addr,
            meta=a.meta,
            vsn=a.vsn,
            local_name=self.name,
            has_left=self._left,
            bootstrap=bootstrap,
            now=now,
            reclaim_time=self.config.dead_node_reclaim_time,
        )
        action = verdict.action
        if action is Action.CONFLICT:
            assert current is not None
            self._conflict(now, current, a, addr, verdict.reason)
            return
        if verdict.is_new:
            vsn = _shared(a.vsn) if len(a.vsn) >= 6 else b""
            current = NodeState(sys.intern(a.node), _shared(addr), _shared(a.meta), 0, NodeStateType.DEAD, now, vsn)
            self._add_node(current)
        if action is Action.IGNORE:
            if verdict.reason.startswith("bad protocol"):
                self._diag("warning", f"ignoring alive for '{a.node}': {verdict.reason}", "bad-version")
            return
        assert current is not None
        self._clear_suspicion(a.node)
        if action is Action.REFUTE:
            self._refute(now, a.incarnation)
            self._diag(
                "warning",
                f"refuting an alive message for '{a.node}' ({addr[0]}:{addr[1]}) "
                f"meta:({a.meta!r} VS {current.meta!r}), vsn:({list(a.vsn)} VS {list(current.vsn)})",
                "refute",
            )
            return
        # APPLY
        self._broadcast(a.node, _shared(encode(a)))  # every member queues the same alive: one copy
        new = attrs.evolve(
            current,
            incarnation=a.incarnation,
            meta=_shared(a.meta),
            addr=current.addr if current.addr == addr else _shared(addr),
            vsn=_shared(a.vsn) if len(a.vsn) >= 6 else current.vsn,
            state=NodeStateType.ALIVE,
            state_change=now if current.state != NodeStateType.ALIVE else current.state_change,
        )
        self._nodes[a.node] = new
        if verdict.updates_addr:
            self._diag(
                "info",
                f"updating address for left or failed node {a.node} from {current.addr[0]}:{current.addr[1]} "
                f"to {addr[0]}:{addr[1]}",
                "addr-update",
            )
        self._notify(now, notify_after_alive(current.state, current.meta, new.meta), new)

    def _conflict(self, now: float, current: NodeState, a: Alive, addr: Addr, reason: str) -> None:
        """A live name claimed from another address: first address wins; tell the delegate.

        If the name is ours we also refute (so our incarnation stays ahead of the impostor's), but at
        most once per suspicion-timeout window per impostor address: two processes sharing a name would
        otherwise outbid each other forever.
        """
        self.stats["conflicts"] += 1
        other = NodeState(a.node, addr, a.meta, a.incarnation, NodeStateType.ALIVE, now, a.vsn)
        self._diag("error", reason, "conflict")
        self._delegate.notify_conflict(current, other)
        if a.node != self.name or self._left or a.incarnation < self._incarnation:
            return
        holdoff = self.config.suspicion_mult * self.config.probe_interval
        last = self._conflict_refuted.get(addr)
        if last is not None and now - last < holdoff:
            return
        self._conflict_refuted[addr] = now
        self._refute(now, a.incarnation)
        self._diag("warning", f"refuting alive for our name from {addr[0]}:{addr[1]}", "refute")

    def _add_node(self, state: NodeState) -> None:
        """Insert at a random position so the failure detection bound stays low (memberlist aliveNode)."""
        self._nodes[state.name] = state
        order = self._order
        n = len(order)
        offset = random_offset(self._rng, n)
        order.append(state.name)
        order[offset], order[n] = order[n], order[offset]

    def _clear_suspicion(self, name: str) -> None:
        st = self._suspicions.pop(name, None)
        if st is not None:
            st.timer.cancel()

    def _suspect_node(self, now: float, s: Suspect) -> None:
        """memberlist suspectNode."""
        self.stats["msg_suspect"] += 1  # memberlist.msg.suspect: every suspect message processed
        current = self._nodes.get(s.node)
        running = self._suspicions.get(s.node)
        verdict = judge_suspect(
            current, incarnation=s.incarnation, local_name=self.name, suspicion_running=running is not None
        )
        action = verdict.action
        if action is Action.IGNORE:
            return
        assert current is not None
        if action is Action.CONFIRM:
            assert running is not None
            if running.suspicion.confirm(now, s.from_):
                self._broadcast(s.node, encode(s))
                susp = running.suspicion
                self._diag(
                    "info",
                    f"suspicion of {s.node} confirmed by {s.from_} "
                    f"({susp.confirmations} of {susp.k} confirmations, first suspected by {susp.from_node})",
                    "suspect-confirm",
                )
                running.timer.cancel()
                running.timer = self._at(max(susp.deadline, now), self._suspicion_timeout_fn(s.node))
            return
        if action is Action.REFUTE:
            self._refute(now, s.incarnation)
            self._diag("warning", f"refuting a suspect message (from: {s.from_})", "refute")
            return
        # SUSPECT
        self._broadcast(s.node, encode(s))
        self._nodes[s.node] = attrs.evolve(
            current, incarnation=s.incarnation, state=NodeStateType.SUSPECT, state_change=now
        )
        cfg = self.config
        k = cfg.suspicion_mult - 2
        n = self.estimated_nodes()
        if n - 2 < k:
            k = 0
        min_t = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        max_t = cfg.suspicion_max_timeout_mult * min_t
        susp = Suspicion(now, s.from_, k, min_t, max_t)
        timer = self._at(susp.deadline, self._suspicion_timeout_fn(s.node))
        self._suspicions[s.node] = _SuspicionTimer(susp, timer, now)
        self.stats["suspicions"] += 1
        self._diag(
            "info",
            f"{s.from_} suspects {s.node} (incarnation {s.incarnation}); wants {k} confirmations, "
            f"timeout {min_t:g}-{max_t:g}s",
            "suspect",
        )

    def _suspicion_timeout_fn(self, name: str) -> Callable[[float], None]:
        def fire(now: float) -> None:
            st = self._suspicions.get(name)
            state = self._nodes.get(name)
            if st is None or state is None:
                return
            if state.state != NodeStateType.SUSPECT or state.state_change != st.change_time:
                return
            susp = st.suspicion
            confirmers = ", ".join(susp.confirmers) or "none"
            self._diag(
                "info",
                f"marking {name} as failed, suspect timeout reached ({susp.confirmations} peer confirmations: "
                f"{confirmers}; first suspected by {susp.from_node})",
                "failed",
            )
            self._dead_node(now, Dead(state.incarnation, name, self.name))

        return fire

    def _dead_node(self, now: float, d: Dead) -> None:
        """memberlist deadNode; a dead with From == Node marks the node LEFT."""
        self.stats["msg_dead"] += 1  # memberlist.msg.dead: every dead message processed
        current = self._nodes.get(d.node)
        verdict = judge_dead(
            current, incarnation=d.incarnation, from_=d.from_, local_name=self.name, has_left=self._left
        )
        if verdict.clear_suspicion:
            self._clear_suspicion(d.node)
        action = verdict.action
        if action is Action.IGNORE:
            return
        assert current is not None
        if action is Action.REFUTE:
            self._refute(now, d.incarnation)
            self._diag("warning", f"refuting a dead message (from: {d.from_})", "refute")
            return
        # KILL
        if d.node == self.name:
            self._broadcast(d.node, encode(d), self._leave_finished)
        else:
            self._broadcast(d.node, encode(d))
        assert verdict.new_state is not None
        new = attrs.evolve(current, incarnation=d.incarnation, state=verdict.new_state, state_change=now)
        self._nodes[d.node] = new
        self._notify(now, "leave", new)

    # ----------------------------------------------------------------------------------------------------
    # probing

    def _probe_tick(self, now: float) -> None:
        self._probe_tick_at = self._next_tick(self._probe_tick_at, self.config.probe_interval, now)
        self._at(self._probe_tick_at, self._probe_tick)
        if self._probe is not None:
            self._probe_tick_pending = True  # Go's ticker keeps one tick buffered while probeNode runs
            return
        self._probe_round(now)

    def _probe_round(self, now: float) -> None:
        """memberlist probe(): the next live member in the shuffled order, reshuffling at the end."""
        num_check = 0
        while True:
            if num_check >= len(self._order):
                return
            if self._probe_index >= len(self._order):
                self._reset_nodes(now)
                self._probe_index = 0
                num_check += 1
                continue
            state = self._nodes[self._order[self._probe_index]]
            self._probe_index += 1
            if state.name == self.name or state.dead_or_left:
                num_check += 1
                continue
            self._probe_node(now, state)
            return

    def _reset_nodes(self, now: float) -> None:
        """Forget members dead or left for longer than gossip_to_the_dead_time, then shuffle (resetNodes with
        moveDeadNodes' DeadOrLeft). A forgotten member's next alive, at any incarnation, makes it new again."""
        keep: list[str] = []
        for name in self._order:
            st = self._nodes[name]
            if st.dead_or_left and now - st.state_change > self.config.gossip_to_the_dead_time and name != self.name:
                del self._nodes[name]
                self._clear_suspicion(name)
                continue
            keep.append(name)
        # moveDeadNodes preserves nothing about order that matters once we shuffle.
        self._rng.shuffle(keep)
        self._order = keep

    def _probe_node(self, now: float, node: NodeState) -> None:
        """memberlist probeNode, as a small state machine over timers and ack handlers."""
        cfg = self.config
        interval = self._awareness.scale_timeout(cfg.probe_interval)
        seq = self._next_seq()
        probe = _Probe(node, seq, now, now + interval)
        self._probe = probe
        deadline_timer = self._at(probe.deadline, lambda t: self._probe_deadline(probe, t))
        self._acks[seq] = _AckHandler(
            on_ack=lambda t, payload: self._probe_acked(probe, t, payload),
            on_nack=lambda: self._probe_nacked(probe),
            timer=deadline_timer,
        )
        ping = encode(Ping(seq, node.name, self._packed_addr, self.addr[1], self.name))
        if node.state == NodeStateType.ALIVE:
            self._send_msg(node.addr, ping, node)
        else:
            # Let a suspect refute as early as possible: tack the suspicion onto the ping.
            suspect = encode(Suspect(node.incarnation, node.name, self.name))
            self._raw_send(node.addr, [ping, suspect], node)
        probe.indirect_timer = self._at(now + cfg.probe_timeout, lambda t: self._probe_indirect(probe, t))

    def _probe_acked(self, probe: _Probe, now: float, payload: bytes) -> None:
        if probe.done:
            return
        if not probe.indirect:
            self._delegate.notify_ping_complete(probe.target, now - probe.sent, payload)
        self._finish_probe(probe, now, -1)

    def _probe_nacked(self, probe: _Probe) -> None:
        if not probe.done and probe.nacks < self.config.indirect_checks + 1:
            probe.nacks += 1

    def _probe_indirect(self, probe: _Probe, now: float) -> None:
        """No direct ack within probe_timeout: ask peers, and try TCP, until the probe interval ends."""
        if probe.done:
            return
        probe.indirect = True
        target = probe.target
        self._diag("debug", f"failed ping: {target.name} (timeout reached)", "ping-timeout")
        peers = self._k_random(
            self.config.indirect_checks,
            lambda n: n.name == self.name or n.name == target.name or n.state != NodeStateType.ALIVE,
        )
        for peer in peers:
            want_nack = peer.pmax >= 4
            if want_nack:
                probe.expected_nacks += 1
            ind = IndirectPing(
                probe.seq,
                self._packed(target.addr[0]),
                target.addr[1],
                target.name,
                want_nack,
                self._packed_addr,
                self.addr[1],
                self.name,
            )
            self._send_msg(peer.addr, encode(ind), peer)
        # A stalled process runs this timer late, even past the probe's end (then the deadline timer follows at
        # once): memberlist's dial with a deadline already gone fails at once, so no TCP fallback then.
        if not self.config.disable_tcp_pings and target.pmax >= 3 and probe.deadline > now:
            ping = Ping(probe.seq, target.name, self._packed_addr, self.addr[1], self.name)
            pending = _PendingStream("ping", target.addr, probe=probe, seq=probe.seq)
            self._open_stream(target.addr, self._wrap_stream(encode(ping)), pending, probe.deadline - now)

    def _probe_deadline(self, probe: _Probe, now: float) -> None:
        """The probe interval ended without an ack: TCP fallback success, or suspicion."""
        self._acks.pop(probe.seq, None)
        if probe.done:
            return
        target = probe.target
        if probe.fallback_ok:
            self.stats["udp_blocked"] += 1
            self._diag(
                "warning",
                f"was able to connect to {target.name} over TCP but UDP probes failed; the network may be "
                f"blocking UDP to {target.addr[0]}:{target.addr[1]} (udp port {target.addr[1]})",
                "udp-blocked",
            )
            self._finish_probe(probe, now, -1)
            return
        # With nack-capable peers, missed nacks measure our own health; without, any failure counts.
        delta = max(probe.expected_nacks - probe.nacks, 0) if probe.expected_nacks > 0 else 1
        self._finish_probe(probe, now, delta)
        self._diag("info", f"suspect {target.name} has failed, no acks received", "probe-failed")
        self._suspect_node(now, Suspect(target.incarnation, target.name, self.name))

    def _finish_probe(self, probe: _Probe, now: float, awareness_delta: int) -> None:
        probe.done = True
        self.probe_durations.append(now - probe.sent)
        self._awareness.apply_delta(awareness_delta)
        handler = self._acks.pop(probe.seq, None)
        if handler is not None:
            handler.timer.cancel()
        if probe.indirect_timer is not None:
            probe.indirect_timer.cancel()  # acked in time: no wake-up at probe_timeout just to find it done
        if self._probe is probe:
            self._probe = None
        if self._probe_tick_pending and not self._shutdown:
            self._probe_tick_pending = False
            self._probe_round(now)

    # ----------------------------------------------------------------------------------------------------
    # gossip and push/pull tickers

    def _gossip_tick(self, now: float) -> None:
        """memberlist gossip(): broadcasts to a few random live, suspect or recently dead members."""
        self._gossip_tick_at = self._next_tick(self._gossip_tick_at, self.config.gossip_interval, now)
        self.gossip_now(now)

    def gossip_now(self, now: float) -> None:
        """One gossip round outside the ticker: a leaving node sends its news at once rather than at the next
        tick (memberlist waits for the tick; the bytes on the wire are the same)."""
        cfg = self.config
        if not self._has_gossip():
            return

        def exclude(n: NodeState) -> bool:
            if n.name == self.name:
                return True
            if n.state in (NodeStateType.ALIVE, NodeStateType.SUSPECT):
                return False
            if n.state == NodeStateType.DEAD:
                return now - n.state_change > cfg.gossip_to_the_dead_time
            return True

        avail = cfg.udp_buffer_size - COMPOUND_HEADER_OVERHEAD - self._encrypt_overhead()
        for node in self._k_random(cfg.gossip_nodes, exclude):
            msgs = self._get_broadcasts(COMPOUND_OVERHEAD, avail)
            if not msgs:
                return
            self._raw_send(node.addr, msgs, node)

    def _has_gossip(self) -> bool:
        """Anything queued for a gossip round: our broadcasts or the delegate's."""
        return bool(len(self._broadcasts)) or self._delegate.has_broadcasts()

    def _push_pull_tick(self, now: float) -> None:
        cfg = self.config
        self._at(now + push_pull_scale(cfg.push_pull_interval, self.estimated_nodes()), self._push_pull_tick)
        peers = self._k_random(1, lambda n: n.name == self.name or n.state != NodeStateType.ALIVE)
        if peers:
            self._start_push_pull(now, peers[0].addr, join=False)

    def _schedule_join_followups(self, now: float) -> None:
        """After a join, a few extra push/pulls with random members (config.join_followup_syncs).

        The seed's state only holds who had joined it so far; members that joined at the same moment are
        announced by broadcasts that may retire before they reach us. Syncing again, once per broadcast
        lifetime, closes that gap in seconds instead of one periodic push/pull interval.
        """
        cfg = self.config
        if self._followups_pending or cfg.push_pull_interval <= 0:  # push/pull disabled: no follow-ups either
            return
        self._followups_pending = cfg.join_followup_syncs
        spacing = cfg.gossip_interval * retransmit_limit(cfg.retransmit_mult, self.estimated_nodes())
        for i in range(1, cfg.join_followup_syncs + 1):
            self._at(now + i * spacing, self._join_followup)

    def _join_followup(self, now: float) -> None:
        self._followups_pending -= 1
        peers = self._k_random(1, lambda n: n.name == self.name or n.state != NodeStateType.ALIVE)
        if peers:
            self._start_push_pull(now, peers[0].addr, join=False)

    def _local_push_pull(self, join: bool) -> bytes:
        states = tuple(
            PushNodeState(s.name, self._packed(s.addr[0]), s.addr[1], s.meta, s.incarnation, int(s.state), s.vsn)
            for s in self.all_members()
        )
        return encode(PushPull(join, states, self._delegate.local_state(join)))

    def _start_push_pull(self, now: float, addr: Addr, *, join: bool) -> None:
        data = self._wrap_stream(self._local_push_pull(join))
        self._open_stream(addr, data, _PendingStream("push_pull", addr, join=join), self.config.tcp_timeout)

    def _merge_remote_state(self, now: float, pp: PushPull) -> str | None:
        """memberlist mergeRemoteState: verify versions, replay each state, hand user state over."""
        remote = [(n.name, _state_type(n.state), n.vsn) for n in pp.nodes]
        err = verify_protocol(remote, [s for s in self._nodes.values()])
        if err is not None:
            return err
        if pp.join and self._custom["notify_merge"]:
            peers = [
                NodeState(n.name, (self._ip(n.addr), n.port), n.meta, n.incarnation, _state_type(n.state), now, n.vsn)
                for n in pp.nodes
            ]
            err = self._delegate.notify_merge(peers)
            if err:
                return err
        for r in pp.nodes:
            self._merge_one(now, r)
        if pp.user_state:
            self._delegate.merge_remote_state(now, pp.user_state, pp.join)
        return None

    def _merge_one(self, now: float, r: PushNodeState) -> None:
        if r.state not in (0, 1, 2, 3):
            return
        if self._implausible(r.name, r.incarnation, "push/pull state", None):
            return
        how = MERGE_AS[NodeStateType(r.state)]
        if how is MergeAs.ALIVE:
            try:
                addr = (self._ip(r.addr), r.port or self.addr[1])
            except DecodeError as exc:
                self._malformed("push/pull node state", None, exc)
                return
            self._alive_node(now, Alive(r.incarnation, r.name, r.addr, addr[1], r.meta, r.vsn), addr)
        elif how is MergeAs.LEFT:
            self._dead_node(now, Dead(r.incarnation, r.name, r.name))
        else:
            self._suspect_node(now, Suspect(r.incarnation, r.name, self.name))

    # ----------------------------------------------------------------------------------------------------
    # UDP input

    def handle_datagram(self, now: float, addr: Addr, data: bytes) -> None:
        """One UDP packet: label/CRC/compression/compound framing undone, each message handled."""
        if self._shutdown:
            return
        self.stats["udp_received"] += 1
        if len(data) > MAX_DATAGRAM:
            self.stats["oversized"] += 1
            self._diag("debug", f"dropped oversized packet ({len(data)} bytes) from {addr[0]}:{addr[1]}", "oversized")
            return
        cfg = self.config
        try:
            parts = packets.unwrap_packet(
                data, cfg.label, keyring=self.keyring, verify_incoming=cfg.gossip_verify_incoming
            )
        except DecryptError as exc:
            self._decrypt_failed(now, "packet", addr, exc)
            return
        except Exception as exc:  # DecodeError and anything a corrupt LZW stream throws
            self._malformed("packet", addr, exc)
            return
        for part in parts:
            try:
                msg = _decode(part)
            except Exception as exc:
                self._malformed("message", addr, exc)
                continue
            self._guarded(self._dispatch, now, addr, msg)

    def _dispatch(self, now: float, addr: Addr, msg: Any) -> None:
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            self.stats["unexpected"] += 1
            self._diag("debug", f"unexpected {type(msg).__name__} over UDP from {addr[0]}:{addr[1]}", "unexpected")
            return
        try:
            handler(self, now, addr, msg)
        except DecodeError as exc:  # e.g. a 5-byte address inside an otherwise valid message
            self._malformed(type(msg).__name__, addr, exc)

    def _handle_ping(self, now: float, addr: Addr, p: Ping) -> None:
        if p.node and p.node != self.name:
            self.stats["ping_wrong_node"] += 1
            self._diag("warning", f"got ping for unexpected node '{p.node}' from {addr[0]}:{addr[1]}", "wrong-node")
            return
        ack = encode(Ack(p.seq_no, self._delegate.ack_payload()))
        self._send_msg(self._reply_addr(p.source_addr, p.source_port, addr), ack, self._nodes.get(p.source_node))

    def _reply_addr(self, source_addr: bytes, source_port: int, from_addr: Addr) -> Addr:
        if source_addr and source_port > 0:
            return (self._ip(source_addr), source_port)
        return from_addr

    def _handle_indirect_ping(self, now: float, addr: Addr, ind: IndirectPing) -> None:
        """Probe the target for the requester; relay its ack, or send a nack after probe_timeout."""
        target = (self._ip(ind.target), ind.port or self.addr[1])
        reply_to = self._reply_addr(ind.source_addr, ind.source_port, addr)
        requester = self._nodes.get(ind.source_node)
        local_seq = self._next_seq()
        timeout = self.config.probe_timeout
        nack_timer: _Timer | None = None

        def relay(t: float, payload: bytes) -> None:
            if nack_timer is not None:
                nack_timer.cancel()
            self._send_msg(reply_to, encode(Ack(ind.seq_no, b"")), requester)

        def reap(t: float) -> None:
            self._acks.pop(local_seq, None)

        self._acks[local_seq] = _AckHandler(relay, None, self._at(now + timeout, reap))
        ping = Ping(local_seq, ind.node, self._packed_addr, self.addr[1], self.name)
        self._send_msg(target, encode(ping), self._nodes.get(ind.node))
        if ind.nack:

            def nack(t: float) -> None:
                self._send_msg(reply_to, encode(Nack(ind.seq_no)), requester)

            nack_timer = self._at(now + timeout, nack)

    def _handle_ack(self, now: float, addr: Addr, ack: Ack) -> None:
        handler = self._acks.pop(ack.seq_no, None)
        if handler is None:
            return
        handler.timer.cancel()
        handler.on_ack(now, ack.payload)

    def _handle_nack(self, now: float, addr: Addr, nack: Nack) -> None:
        handler = self._acks.get(nack.seq_no)
        if handler is not None and handler.on_nack is not None:
            handler.on_nack()

    def _implausible(self, name: str, incarnation: int, what: str, addr: Addr | None) -> bool:
        """A claim about another member far ahead of its known incarnation: no honest member could make it
        (docs/wire.md, "Incarnations"), so drop and count it instead of believing it. Claims about us are
        always judged: we refute them (bounded, see _refute), which also covers our own restart."""
        if name == self.name or not implausible_incarnation(self._nodes.get(name), incarnation):
            return False
        known = self._nodes[name].incarnation
        self.stats["implausible_incarnation"] += 1
        src = f" from {addr[0]}:{addr[1]}" if addr else ""
        self._diag(
            "warning",
            f"dropped {what} about {name!r}{src}: incarnation {incarnation} is more than "
            f"{INCARNATION_JUMP_LIMIT} ahead of the {known} it published",
            "implausible-incarnation",
        )
        return True

    def _handle_alive(self, now: float, addr: Addr, a: Alive) -> None:
        if self._implausible(a.node, a.incarnation, "alive", addr):
            return
        port = a.port or self.addr[1]
        self._alive_node(now, a if port == a.port else attrs.evolve(a, port=port), (self._ip(a.addr), port))

    def _handle_suspect(self, now: float, addr: Addr, s: Suspect) -> None:
        if not self._implausible(s.node, s.incarnation, "suspect", addr):
            self._suspect_node(now, s)

    def _handle_dead(self, now: float, addr: Addr, d: Dead) -> None:
        if not self._implausible(d.node, d.incarnation, "dead", addr):
            self._dead_node(now, d)

    def _handle_user(self, now: float, addr: Addr, u: User) -> None:
        self._delegate.notify_msg(now, u.payload)

    _HANDLERS: dict[type, Callable[[Node, float, Addr, Any], None]] = {
        Ping: _handle_ping,
        IndirectPing: _handle_indirect_ping,
        Ack: _handle_ack,
        Nack: _handle_nack,
        Alive: _handle_alive,
        Suspect: _handle_suspect,
        Dead: _handle_dead,
        User: _handle_user,
    }

    # ----------------------------------------------------------------------------------------------------
    # TCP input

    def accept_stream(self, now: float, addr: Addr) -> int:
        """A TCP connection from `addr` was accepted: its id for handle_stream_data and close_stream."""
        self._inbound_seq += 1
        self._inbound[self._inbound_seq] = _Inbound(addr, now, self._stream_reader())
        return self._inbound_seq

    def handle_stream_data(self, now: float, stream_id: int, data: bytes) -> bytes | None:
        """The next bytes of an accepted stream (only the new ones: the reader keeps what came before).

        None = read more; bytes = write them, then close (b"" = just close). Each byte is parsed once. A stream
        past config.stream_max_bytes or older than config.tcp_timeout is answered with an error and dropped.
        """
        if self._shutdown:
            return b""
        inbound = self._inbound.get(stream_id)
        if inbound is None:
            return b""
        addr = inbound.addr
        if now - inbound.opened > self.config.tcp_timeout:
            del self._inbound[stream_id]
            self.stats["stream_timeout"] += 1
            reason = f"stream not complete within tcp_timeout={self.config.tcp_timeout:g}s"
            self._diag("debug", f"dropped stream from {addr[0]}:{addr[1]}: {reason}", "stream-timeout")
            return self._wrap_stream(encode(ErrResp(reason)))
        try:
            msg = inbound.reader.feed(data)
        except packets.StreamTooLarge as exc:
            del self._inbound[stream_id]
            self.stats["oversized"] += 1
            self._diag("debug", f"dropped stream from {addr[0]}:{addr[1]}: {exc}", "oversized")
            return self._wrap_stream(encode(ErrResp(str(exc))))
        except DecryptError as exc:
            del self._inbound[stream_id]
            self._decrypt_failed(now, "stream", addr, exc)
            return self._wrap_stream(encode(ErrResp(str(exc))))
        except Exception as exc:  # DecodeError and anything a corrupt LZW stream throws
            del self._inbound[stream_id]
            self._malformed("stream", addr, exc)
            return self._wrap_stream(encode(ErrResp(str(exc))))
        if msg is None:
            return None
        del self._inbound[stream_id]
        self.stats["tcp_accepted"] += 1
        reply = self._guarded(self._serve_stream, now, addr, msg)
        return reply if reply is not None else b""

    def close_stream(self, stream_id: int) -> None:
        """The accepted connection is gone (closed, timed out): forget its partial message."""
        self._inbound.pop(stream_id, None)

    def handle_stream(self, now: float, addr: Addr, data: bytes) -> bytes | None:
        """A whole inbound stream in one buffer (accept, feed, close): None if it ends before the message."""
        stream_id = self.accept_stream(now, addr)
        try:
            return self.handle_stream_data(now, stream_id, data)
        finally:
            self.close_stream(stream_id)

    def _stream_reader(self) -> packets.StreamReader:
        """A reader for one stream, inbound or a reply, with this node's label, bound, keyring and verify rule."""
        cfg = self.config
        return packets.StreamReader(
            cfg.label, max_bytes=cfg.stream_max_bytes, keyring=self.keyring, verify_incoming=cfg.gossip_verify_incoming
        )

    def _serve_stream(self, now: float, addr: Addr, msg: Any) -> bytes:
        if isinstance(msg, PushPull):
            reply = self._wrap_stream(self._local_push_pull(msg.join))
            err = self._merge_remote_state(now, msg)
            if err is not None:
                self._diag("error", f"failed push/pull merge from {addr[0]}:{addr[1]}: {err}", "push-pull")
            return reply
        if isinstance(msg, Ping):
            if msg.node and msg.node != self.name:
                self.stats["ping_wrong_node"] += 1
                self._diag("warning", f"got TCP ping for unexpected node {msg.node}", "wrong-node")
                return b""
            return self._wrap_stream(encode(Ack(msg.seq_no, b"")))
        if isinstance(msg, UserStream):
            self._delegate.notify_msg(now, msg.payload)
            return b""
        self.stats["unexpected"] += 1
        self._diag("error", f"received invalid stream message {type(msg).__name__} from {addr[0]}:{addr[1]}")
        return b""

    def handle_stream_reply(self, now: float, stream_id: int, data: bytes) -> bool:
        """The next reply bytes on a stream we opened (only the new ones); True once a whole reply was handled
        (or refused). The reply is bounded like an inbound stream (config.stream_max_bytes)."""
        pending = self._streams.get(stream_id)
        if pending is None or self._shutdown:
            return True
        if pending.reader is None:
            pending.reader = self._stream_reader()
        try:
            msg = pending.reader.feed(data)
        except DecryptError as exc:
            del self._streams[stream_id]
            self._decrypt_failed(now, "stream reply", pending.addr, exc)
            self._stream_failed(now, pending, f"cannot decrypt the reply: {exc}")
            return True
        except Exception as exc:
            del self._streams[stream_id]
            self._malformed("stream reply", pending.addr, exc)
            self._stream_failed(now, pending, f"malformed reply: {exc}")
            return True
        if msg is None:
            return False
        del self._streams[stream_id]
        self._guarded(self._stream_replied, now, pending, msg)
        return True

    def _stream_replied(self, now: float, pending: _PendingStream, msg: Any) -> None:
        if pending.kind == "ping":
            probe = pending.probe
            assert probe is not None
            if isinstance(msg, Ack) and msg.seq_no == pending.seq:
                probe.fallback_ok = True
            else:
                self._diag("error", f"failed fallback ping: unexpected {type(msg).__name__}", "fallback")
            return
        if isinstance(msg, ErrResp):
            self._stream_failed(now, pending, f"remote error: {msg.error}")
            return
        if not isinstance(msg, PushPull):
            self._stream_failed(now, pending, f"unexpected {type(msg).__name__} in reply to push/pull")
            return
        err = self._merge_remote_state(now, msg)
        if err is not None:
            self._stream_failed(now, pending, err)
        elif pending.join:
            self._events.append(JoinResult(pending.addr, True))
            self._schedule_join_followups(now)

    def handle_stream_error(self, now: float, stream_id: int, reason: str) -> None:
        """A stream we opened failed (dial, read, timeout)."""
        pending = self._streams.pop(stream_id, None)
        if pending is not None and not self._shutdown:
            self._stream_failed(now, pending, reason)

    def _stream_failed(self, now: float, pending: _PendingStream, reason: str) -> None:
        addr = f"{pending.addr[0]}:{pending.addr[1]}"
        if pending.kind == "ping":
            return  # a dead node is expected to refuse the fallback ping: not worth a log line
        if pending.join:
            self._diag("debug", f"failed to join {addr}: {reason}", "join")
            self._events.append(JoinResult(pending.addr, False, reason))
        else:
            self._diag("error", f"push/pull with {addr} failed: {reason}", "push-pull")


def _state_type(value: int) -> NodeStateType:
    try:
        return NodeStateType(value)
    except ValueError:
        return NodeStateType.DEAD
