"""The state every part of a protocol.Node shares, and the services they all use.

memberlist keeps one `Memberlist` struct and spreads its methods over state.go, net.go and memberlist.go; the
fields (the member table, the sequence numbers, the broadcast queue, awareness) are shared by every file. Here that
struct is `Core`, a plain record with the services every collaborator needs: timers, diagnostics and events, and
the sending half of net.go (piggybacked packets, streams opened, the keyring's sealing rule). The collaborators
(membership.py, probing.py, gossip.py, net.py) each hold the one Core and their own state; they import this module,
never each other upward, so the layers have no circle. Nothing here decides anything about members: the rules live
in protocol/state.py and are carried out by protocol/membership.py.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import attrs

from protocol import packets
from protocol.awareness import Awareness
from protocol.broadcast import BroadcastQueue
from protocol.codec import DecodeError, MessageType, encode
from protocol.config import Config
from protocol.delegate import Delegate
from protocol.framing import label_overhead
from protocol.interning import bounded_put
from protocol.keyring import Keyring, encrypt_overhead
from protocol.outputs import Datagram, Diagnostic, NodeEvent, NodeJoin, NodeLeave, NodeUpdate, StreamOpen, Transmit
from protocol.state import Addr, NodeState, Notify
from protocol.suspicion import random_offset

__all__ = ["Core", "PendingStream", "Timer", "packed_address", "shared"]

_USER_TYPE = bytes([MessageType.USER])
COMPOUND_HEADER_OVERHEAD = 2  # memberlist compoundHeaderOverhead
COMPOUND_OVERHEAD = 2  # per part
USER_MSG_OVERHEAD = 1
MAX_DATAGRAM = 65507  # the largest UDP payload; anything larger is counted as oversized
DECRYPT_LOG_INTERVAL = 10.0  # at most one "cannot decrypt" line per source address this often


@attrs.define(eq=False)
class Timer:
    when: float
    fn: Callable[[float], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@attrs.define(eq=False)
class PendingStream:
    """A stream we opened and await the reply of (a push/pull, a probe's TCP fallback): net.py reads the reply,
    its opener says what the reply or the failure means."""

    addr: Addr
    on_reply: Callable[[float, Any], None]
    on_failed: Callable[[float, str], None]
    reader: packets.StreamReader | None = None  # the reply, as it arrives


def _addr_text(packed: bytes) -> str:
    if len(packed) not in (4, 16):
        raise DecodeError(f"address of {len(packed)} bytes is neither IPv4 nor IPv6")
    return str(ipaddress.ip_address(packed))


# Member records are per pair of members (every member holds one about every other): N^2 of them. The values they
# hold are mostly equal across records (the same address text, meta and versions, learned by every member), so
# they are shared rather than decoded into a copy per record (issue 14: 5,000 members in one process). Shared by
# every Node in the process (all immutable values), bounded (interning.py) so hostile input cannot grow them.
_ADDR_TEXT: dict[bytes, str] = {}
_ADDR_PACKED: dict[str, bytes] = {}
_SHARED_VALUES: dict[Any, Any] = {}
#: the packed form of an address text already met, else None (Core.packed, without the call: once per alive received)
packed_address = _ADDR_PACKED.get


def shared(value: Any) -> Any:
    """One copy of equal immutable values (meta, versions, address tuples, encoded alives) for all holders."""
    found = _SHARED_VALUES.get(value)
    return found if found is not None else bounded_put(_SHARED_VALUES, value, value)


_ENCODED: dict[Any, bytes] = {}


def encoded_once(msg: Any) -> bytes:
    """encode(msg) once per distinct (frozen, hashable) message in the process: every member re-broadcasts every
    alive it applies, so N members applying one alive encode it once."""
    raw = _ENCODED.get(msg)
    return raw if raw is not None else bounded_put(_ENCODED, msg, shared(encode(msg)))


class Core:
    """memberlist's Memberlist struct: identity, member table, outputs, timers, and sending."""

    def __init__(
        self, config: Config, name: str, addr: Addr, rng: random.Random, delegate: Delegate, keyring: Keyring | None
    ) -> None:
        self.config = config
        self.name = name
        self.addr = addr
        #: gossip encryption (protocol/keyring.py); shared with Serf, whose key queries change it in place
        self.keyring = keyring
        self.decrypt_logged: dict[str, float] = {}
        self.stats: Counter[str] = Counter()
        self.rng = rng
        self.delegate = delegate
        self.packed_addr = ipaddress.ip_address(addr[0]).packed
        self.nodes: dict[str, NodeState] = {}
        self.order: list[str] = []  # memberlist m.nodes: the probe order
        self.stream_seq = 0
        self.awareness = Awareness(config.awareness_max_multiplier)
        self.broadcasts = BroadcastQueue(config.retransmit_mult)
        self.streams: dict[int, PendingStream] = {}
        self.timers: list[tuple[float, int, Timer]] = []
        self.timer_seq = 0
        self.transmits: deque[Transmit] = deque()
        self.events: deque[NodeEvent] = deque()
        self.stopped = False
        self.custom = {
            hook: getattr(type(self.delegate), hook) is not getattr(Delegate, hook)
            for hook in ("notify_alive", "notify_merge")
        }

    def estimated_nodes(self) -> int:
        """memberlist estNumNodes: everything in the probe list, recently dead included."""
        return len(self.order)

    # ----------------------------------------------------------------------------------------------------
    # timers

    def at(self, when: float, fn: Callable[[float], None]) -> Timer:
        timer = Timer(when, fn)
        self.timer_seq += 1
        heapq.heappush(self.timers, (when, self.timer_seq, timer))
        return timer

    def poll_timeout(self) -> float | None:
        timers = self.timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def handle_timeout(self, now: float) -> None:
        """Run every timer due at or before `now` (in deadline order)."""
        timers = self.timers
        while timers and timers[0][0] <= now and not self.stopped:
            _when, _seq, timer = heapq.heappop(timers)
            if timer.cancelled:
                continue
            timer.cancelled = True
            self.guarded(timer.fn, now)

    def guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn; a bug must never escape into the driver: count it and report it instead."""
        try:
            return fn(*args)
        except (MemoryError, RecursionError):
            raise  # the process is in trouble, not one packet: let the owner see it
        except Exception as exc:  # pragma: no cover - the tests assert stats["internal_error"] == 0
            self.internal_error(fn, exc)
            return None

    def internal_error(self, fn: Callable[..., Any], exc: Exception) -> None:
        """What `guarded` does with a bug: count it and report it (net.py's per-message loop catches inline)."""
        self.stats["internal_error"] += 1
        self.diag("error", f"internal error in {getattr(fn, '__name__', fn)}: {exc!r}", "internal-error")

    @staticmethod
    def next_tick(scheduled: float, interval: float, now: float) -> float:
        """A ticker's next time: missed ticks (a stalled process) are dropped, as Go's time.Ticker does."""
        nxt = scheduled + interval
        if nxt <= now:
            nxt += ((now - nxt) // interval + 1) * interval
        return nxt

    # ----------------------------------------------------------------------------------------------------
    # events and diagnostics

    def diag(self, level: str, message: str, kind: str = "") -> None:
        self.events.append(Diagnostic(level, f"memberlist: {message}", kind))

    def notify(self, now: float, kind: Notify | str, node: NodeState) -> None:
        if kind is Notify.JOIN:
            self.events.append(NodeJoin(node))
            self.delegate.notify_join(now, node)
        elif kind is Notify.UPDATE:
            self.events.append(NodeUpdate(node))
            self.delegate.notify_update(now, node)
        elif kind == "leave":
            self.events.append(NodeLeave(node))
            self.delegate.notify_leave(now, node)

    def malformed(self, what: str, addr: Addr | None, exc: Exception | str) -> None:
        self.stats["malformed"] += 1
        src = f" from {addr[0]}:{addr[1]}" if addr else ""
        self.diag("debug", f"dropped malformed {what}{src}: {exc}", "malformed")

    def decrypt_failed(self, now: float, what: str, addr: Addr, exc: Exception) -> None:
        """Count every packet or stream no key opens; log its source at most once per DECRYPT_LOG_INTERVAL."""
        self.stats["decrypt_failed"] += 1
        last = self.decrypt_logged.get(addr[0])
        if last is None or now - last >= DECRYPT_LOG_INTERVAL:
            self.decrypt_logged[addr[0]] = now
            total = self.stats["decrypt_failed"]
            self.diag(
                "warning", f"decrypt {what} failed from {addr[0]}:{addr[1]}: {exc} ({total} refused so far)", "decrypt"
            )

    # ----------------------------------------------------------------------------------------------------
    # addresses

    def packed(self, text: str) -> bytes:
        packed = _ADDR_PACKED.get(text)
        if packed is None:
            packed = bounded_put(_ADDR_PACKED, text, ipaddress.ip_address(text).packed)
        return packed

    def ip(self, packed: bytes) -> str:
        text = _ADDR_TEXT.get(packed)
        if text is None:
            text = bounded_put(_ADDR_TEXT, bytes(packed), _addr_text(packed))
        return text

    # ----------------------------------------------------------------------------------------------------
    # sending (the sending half of memberlist's net.go)

    @property
    def sealing(self) -> Keyring | None:
        """The keyring to encrypt with: none without keys, or while gossip_verify_outgoing is off."""
        ring = self.keyring
        return ring if ring is not None and ring.enabled and self.config.gossip_verify_outgoing else None

    def packet_overhead(self) -> int:
        """What memberlist takes off a packet's piggyback budget besides the compound header: labelOverhead (the
        label's header, when there is one) and, whenever a keyring is set, encryptOverhead(vsn)."""
        sealed = encrypt_overhead(1) if self.keyring is not None and self.keyring.enabled else 0
        return label_overhead(self.config.label) + sealed

    def raw_send(self, addr: Addr, msgs: list[bytes], node: NodeState | None) -> None:
        """One UDP packet of `msgs` (compound if several), CRC'd when the target understands v5."""
        cfg = self.config
        data = packets.wrap_packet(
            msgs,
            crc=node is not None and node.pmax >= 5,
            label=cfg.label,
            compress=cfg.compress_packets and self.compressing,
            limit=MAX_DATAGRAM,
            keyring=self.sealing,
            compress_min=cfg.compress_min_bytes,
        )
        self.stats["udp_sent"] += 1
        self.transmits.append(Datagram(addr, data))

    def send_msg(self, addr: Addr, msg: bytes, node: NodeState | None = None) -> None:
        """memberlist sendMsg: piggyback whatever broadcasts fit in the rest of the packet."""
        avail = self.config.udp_buffer_size - len(msg) - COMPOUND_HEADER_OVERHEAD - self.packet_overhead()
        extra = self.get_broadcasts(COMPOUND_OVERHEAD, avail)
        self.raw_send(addr, [msg, *extra], node)

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Our queued broadcasts, then the delegate's user messages in the space left."""
        to_send = self.broadcasts.get_broadcasts(overhead, limit, self.estimated_nodes())
        used = sum(map(len, to_send)) + overhead * len(to_send)
        avail = limit - used
        if avail > overhead + USER_MSG_OVERHEAD:
            for msg in self.delegate.get_broadcasts(overhead + USER_MSG_OVERHEAD, avail):
                to_send.append(_USER_TYPE + msg)  # encode(User(msg)): the type byte, then the raw payload
        return to_send

    def broadcast(self, key: str, msg: bytes, on_finished: Callable[[], None] | None = None) -> None:
        self.broadcasts.queue(key, msg, on_finished)

    def wrap_stream(self, msg: bytes) -> bytes:
        cfg = self.config
        return packets.wrap_stream(msg, label=cfg.label, compress=self.compressing, keyring=self.sealing)

    @property
    def compressing(self) -> bool:
        """Whether what we send now is LZW compressed: enable_compression, except while Lifeguard's health score
        says this node is falling behind (Config.compress_when_degraded says why)."""
        cfg = self.config
        return cfg.enable_compression and (cfg.compress_when_degraded or self.awareness.score == 0)

    def open_stream(self, addr: Addr, data: bytes, pending: PendingStream | None, timeout: float) -> int:
        self.stream_seq += 1
        sid = self.stream_seq
        if pending is not None:
            self.streams[sid] = pending
        self.stats["tcp_opened"] += 1
        self.transmits.append(StreamOpen(sid, addr, data, pending is not None, timeout))
        return sid

    def stream_reader(self) -> packets.StreamReader:
        """A reader for one stream, inbound or a reply, with this node's label, bound, keyring and verify rule."""
        cfg = self.config
        return packets.StreamReader(
            cfg.label, max_bytes=cfg.stream_max_bytes, keyring=self.keyring, verify_incoming=cfg.gossip_verify_incoming
        )

    # ----------------------------------------------------------------------------------------------------
    # random member selection

    def k_random(self, k: int, exclude: Callable[[NodeState], bool]) -> list[NodeState]:
        """memberlist kRandomNodes: up to k distinct members not excluded, 3n random draws at most."""
        order, nodes = self.order, self.nodes
        n = len(order)
        picked: list[NodeState] = []
        seen: set[str] = set()
        for _ in range(3 * n):
            if len(picked) >= k:
                break
            name = order[random_offset(self.rng, n)]
            if name in seen:
                continue
            state = nodes[name]
            if exclude(state):
                continue
            seen.add(name)
            picked.append(state)
        return picked
