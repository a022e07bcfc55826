"""The gossip driver's UDP sends: straight to the kernel while its buffer takes them, awaited only when full.

memberlist's transport writes each packet from the goroutine that made it. The trio driver used to ``await
sendto`` per datagram: two scheduler passes per packet (a large share of a starved node's CPU), and a pump that
yielded after every packet, so a node flooded with datagrams (a join storm's seed) ran its UDP loop, up to a few
hundred packets, between two of its own sends: its acks queued for seconds and every peer suspected it.
"""

from __future__ import annotations

import logging
import socket

import trio

from agent.gossip.driver_records import DriverStats
from agent.gossip.machine import Addr

__all__ = ["UdpSender"]

log = logging.getLogger("triumvir.gossip")


class UdpSender:
    """Sends on one UDP socket: ``nowait`` (a non-blocking duplicate of its fd) first, ``udp`` when it is full."""

    def __init__(self, udp: trio.socket.SocketType, nowait: socket.socket, stats: DriverStats) -> None:
        self._udp = udp
        self._nowait = nowait
        self._stats = stats

    def send_now(self, addr: Addr, data: bytes) -> bool:
        """Send without a checkpoint; False if the socket's buffer is full (then await ``send``)."""
        try:
            self._nowait.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            return False
        except (OSError, OverflowError, ValueError) as exc:  # unreachable, or an address no socket can take
            self._failed(addr, data, exc)
            return True
        self._stats.datagrams_out += 1
        return True

    async def send(self, addr: Addr, data: bytes) -> None:
        """Send, waiting for room in the socket's buffer."""
        try:
            await self._udp.sendto(data, addr)
            self._stats.datagrams_out += 1
        except (OSError, OverflowError, ValueError) as exc:
            self._failed(addr, data, exc)

    def _failed(self, addr: Addr, data: bytes, exc: Exception) -> None:
        self._stats.send_errors += 1
        log.debug("udp send of %d bytes to %s:%d failed: %s", len(data), *addr, exc)
