"""The joins an agent makes as it starts, as Consul's agent makes them.

``-join`` (start_join) must reach someone or the agent stops (exit 1); ``-retry-join`` keeps trying every
``retry_interval`` until one answers or ``retry_max`` attempts failed (then it stops too); with neither ``-join``
nor a graceful leave last time (unless ``rejoin_after_leave``), the peers the data dir remembers are rejoined.
Kept apart from agent/supervisor.py, which only hands over the agent's join and what to do when the start fails.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from agent.api import JoinError
from agent.config import AgentConfig
from agent.datadir import DataDir

log = logging.getLogger("agent")

#: The agent's join (Agent.join): addresses in, how many answered out; JoinError when none did.
Join = Callable[[list[str]], Awaitable[int]]


async def initial_joins(config: AgentConfig, join: Join, datadir: DataDir | None, own_serf_addr: str,
                        nursery: trio.Nursery, fail: Callable[[], None]) -> None:
    """-join now, -retry-join and the rejoin of known peers in ``nursery``; ``fail`` stops the agent (exit 1)."""
    if config.start_join:
        try:
            count = await join(list(config.start_join))
        except JoinError as exc:
            log.error("agent: Failed to join: %s", exc)
            fail()
            return
        log.info("Join completed. Initial agents synced with: %d", count)
    if config.retry_join:
        nursery.start_soon(retry_join, config, join, list(config.retry_join), fail)
    if datadir is not None and not config.start_join:
        peers = [p for p in datadir.read_peers() if p != own_serf_addr]
        if peers and (config.rejoin_after_leave or not datadir.left()):
            nursery.start_soon(rejoin, join, peers)
        elif peers:
            log.info("agent: left gracefully last time; not rejoining %d known peers (rejoin_after_leave off)",
                     len(peers))
    if datadir is not None:
        datadir.mark_left(False)


async def rejoin(join: Join, peers: list[str]) -> None:
    try:
        count = await join(peers)
        log.info("agent: rejoined %d of %d known peers", count, len(peers))
    except JoinError as exc:
        log.warning("agent: could not rejoin known peers: %s", exc)


async def retry_join(config: AgentConfig, join: Join, addrs: list[str], fail: Callable[[], None]) -> None:
    attempt = 0
    while True:
        attempt += 1
        try:
            count = await join(addrs)
        except JoinError as exc:
            log.warning("agent: Join cluster failed, will retry: attempt=%d error=%s", attempt, exc)
        else:
            log.info("agent: Join cluster completed. Synced with %d initial agents", count)
            return
        if config.retry_max and attempt >= config.retry_max:
            log.error("agent: max join retry exhausted, exiting")
            fail()
            return
        await trio.sleep(config.retry_interval)
