"""What arrives: the receiving half of memberlist's net.go (handleCommand, handleConn, readRemoteState).

A UDP packet is unwrapped (label, encryption, CRC, compression, compound framing; protocol/packets.py) and each
message dispatched by type: pings and acks to the prober (protocol/probing.py), alive/suspect/dead to the member
state machine (protocol/membership.py), user messages to the delegate. A TCP stream is read chunk by chunk, bounded
in bytes and time, and served: a push/pull (protocol/gossip.py), a fallback ping, a user message. Replies on streams
we opened go back to whoever opened them (`PendingStream`). Bad input is counted and logged, never raised: the
driver must keep serving.

`Net` sits above the collaborators it dispatches to and below the Node facade; the sending half lives in
protocol/core.py, because every collaborator sends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from protocol import packets
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
    PushPull,
    Suspect,
    User,
    UserStream,
    decode,
    encode,
)
from protocol.core import MAX_DATAGRAM, Core
from protocol.gossip import Gossip
from protocol.keyring import DecryptError
from protocol.membership import Membership
from protocol.probing import Prober
from protocol.state import Addr

__all__ = ["Net"]

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


@attrs.define(eq=False)
class _Inbound:
    """A TCP connection someone opened to us: its reader keeps the partial message between chunks."""

    addr: Addr
    opened: float
    reader: packets.StreamReader


class Net:
    """Inbound packets and streams, unwrapped, bounded and handed to the collaborator each message is for."""

    def __init__(self, core: Core, membership: Membership, prober: Prober, gossip: Gossip) -> None:
        self.core = core
        self._prober = prober
        self._gossip = gossip
        self._inbound: dict[int, _Inbound] = {}
        self._inbound_seq = 0
        self._handlers: dict[type, Callable[[float, Addr, Any], None]] = {
            Ping: prober.handle_ping,
            IndirectPing: prober.handle_indirect_ping,
            Ack: prober.handle_ack,
            Nack: prober.handle_nack,
            Alive: membership.handle_alive,
            Suspect: membership.handle_suspect,
            Dead: membership.handle_dead,
            User: self._handle_user,
        }

    def clear(self) -> None:
        """Shutdown: forget every partial inbound stream."""
        self._inbound.clear()

    # ----------------------------------------------------------------------------------------------------
    # UDP

    def handle_datagram(self, now: float, addr: Addr, data: bytes) -> None:
        """One UDP packet: label/CRC/compression/compound framing undone, each message handled."""
        core = self.core
        if core.stopped:
            return
        core.stats["udp_received"] += 1
        if len(data) > MAX_DATAGRAM:
            core.stats["oversized"] += 1
            core.diag("debug", f"dropped oversized packet ({len(data)} bytes) from {addr[0]}:{addr[1]}", "oversized")
            return
        cfg = core.config
        try:
            parts = packets.unwrap_packet(
                data, cfg.label, keyring=core.keyring, verify_incoming=cfg.gossip_verify_incoming
            )
        except DecryptError as exc:
            core.decrypt_failed(now, "packet", addr, exc)
            return
        except Exception as exc:  # DecodeError and anything a corrupt LZW stream throws
            core.malformed("packet", addr, exc)
            return
        handlers, decoded = self._handlers, _DECODED
        for part in parts:
            msg = decoded.get(part)  # _decode's memo, looked up inline: most parts are gossip seen before
            if msg is None:
                try:
                    msg = _decode(part)
                except Exception as exc:
                    core.malformed("message", addr, exc)
                    continue
            handler = handlers.get(type(msg))
            if handler is None:
                core.stats["unexpected"] += 1
                core.diag("debug", f"unexpected {type(msg).__name__} over UDP from {addr[0]}:{addr[1]}", "unexpected")
                continue
            # Core.guarded, inline: this runs for every message of every packet
            try:
                handler(now, addr, msg)
            except DecodeError as exc:  # e.g. a 5-byte address inside an otherwise valid message
                core.malformed(type(msg).__name__, addr, exc)
            except (MemoryError, RecursionError):
                raise
            except Exception as exc:  # pragma: no cover - the tests assert stats["internal_error"] == 0
                core.internal_error(handler, exc)

    def _handle_user(self, now: float, addr: Addr, u: User) -> None:
        self.core.delegate.notify_msg(now, u.payload)

    # ----------------------------------------------------------------------------------------------------
    # TCP streams others opened

    def accept_stream(self, now: float, addr: Addr) -> int:
        """A TCP connection from `addr` was accepted: its id for handle_stream_data and close_stream."""
        self._inbound_seq += 1
        self._inbound[self._inbound_seq] = _Inbound(addr, now, self.core.stream_reader())
        return self._inbound_seq

    def handle_stream_data(self, now: float, stream_id: int, data: bytes) -> bytes | None:
        """The next bytes of an accepted stream (only the new ones: the reader keeps what came before).

        None = read more; bytes = write them, then close (b"" = just close). Each byte is parsed once. A stream
        past config.stream_max_bytes or older than config.tcp_timeout is answered with an error and dropped.
        """
        core = self.core
        if core.stopped:
            return b""
        inbound = self._inbound.get(stream_id)
        if inbound is None:
            return b""
        addr = inbound.addr
        if now - inbound.opened > core.config.tcp_timeout:
            del self._inbound[stream_id]
            core.stats["stream_timeout"] += 1
            reason = f"stream not complete within tcp_timeout={core.config.tcp_timeout:g}s"
            core.diag("debug", f"dropped stream from {addr[0]}:{addr[1]}: {reason}", "stream-timeout")
            return core.wrap_stream(encode(ErrResp(reason)))
        try:
            msg = inbound.reader.feed(data)
        except packets.StreamTooLarge as exc:
            del self._inbound[stream_id]
            core.stats["oversized"] += 1
            core.diag("debug", f"dropped stream from {addr[0]}:{addr[1]}: {exc}", "oversized")
            return core.wrap_stream(encode(ErrResp(str(exc))))
        except DecryptError as exc:
            del self._inbound[stream_id]
            core.decrypt_failed(now, "stream", addr, exc)
            return core.wrap_stream(encode(ErrResp(str(exc))))
        except Exception as exc:  # DecodeError and anything a corrupt LZW stream throws
            del self._inbound[stream_id]
            core.malformed("stream", addr, exc)
            return core.wrap_stream(encode(ErrResp(str(exc))))
        if msg is None:
            return None
        del self._inbound[stream_id]
        core.stats["tcp_accepted"] += 1
        reply = core.guarded(self._serve_stream, now, addr, msg)
        return reply if reply is not None else b""

    def close_stream(self, stream_id: int) -> None:
        """The accepted connection is gone (closed, timed out): forget its partial message."""
        self._inbound.pop(stream_id, None)

    def _serve_stream(self, now: float, addr: Addr, msg: Any) -> bytes:
        core = self.core
        if isinstance(msg, PushPull):
            return self._gossip.serve_push_pull(now, addr, msg)
        if isinstance(msg, Ping):
            return self._prober.serve_ping(msg)
        if isinstance(msg, UserStream):
            core.delegate.notify_msg(now, msg.payload)
            return b""
        core.stats["unexpected"] += 1
        core.diag("error", f"received invalid stream message {type(msg).__name__} from {addr[0]}:{addr[1]}")
        return b""

    # ----------------------------------------------------------------------------------------------------
    # replies on TCP streams we opened

    def handle_stream_reply(self, now: float, stream_id: int, data: bytes) -> bool:
        """The next reply bytes on a stream we opened (only the new ones); True once a whole reply was handled
        (or refused). The reply is bounded like an inbound stream (config.stream_max_bytes)."""
        core = self.core
        pending = core.streams.get(stream_id)
        if pending is None or core.stopped:
            return True
        if pending.reader is None:
            pending.reader = core.stream_reader()
        try:
            msg = pending.reader.feed(data)
        except DecryptError as exc:
            del core.streams[stream_id]
            core.decrypt_failed(now, "stream reply", pending.addr, exc)
            pending.on_failed(now, f"cannot decrypt the reply: {exc}")
            return True
        except Exception as exc:
            del core.streams[stream_id]
            core.malformed("stream reply", pending.addr, exc)
            pending.on_failed(now, f"malformed reply: {exc}")
            return True
        if msg is None:
            return False
        del core.streams[stream_id]
        core.guarded(pending.on_reply, now, msg)
        return True

    def handle_stream_error(self, now: float, stream_id: int, reason: str) -> None:
        """A stream we opened failed (dial, read, timeout)."""
        core = self.core
        pending = core.streams.pop(stream_id, None)
        if pending is not None and not core.stopped:
            pending.on_failed(now, reason)
