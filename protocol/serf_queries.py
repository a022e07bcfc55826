"""Serf's queries: the query clock and dedupe buffer, acks and answers, relays, and the key queries we ask.

A query is gossiped like a user event but asks for answers, sent straight back to the asker (serf's query.go,
handleQuery, relayResponse). triumvir answers what a serf agent without handlers answers: ``_serf_ping`` (its ack),
``_serf_conflict`` (a vote on a name) and the key operations of protocol/keymanager.py; it asks only key queries.
"""

from __future__ import annotations

import ipaddress
import re

from protocol.broadcast import BroadcastQueue
from protocol.go_msgpack import go_str
from protocol.keymanager import (
    KEY_OPERATIONS,
    KeyQuery,
    KeyResponse,
    KeyringChanged,
    answer_key_query,
    encode_key_request,
    encode_key_response,
    key_query_timeout,
    request_key,
)
from protocol.serf_core import LEVEL_DEBUG, LEVEL_ERROR, LEVEL_INFO, LEVEL_WARN, LTimeWindow, NodeGetter, SerfCore
from protocol.serf_events import Member, MemberStatus
from protocol.serf_members import MemberTable
from protocol.serf_messages import (
    QUERY_FLAG_ACK,
    ConflictResponse,
    MemberInfo,
    NodeFilter,
    QueryMessage,
    QueryResponseMessage,
    RelayMessage,
    SerfDecodeError,
    decode_filter,
    encode_message,
)

# Queries whose name starts with this are serf's own (serf internal_query.go).
INTERNAL_QUERY_PREFIX = "_serf_"


class Queries:
    """The queries one Serf has seen (to relay each once and answer it once) and the key queries it asked."""

    def __init__(self, core: SerfCore, table: MemberTable, node: NodeGetter) -> None:
        self._core = core
        self._table = table  # a conflict vote reports a member; relays go through live members
        self._node = node  # answers, acks and relays go out through it
        self.window = LTimeWindow(core, core.config.query_buffer, "query")
        self.clock = self.window.clock  # serf's queryClock
        self.buffer: dict[int, tuple[int, list[int]]] = {}  # slot -> (LTime, query ids)
        self.broadcasts = BroadcastQueue(core.config.retransmit_mult)
        self._key_queries: dict[tuple[int, int], KeyQuery] = {}  # (LTime, ID) -> the key query we asked
        self._key_handles = 0

    def deadlines(self) -> list[float]:
        """When each key query we asked times out."""
        return [q.deadline for q in self._key_queries.values()]

    def handle(self, msg: QueryMessage) -> bool:
        """serf's handleQuery: keep the clock, dedupe (so we relay each query once), ack when asked and answer
        the internal queries a serf agent without handlers answers (ping, conflict); others go unanswered."""
        slot = self.window.admit(msg.ltime, msg.name)
        if slot is None:
            return False
        seen = self.buffer.get(slot)
        if seen is not None and seen[0] == msg.ltime:
            if msg.id in seen[1]:
                return False
            seen[1].append(msg.id)
        else:
            self.buffer[slot] = (msg.ltime, [msg.id])
        rebroadcast = not msg.no_broadcast
        if not self._should_process_query(msg.filters):
            return rebroadcast  # not for us, but news: pass it on
        if msg.ack:
            self._respond(msg, QueryResponseMessage(msg.ltime, msg.id, self._core.name, QUERY_FLAG_ACK))
        if msg.name == INTERNAL_QUERY_PREFIX + "conflict":
            self._answer_conflict(msg)
        elif msg.name.startswith(INTERNAL_QUERY_PREFIX) and msg.name[len(INTERNAL_QUERY_PREFIX) :] in KEY_OPERATIONS:
            self._answer_key_query(msg)
        elif msg.name != INTERNAL_QUERY_PREFIX + "ping":  # a ping is answered by its ack alone
            self._core.diag(LEVEL_DEBUG, f"serf: query {msg.name!r} from {msg.source_node} not answered")
        return rebroadcast

    # ------------------------------------------------------------------ key queries (protocol/keymanager.py)

    def key_query(self, now: float, operation: str, key_b64: str = "", relay_factor: int = 0) -> int:
        """Ask every member to install, use, remove or list keys (serf's KeyManager); returns a handle.

        A ``KeyQueryDone`` event with that handle follows once every live member answered or the query timed
        out. A malformed key raises KeyringError before anything is sent.
        """
        key = request_key(operation, key_b64)
        if not 0 <= relay_factor <= 5:
            raise ValueError("relay factor must be in range: [0, 5]")
        config = self._core.config
        node = self._node()
        local = node.local
        num_nodes = node.num_alive()
        timeout = key_query_timeout(config.gossip_interval, config.query_timeout_mult, num_nodes)
        query = QueryMessage(
            ltime=self.clock.time(),
            id=self._core.rng.getrandbits(31),
            addr=ipaddress.ip_address(local.addr[0]).packed,
            port=local.addr[1],
            source_node=self._core.name,
            relay_factor=relay_factor,
            timeout=int(timeout * 1e9),
            name=INTERNAL_QUERY_PREFIX + operation,
            payload=encode_key_request(key),
        )
        raw = encode_message(query)
        if len(raw) > config.query_size_limit:
            raise ValueError(f"query exceeds limit of {config.query_size_limit} bytes")
        self.clock.increment()
        self._key_handles += 1
        pending = KeyQuery(self._key_handles, operation, query.ltime, query.id, now + timeout, KeyResponse(num_nodes))
        self._key_queries[(query.ltime, query.id)] = pending
        self.handle(query)  # we answer our own query too, as serf does
        self.broadcasts.queue(None, raw)
        self._finish_key_query_if_complete(pending)
        return pending.handle

    def _answer_key_query(self, msg: QueryMessage) -> None:
        operation = msg.name.removeprefix(INTERNAL_QUERY_PREFIX)
        overhead = len(encode_message(QueryResponseMessage(msg.ltime, msg.id, self._core.name, 0, b"")))
        answer, changed = answer_key_query(
            self._core.keyring, operation, msg.payload, self._core.config.query_response_size_limit - overhead
        )
        level = LEVEL_INFO if answer.result else LEVEL_WARN
        outcome = "" if answer.result else f": {answer.message}"
        self._core.diag(level, f"serf: received {operation} query from {msg.source_node}{outcome}", "key-query")
        if changed and self._core.keyring is not None:
            self._core.events.append(KeyringChanged(tuple(self._core.keyring.encoded())))
        payload = encode_key_response(answer)
        self._respond(msg, QueryResponseMessage(msg.ltime, msg.id, self._core.name, 0, payload))

    def handle_response(self, msg: QueryResponseMessage) -> None:
        pending = self._key_queries.get((msg.ltime, msg.id))
        if pending is None:
            self._core.diag(LEVEL_DEBUG, f"serf: reply for non-running query {msg.ltime}/{msg.id}")
            return
        if msg.flags & QUERY_FLAG_ACK:
            return
        warning = pending.add(msg.from_, msg.payload)
        if warning:
            self._core.diag(LEVEL_WARN, f"serf: {warning}", "key-query")
        self._finish_key_query_if_complete(pending)

    def _finish_key_query_if_complete(self, pending: KeyQuery) -> None:
        if pending.complete and self._key_queries.pop((pending.ltime, pending.id), None) is not None:
            self._core.events.append(pending.done())

    def expire(self, now: float) -> None:
        for key, pending in list(self._key_queries.items()):
            if now >= pending.deadline:
                del self._key_queries[key]
                self._core.events.append(pending.done())

    def _should_process_query(self, filters: tuple[bytes, ...]) -> bool:
        """serf's shouldProcessQuery: every filter must select us; an unreadable filter selects nobody."""
        for raw in filters:
            try:
                f = decode_filter(raw)
            except SerfDecodeError as exc:
                self._core.diag(LEVEL_WARN, f"serf: bad query filter: {exc}")
                return False
            if isinstance(f, NodeFilter):
                if self._core.name not in f.names:
                    return False
                continue
            try:
                if re.search(f.expr, self._core.tags.get(f.tag, "")) is None:  # Go's regexp.MatchString
                    return False
            except re.error as exc:
                self._core.diag(LEVEL_WARN, f"serf: failed to compile filter regex ({f.expr}): {exc}")
                return False
        return True

    def _answer_conflict(self, msg: QueryMessage) -> None:
        """Vote in a name conflict: tell the asker where we believe that member lives (serf handleConflict)."""
        name = go_str(msg.payload)
        if name == self._core.name:
            return
        ms = self._table.members.get(name)
        info = None if ms is None else _member_info(ms.snapshot())
        payload = encode_message(ConflictResponse(info))
        self._respond(msg, QueryResponseMessage(msg.ltime, msg.id, self._core.name, 0, payload))

    def _respond(self, msg: QueryMessage, resp: QueryResponseMessage) -> None:
        """Send a query response (or ack) straight to the asker, plus relay_factor copies through peers."""
        raw = encode_message(resp)
        limit = self._core.config.query_response_size_limit
        if len(raw) > limit:
            self._core.diag(LEVEL_ERROR, f"serf: query response of {len(raw)} bytes exceeds the limit of {limit}")
            return
        if msg.source_node == self._core.name and (msg.ltime, msg.id) in self._key_queries:
            self.handle_response(resp)  # our own query: serf sends itself a UDP packet, we skip the trip
            return
        try:
            dest = (_ip_text(msg.addr), msg.port)
        except ValueError as exc:
            self._core.diag(LEVEL_WARN, f"serf: query {msg.name!r} has a bad source address: {exc}")
            return
        self._node().send_best_effort(dest, raw, msg.source_node)
        self._relay_response(msg, raw)

    def _relay_response(self, msg: QueryMessage, inner: bytes) -> None:
        """serf's relayResponse: the same response through up to relay_factor random live v5 members."""
        if msg.relay_factor == 0 or len(self._table.members) < msg.relay_factor + 1:
            return
        raw = encode_message(RelayMessage(msg.addr, msg.port, msg.source_node, inner))
        if len(raw) > self._core.config.query_response_size_limit:
            self._core.diag(LEVEL_ERROR, "serf: relayed response exceeds the query response size limit")
            return
        relays = [
            ms.ident
            for name, ms in self._table.members.items()
            if name != self._core.name and ms.status == MemberStatus.ALIVE and ms.ident.protocol_max >= 5
        ]
        for m in self._core.rng.sample(relays, min(msg.relay_factor, len(relays))):
            self._node().send_best_effort((m.addr, m.port), raw, m.name)

    def handle_relay(self, msg: RelayMessage) -> None:
        """Forward a relayed query response to its destination (serf: SendToAddress)."""
        try:
            dest = (_ip_text(msg.dest_ip), msg.dest_port)
        except ValueError as exc:
            self._core.diag(LEVEL_ERROR, f"serf: bad relay destination for {msg.dest_name}: {exc}")
            return
        self._core.diag(LEVEL_DEBUG, f"serf: relaying response to {dest[0]}:{dest[1]}")
        self._node().send_best_effort(dest, msg.inner, msg.dest_name)


def _ip_text(ip: bytes) -> str:
    """net.IP bytes (4 or 16, v4-in-v6 mapped) as text."""
    if len(ip) == 16 and ip[:12] == b"\0" * 10 + b"\xff\xff":
        ip = ip[12:]
    return str(ipaddress.ip_address(ip))


def _member_info(m: Member) -> MemberInfo:
    """A Member as serf encodes it in a conflict response."""
    return MemberInfo(
        name=m.name,
        ip=ipaddress.ip_address(m.addr).packed,
        port=m.port,
        tags=dict(m.tags),
        status=int(m.status),
        protocol_min=m.protocol_min,
        protocol_max=m.protocol_max,
        protocol_cur=m.protocol_cur,
        delegate_min=m.delegate_min,
        delegate_max=m.delegate_max,
        delegate_cur=m.delegate_cur,
    )
