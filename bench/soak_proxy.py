"""The soak's lossy proxy (bench/soak.py ``--role proxy``): UDP forwarded with seeded drops, TCP spliced."""

from __future__ import annotations

import json
import random
import socket
import sys
from typing import Any

import trio
from soak_clients import Stats

# ---------------------------------------------------------------------- the lossy proxy


async def udp_proxy(front_addr: tuple[str, int], agent: tuple[str, int], loss: float, rng: random.Random,
                    stats: Stats) -> None:
    """Forward datagrams to ``agent`` through one socket per sender (so replies go back), dropping ``loss``."""
    front = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await front.bind(front_addr)
    backs: dict[tuple[str, int], trio.socket.SocketType] = {}

    async def back_loop(sender: tuple[str, int], back: trio.socket.SocketType) -> None:
        while True:
            data = await back.recv(65536)
            if rng.random() < loss:
                stats.counts["gossip datagrams dropped"] += 1
                continue
            await front.sendto(data, sender)

    async with trio.open_nursery() as nursery:
        while True:
            data, sender = await front.recvfrom(65536)
            if rng.random() < loss:
                stats.counts["gossip datagrams dropped"] += 1
                continue
            stats.counts["gossip datagrams forwarded"] += 1
            back = backs.get(sender)
            if back is None:
                back = backs[sender] = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                await back.bind((front_addr[0], 0))
                nursery.start_soon(back_loop, sender, back)
            await back.sendto(data, agent)


async def tcp_proxy(front_addr: tuple[str, int], agent: tuple[str, int]) -> None:
    async def splice(a: trio.SocketStream, b: trio.SocketStream) -> None:
        try:
            while data := await a.receive_some(65536):
                await b.send_all(data)
            await b.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    async def handle(client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(*agent)
        except OSError:
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as n:
            n.start_soon(splice, client, upstream)
            n.start_soon(splice, upstream, client)

    listeners = await trio.open_tcp_listeners(front_addr[1], host=front_addr[0])
    await trio.serve_listeners(handle, listeners)


async def run_proxies(spec: dict[str, Any]) -> None:
    """``--role proxy``: its own process, so a stall of the load generator never stalls gossip."""
    stats = Stats()
    with trio.move_on_after(spec["duration"]):
        async with trio.open_nursery() as nursery:
            for i, (front, agent) in enumerate(zip(spec["fronts"], spec["agents"], strict=True)):
                rng = random.Random(spec["seed"] + i)
                nursery.start_soon(udp_proxy, tuple(front), tuple(agent), spec["loss"], rng, stats)
                nursery.start_soon(tcp_proxy, tuple(front), tuple(agent))
            print("ready", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)  # until the parent closes it
            nursery.cancel_scope.cancel()
    print(json.dumps({"counts": stats.counts}), flush=True)
