"""What the agent does on a signal, as Consul's agent: SIGHUP reloads; SIGINT leaves gracefully unless
``skip_leave_on_interrupt``, SIGTERM only with ``leave_on_terminate``; a graceful leave that a second signal
interrupts or that takes longer than GRACEFUL_LEAVE_LIMIT ends the process with exit 1."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from agent.config import AgentConfig

log = logging.getLogger("agent")

GRACEFUL_LEAVE_LIMIT = 15.0  # Consul: "Timeout on graceful leave. Exiting"


async def handle_signals(signals: AsyncIterator[int], config: AgentConfig, reload: Callable[[], Awaitable[None]],
                         leave: Callable[[], Awaitable[None]]) -> int | None:
    """Serve SIGHUPs until a SIGINT or SIGTERM; the exit code once the agent should stop (None: the signals
    ended, which leaves the exit code as it was)."""
    async for signum in signals:
        if signum == signal.SIGHUP:
            await reload()
            continue
        name = "interrupt" if signum == signal.SIGINT else "terminated"
        log.info("agent: Caught: signal=%s", name)
        graceful = not config.skip_leave_on_interrupt if signum == signal.SIGINT else config.leave_on_terminate
        if not graceful:
            log.info("agent: Graceful shutdown disabled. Exiting")
            return 1
        log.info("agent: Gracefully shutting down agent...")
        return await leave_bounded(signals, leave)
    return None


async def leave_bounded(signals: AsyncIterator[int], leave: Callable[[], Awaitable[None]]) -> int:
    """Leave, but a second signal or GRACEFUL_LEAVE_LIMIT seconds end it at once (exit 1)."""
    async with trio.open_nursery() as nursery:
        result = 1

        async def second_signal() -> None:
            async for _ in signals:
                log.warning("agent: Caught second signal, Exiting")
                nursery.cancel_scope.cancel()
                return

        nursery.start_soon(second_signal)
        with trio.move_on_after(GRACEFUL_LEAVE_LIMIT) as scope:
            await leave()
            result = 0
            log.info("agent: Graceful exit completed")
        if scope.cancelled_caught:
            log.error("agent: Timeout on graceful leave. Exiting")
        nursery.cancel_scope.cancel()
    return result
