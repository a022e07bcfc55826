"""The thin trio layer over `watch.WatchHub`: a blocking query's wait.

``await wait_past(store, read, min_index)`` answers at once when ``read(store.current).index > min_index``,
else registers the read's interests, and re-reads each time one of them is written.  Bound it with
``trio.move_on_after(wait)`` (Consul's ``?wait``); on timeout the caller answers ``read(store.current)``.
The registration happens before the read it guards, so no write can slip between them unseen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

from .reads import Read
from .store import StateStore
from .tables import State

__all__ = ["wait_past"]

T = TypeVar("T")


async def wait_past(store: StateStore, read: Callable[[State], Read[T]], min_index: int) -> Read[T]:
    answer = read(store.current)
    while answer.index <= min_index:
        event = trio.Event()
        waiter = store.hub.register(answer.interests, event.set)
        try:
            answer = read(store.current)  # re-read now that we are registered
            if answer.index > min_index:
                break
            await event.wait()
        finally:
            waiter.cancel()
        answer = read(store.current)
    await trio.lowlevel.checkpoint()
    return read(store.current)
