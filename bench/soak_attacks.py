"""The soak's attackers (bench/soak.py): connections held open or trickled, parked queries followed by garbage,
malformed gossip datagrams; each reopened when closed, each counted in ``Stats``."""

from __future__ import annotations

import itertools
import os
import random
import socket

import trio
from soak_clients import CLIENT_NET, Stats

# ---------------------------------------------------------------------- attacks


async def hold(source: str, addr: tuple[str, int], first: bytes, trickle: bytes, every: float,
               stats: Stats, what: str) -> None:
    """An attack connection: ``first``, then ``trickle`` a byte at a time every ``every`` s; reopened when closed."""
    while True:
        try:
            sock = trio.socket.socket()
            await sock.bind((source, 0))
            await sock.connect(addr)
            stream = trio.SocketStream(sock)
            stats.counts[f"attack {what} opened"] += 1
            async with stream:
                if first:
                    await stream.send_all(first)
                for i in itertools.count():
                    if trickle:
                        await stream.send_all(trickle[i % len(trickle) : i % len(trickle) + 1])
                    with trio.move_on_after(every):
                        if await stream.receive_some(4096) == b"":
                            break
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await trio.sleep(1.0)


async def parked_with_garbage(source: str, addr: tuple[str, int], stats: Stats) -> None:
    while True:
        try:
            sock = trio.socket.socket()
            await sock.bind((source, 0))
            await sock.connect(addr)
            stream = trio.SocketStream(sock)
            stream.setsockopt(socket.IPPROTO_TCP, getattr(socket, "TCP_NOTSENT_LOWAT", 25), 1 << 30)
            stats.counts["attack parked+garbage opened"] += 1
            async with stream:
                await stream.send_all(b"GET /v1/catalog/nodes?index=1000000&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n")
                await stream.send_all(os.urandom(1 << 20))
                while await stream.receive_some(65536):
                    pass
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await trio.sleep(1)


async def bad_gossip(ports: list[tuple[str, int]], stats: Stats, rate: int) -> None:
    rng = random.Random(16)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((CLIENT_NET.format(6), 0))
    kinds = [
        lambda: rng.randbytes(rng.randrange(1, 1400)),
        lambda: bytes([rng.randrange(0, 14)]) + rng.randbytes(rng.randrange(0, 64)),  # a type byte, then junk
        lambda: b"\x04\x85\xa4Node\xc4\x05evil\xff\xa3Addr",  # a truncated alive with a non-UTF-8 name
        lambda: b"\x07\xff" + b"\x00\x05" * 255,  # a compound claiming 255 parts of 5 bytes, none there
        lambda: b"\x0c\xde\xad\xbe\xef" + rng.randbytes(40),  # a CRC that cannot match
    ]
    while True:
        for addr in ports:
            await sock.sendto(kinds[rng.randrange(len(kinds))](), addr)
            stats.counts["malformed gossip datagrams sent"] += 1
        await trio.sleep(len(ports) / rate)
