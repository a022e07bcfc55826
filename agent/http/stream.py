"""``ws://CLIENT_ADDR:8500/v1/stream/members``: the member table as a live websocket stream.

The protocol (one JSON text message each):

- on connect ``{"Type": "snapshot", "Index": N, "Members": [...]}`` (members in the ``/v1/agent/members`` shape),
  then ``{"Type": "member-join" | "member-update" | "member-leave" | "member-failed" | "member-reap",
  "Index": N, "Member": {...}}`` per change, in index order;
- ``?index=K`` resumes: if the table's bounded history still holds every change after K, they are replayed and no
  snapshot is sent; if K is older than the history, or ahead of the table (the agent restarted), a fresh snapshot;
- ``?status=REGEX`` (matched anywhere in the status name, as ``consul members -status`` does) and ``?dc=`` filter.
  A member that stops matching is sent once more (its last event) so a client never keeps a stale row;
  clients drop rows that no longer match.

Why this shape (DESIGN.md, "Data flow"): a subscriber is a task with a cursor into the table's history.  The table
never waits on a subscriber and does no per-subscriber work: it sets one ``trio.Event`` per change.  The
subscriber's queue *is* the shared history: what it holds on its own is the cursor and at most one message being
written, so a client that stops reading holds no memory of ours; it falls behind, and once it is ``stream_window``
events behind (or out of the history) it is closed with 1013 and told to reconnect with ``?index=``.  A write that
the client does not take within ``stream_send_timeout`` drops it, and so does a ping it does not answer within
``stream_ping_timeout`` (through the gate the ping is written directly and any byte back answers it: no task waits
on each pong).

Fan-out (issue 14): a subscriber without a filter that has caught up *parks* in the table's `_Fanout` and its task
sleeps.  One parked task at a time is the pump: it alone waits on the table, encodes each change once as a finished
websocket frame, and writes that frame to every parked subscriber's socket with one non-blocking ``os.write`` each,
without waking their tasks.  A subscriber whose socket cannot take the whole frame at once (its buffer is full, or
trio-websocket is writing a ping or pong to it) leaves the park: the fan-out keeps the unwritten rest of the frame
in the connection's `WsGate` (agent/http/ws_gate.py), and the subscriber's own task finishes it and catches up
from the history, as a slow subscriber always did.  The server builds trio-websocket on that gate, so every write
trio-websocket makes (pings, pongs, the close) first finishes that rest: frames never interleave.  Filtered
subscribers, and any connection without a socket (tests' memory streams), follow the history in their own task
(messages still encoded once per change, in a small cache per table).
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from agent.http.errors import HTTPError
from agent.http.response import go_json
from agent.http.routes import Ctx, Route, SocketRoute
from agent.http.views import member_json
from agent.http.ws_gate import Written, WsGate

if TYPE_CHECKING:
    from agent.http.options import HttpOptions
    from agent.members import Change, Member, MemberTable, Snapshot

__all__ = [
    "OVERFLOW_CODE",
    "ROUTES",
    "SOCKETS",
    "STATUS_NAMES",
    "STREAM_PATH",
    "Filter",
    "StreamStatistics",
    "statistics",
]

log = logging.getLogger("agent.http.stream")

STREAM_PATH = "/v1/stream/members"
#: "Try Again Later" (RFC 6455 registry): the subscriber fell too far behind.
OVERFLOW_CODE = 1013
#: Serf's status names: what ``?status=`` matches against (``Status`` in the JSON stays Serf's integer).
STATUS_NAMES = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
NOT_UPGRADED = (
    "this endpoint is a websocket stream: connect with ws:// (a GET with 'Connection: Upgrade' and "
    "'Upgrade: websocket'); the member list as plain JSON is at /v1/agent/members"
)
_PING = b"\x89\x00"  # a websocket ping frame with no payload (RFC 6455 5.5.2), as a server sends it
_ENCODED_CACHE = 1024  # changes kept encoded per table: subscribers read near the head, so the cache is small


@attrs.frozen
class Filter:
    """``?status=`` and ``?dc=``: which members a subscriber wants to see."""

    status: re.Pattern[str] | None = None
    dc: str = ""

    @property
    def active(self) -> bool:
        return self.status is not None or bool(self.dc)

    def matches(self, member: Member) -> bool:
        if self.dc and member.tags.get("dc", "") != self.dc:
            return False
        return self.status is None or self.status.search(STATUS_NAMES.get(member.status, "unknown")) is not None


@attrs.define
class StreamStatistics:
    """Counters per member table (trio style: read them, don't rely on their identity)."""

    subscribers: int = 0  # connected now
    opened: int = 0
    overflowed: int = 0  # closed with 1013
    timed_out: int = 0  # a write or a ping not answered in time: dropped
    messages: int = 0  # messages written, all subscribers
    fanned_out: int = 0  # of those, written by the fan-out's pump to a parked subscriber
    parked: int = 0  # subscribers parked at the head now (written to by the pump)
    split: int = 0  # frames the pump could only begin (the socket was full): their task wrote the rest


class _Hub:
    """Per table: the encoded-message cache, the counters and the fan-out (whose park holds subscribers only
    while they are connected and caught up)."""

    def __init__(self, table: MemberTable) -> None:
        self.stats = StreamStatistics()
        self.fanout = _Fanout(table, self)
        self._changes: dict[int, tuple[str, bytes]] = {}
        self._snapshot: tuple[int, str] | None = None

    def _encoded(self, change: Change) -> tuple[str, bytes]:
        encoded = self._changes.get(change.index)
        if encoded is None:
            text = _encode({"Type": change.kind, "Index": change.index, "Member": member_json(change.member)})
            encoded = self._changes[change.index] = (text, text_frame(text.encode("utf-8")))
            if len(self._changes) > _ENCODED_CACHE:
                del self._changes[next(iter(self._changes))]  # the oldest inserted: near-monotonic indexes
        return encoded

    def change_message(self, change: Change) -> str:
        """The change as a JSON text (for trio-websocket's send_message)."""
        return self._encoded(change)[0]

    def change_frame(self, change: Change) -> bytes:
        """The change as a whole websocket frame, ready for the socket (for the fan-out)."""
        return self._encoded(change)[1]

    def snapshot_message(self, snapshot: Snapshot, where: Filter) -> str:
        if where.active:
            return _snapshot_text(snapshot, (m for m in snapshot.sorted_members() if where.matches(m)))
        if self._snapshot is None or self._snapshot[0] != snapshot.index:
            self._snapshot = (snapshot.index, _snapshot_text(snapshot, snapshot.sorted_members()))
        return self._snapshot[1]


_hubs: weakref.WeakKeyDictionary[MemberTable, _Hub] = weakref.WeakKeyDictionary()


def _hub(table: MemberTable) -> _Hub:
    hub = _hubs.get(table)
    if hub is None:
        hub = _hubs[table] = _Hub(table)
    return hub


def statistics(table: MemberTable) -> StreamStatistics:
    """The stream counters of ``table``'s subscribers (a copy)."""
    return attrs.evolve(_hub(table).stats)


def _encode(obj: object) -> str:
    return go_json(obj, pretty=False).decode("utf-8")


def _snapshot_text(snapshot: Snapshot, members: Iterable[Member]) -> str:
    return _encode({"Type": "snapshot", "Index": snapshot.index, "Members": [member_json(m) for m in members]})


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked websocket text frame (RFC 6455 5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 1 << 16:
        head = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return head + payload


# ---------------------------------------------------------------------- the fan-out


class _Fanout:
    """Per table: the subscribers parked at the head, and which of their tasks is the pump (module docstring).

    The pump waits on the table for everyone; each change is encoded once and written to every parked socket in
    one synchronous pass (no checkpoint, so no cancellation can cut a pass short).  A subscriber leaves the park
    when a write to it cannot be made whole, when its connection closes, or when its task is cancelled; the pump's
    role then passes to another parked task.
    """

    def __init__(self, table: MemberTable, hub: _Hub) -> None:
        self.table = table
        self.hub = hub
        self.parked: dict[_Subscriber, None] = {}  # insertion-ordered set
        self.pump: _Subscriber | None = None
        self.head = 0  # the index the pump has served up to

    async def park(self, sub: _Subscriber) -> None:
        """Hold ``sub`` (caught up to ``sub.cursor`` == the table's index) until it has to leave the park."""
        if not self.parked:
            self.head = sub.cursor
        self.parked[sub] = None
        self.hub.stats.parked += 1
        try:
            while sub in self.parked:
                if self.pump is None:
                    self.pump = sub
                if self.pump is sub:
                    await self._pump_once()
                else:
                    sub.wake = trio.Event()
                    await sub.wake.wait()
        finally:
            self.hub.stats.parked -= 1
            self.parked.pop(sub, None)
            if self.pump is sub:
                self.pump = None
                successor = next(iter(self.parked), None)
                if successor is not None:
                    successor.wake.set()

    def unpark(self, sub: _Subscriber) -> None:
        if self.parked.pop(sub, 0) is None:
            sub.wake.set()

    async def _pump_once(self) -> None:
        table = self.table
        await table.wait_past(self.head)
        snapshot = table.current
        changes = table.changes_since(self.head)
        if changes is None:  # cannot happen while the pump keeps up; everyone catches up alone
            for sub in list(self.parked):
                self.unpark(sub)
            return
        self._serve(changes)
        self.head = max(self.head, snapshot.index)

    def _serve(self, changes: list[Change]) -> None:
        """Write each change's frame to every parked subscriber not yet past it: one synchronous pass (no
        checkpoint), the common case (the socket takes it whole) inline, as it runs once per subscriber."""
        stats, whole = self.hub.stats, Written.WHOLE
        for change in changes:
            frame, index, sent = self.hub.change_frame(change), change.index, 0
            for sub in list(self.parked):
                if index > sub.cursor:
                    written = sub.gate.write_now(frame)  # type: ignore[union-attr]  # a parked subscriber has one
                    if written is whole:
                        sub.cursor = index
                        sent += 1
                    else:
                        self._missed(sub, index, written)
            stats.messages += sent
            stats.fanned_out += sent

    def _missed(self, sub: _Subscriber, index: int, written: Written) -> None:
        """The socket did not take the frame whole: the subscriber leaves the park (its task finishes a begun
        frame and catches up; a broken connection it finds out)."""
        stats = self.hub.stats
        if written is Written.BEGUN:
            sub.cursor = index
            stats.messages += 1
            stats.fanned_out += 1
            stats.split += 1
        elif written is Written.BROKEN:
            log.debug("stream: writing to %s failed", sub.remote)
        self.unpark(sub)


# ---------------------------------------------------------------------- the session


class _Drop(Exception):
    """The subscriber is gone or unresponsive: stop without a close handshake."""


@attrs.define(eq=False)
class _Subscriber:
    """One websocket subscriber: a cursor into the history, its filter, and the members it has been shown."""

    table: MemberTable
    options: HttpOptions
    where: Filter
    resume: int | None
    remote: str
    shown: set[str] = attrs.Factory(set)  # with a filter: names whose last event we sent matched it
    hub: _Hub = attrs.field(init=False)
    cursor: int = 0  # while parked: the last change written (the pump moves it)
    wake: trio.Event = attrs.Factory(trio.Event)  # while parked and not the pump: set to leave or to pump
    gate: WsGate | None = None  # None: this connection is served by its own task only (filtered, or no socket)

    def __attrs_post_init__(self) -> None:
        self.hub = _hub(self.table)

    def _use_gate(self, gate: WsGate) -> None:
        """Serve through the fan-out if the gate has a socket to write to and no filter picks the messages."""
        if not gate.direct or self.where.active:
            return
        self.gate = gate
        gate.on_close = lambda: self.hub.fanout.unpark(self)

    async def run(self, ws: WebSocketConnection, gate: WsGate) -> None:
        """Serve until the client leaves, stops answering, or falls behind (then close with 1013); ``gate`` is
        the stream ``ws`` is built on (agent/http/ws_gate.py)."""
        self._use_gate(gate)
        stats = self.hub.stats
        stats.subscribers += 1
        stats.opened += 1
        close: tuple[int, str] | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._discard_incoming, ws, nursery.cancel_scope)
                nursery.start_soon(self._keep_alive, ws, nursery.cancel_scope)
                close = await self._feed(ws)
                nursery.cancel_scope.cancel()
        except* _Drop:
            stats.timed_out += 1
        finally:
            stats.subscribers -= 1
        if close is not None:
            stats.overflowed += 1
            # The close frame queues behind what the client has not read: it gets one send timeout to take it.
            with trio.move_on_after(self.options.stream_send_timeout):
                await ws.aclose(*close)

    async def _feed(self, ws: WebSocketConnection) -> tuple[int, str] | None:
        """Snapshot or replay, then follow the history; returns the close to send, None if the client left."""
        table, window = self.table, self.options.stream_window
        cursor = self.resume
        current = table.current
        if cursor is None or cursor > current.index or table.changes_since(cursor) is None:
            if not await self._send(ws, self.hub.snapshot_message(current, self.where)):
                return None
            cursor = current.index
            if self.where.active:
                self.shown = {m.name for m in current.members.values() if self.where.matches(m)}
        elif self.where.active:
            # Resuming blind: we don't know what the client was shown, so any member may need its way out.
            self.shown = set(current.members.keys())
        while True:
            snapshot, changes = table.current, table.changes_since(cursor)
            if changes == [] and self.gate is not None and not self.gate.closed:
                # Caught up: park (no checkpoint since the read above, so the table is still at this index).
                self.cursor = max(cursor, snapshot.index)
                await self.hub.fanout.park(self)
                cursor = self.cursor
                if not await self._finish_frame(ws):
                    return None
                continue
            if changes == []:
                snapshot, changes = await table.wait_changes(cursor)
            if changes is None:
                return self._overflow(cursor, snapshot.index)
            for change in changes:
                head = table.current.index
                if head - change.index >= window:
                    return self._overflow(cursor, head)
                if self._wants(change) and not await self._send(ws, self.hub.change_message(change)):
                    return None
                cursor = change.index
            cursor = max(cursor, snapshot.index)

    def _wants(self, change: Change) -> bool:
        """Filtered: a matching member, or the last event of one that stops matching (so its row goes away)."""
        if not self.where.active:
            return True
        name = change.member.name
        if change.kind != "member-reap" and self.where.matches(change.member):
            self.shown.add(name)
            return True
        if name in self.shown:
            self.shown.discard(name)
            return True
        return False

    def _overflow(self, cursor: int, head: int) -> tuple[int, str]:
        log.warning(
            "stream: subscriber %s fell %d events behind (window %d): closing with %d",
            self.remote,
            head - cursor,
            self.options.stream_window,
            OVERFLOW_CODE,
        )
        return OVERFLOW_CODE, f"too slow: {head - cursor} events behind; reconnect with ?index={cursor}"

    async def _finish_frame(self, ws: WebSocketConnection) -> bool:
        """Write the rest of a frame the pump began; False if the client is gone."""
        gate = self.gate
        if gate is None or not gate.rest:
            return True
        with trio.move_on_after(self.options.stream_send_timeout) as scope:
            try:
                await gate.finish()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        if scope.cancelled_caught:
            log.info("stream: %s took no data for %ss: dropped", self.remote, self.options.stream_send_timeout)
            raise _Drop
        return True

    async def _send(self, ws: WebSocketConnection, text: str) -> bool:
        """Write one message; False if the client is gone.  A write the client doesn't take in time drops it."""
        with trio.move_on_after(self.options.stream_send_timeout) as scope:
            try:
                await ws.send_message(text)
            except ConnectionClosed:
                return False
        if scope.cancelled_caught:
            log.info("stream: %s took no data for %ss: dropped", self.remote, self.options.stream_send_timeout)
            raise _Drop
        self.hub.stats.messages += 1
        return True

    async def _discard_incoming(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        """Clients have nothing to say: read and drop (so pongs keep flowing); their close ends the session."""
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed:
            scope.cancel()

    async def _keep_alive(self, ws: WebSocketConnection, scope: trio.CancelScope) -> None:
        """Ping every ``stream_ping_interval``; no pong within ``stream_ping_timeout`` and the client is dropped.

        Through the gate, the ping frame is written straight to the socket and any byte from the client within
        the timeout answers it (clients send nothing but pongs): no task waits on a pong, which made the pings
        of thousands of subscribers cost more than the fan-out.  Then the pings come every ``max(interval,
        timeout)``.  Otherwise (no gate, or the socket cannot take it now) trio-websocket pings and waits."""
        opts = self.options
        due = trio.current_time() + opts.stream_ping_interval
        while True:
            await trio.sleep_until(due)
            sent = trio.current_time()
            due = sent + opts.stream_ping_interval
            gate = self.gate
            written = Written.REFUSED if gate is None or ws.closed is not None else gate.write_now(_PING)
            if gate is not None and written in (Written.WHOLE, Written.BEGUN):
                if written is Written.BEGUN:
                    self.hub.fanout.unpark(self)  # only begun: the task finishes it, as a begun message
                await trio.sleep(opts.stream_ping_timeout)
                if gate.heard < sent:
                    log.info("stream: %s did not answer a ping in %ss: dropped", self.remote, opts.stream_ping_timeout)
                    raise _Drop
                continue
            with trio.move_on_after(opts.stream_ping_timeout) as waited:
                try:
                    await ws.ping()
                except ConnectionClosed:
                    scope.cancel()
                    return
            if waited.cancelled_caught:
                log.info("stream: %s did not answer a ping in %ss: dropped", self.remote, opts.stream_ping_timeout)
                raise _Drop


# ---------------------------------------------------------------------- routing


def _parse_index(raw: str) -> int | None:
    if raw == "":
        return None
    try:
        index = int(raw)
    except ValueError:
        raise HTTPError(400, f"Invalid index: {raw!r} is not a number") from None
    if index < 0:
        raise HTTPError(400, f"Invalid index: {raw!r} is negative")
    return index


def _parse_filter(ctx: Ctx) -> Filter:
    query = ctx.request.query
    pattern = query.get("status")
    try:
        status = re.compile(pattern) if pattern else None
    except re.error as exc:
        raise HTTPError(400, f"Invalid status regexp {pattern!r}: {exc}") from None
    return Filter(status=status, dc=query.get("dc").lower())


def open_stream(ctx: Ctx) -> _Subscriber:
    """Validate a stream request before the handshake: bad parameters are a plain 400 with the reason."""
    request = ctx.request
    origin = request.header("origin")
    if origin and origin.split("://", 1)[-1].rstrip("/") != request.header("host"):
        # Browsers let any page open a websocket anywhere: only our own page (same host) may read the cluster.
        raise HTTPError(403, f"cross-origin stream refused: Origin {origin} is not this agent")
    return _Subscriber(
        table=ctx.api.table,
        options=ctx.options,
        where=_parse_filter(ctx),
        resume=_parse_index(request.query.get("index")),
        remote=request.remote,
    )


async def not_upgraded(ctx: Ctx) -> None:
    """A plain GET of the stream: 400 with the reason (the upgrade is handled before routing)."""
    raise HTTPError(400, NOT_UPGRADED)


ROUTES = (Route(STREAM_PATH, ("GET",), not_upgraded),)
SOCKETS = (SocketRoute(STREAM_PATH, open_stream),)
