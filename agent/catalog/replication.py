"""Catalog replication by anti-entropy, sans-IO: records in, messages and record changes out.

Each node owns one :class:`NodeCatalog` and gives it a version that only grows (``max(previous + 1, wall-clock
ms)``, so it grows across restarts too).  Three paths move records, cheapest first:

1. **Announce**: the owner puts its version and its record's digest in its gossip tags (``tcv``,
   ``version:digest``); ``poll_announce`` says when (changes within ``announce_delay`` are coalesced into one tag
   update, since each costs a gossip broadcast).
2. **Fetch**: a peer that sees a ``tcv`` newer than its copy asks the owner (``Request``) and gets ``Records``;
   a fetch that gets no answer within ``fetch_timeout`` is retried while the owner is alive.
3. **Repair**: every ``digest_interval`` (stretched as memberlist stretches push/pull beyond 32 nodes) a
   ``Digest`` goes to one random capable peer; the receiver fetches from their owners what it is behind on and
   pushes back its own record if the sender's copy is older, so a missed announcement heals within a round or two.

**Who may write a record** (issue 16, item 4): a record is accepted only from its owner (the app message's
sender is the record's node), and only if it is exactly what the owner announced in its own gossip (version and
digest equal the ``tcv`` tag).  Records are never relayed, so a sender that cannot forge the owner's gossip
cannot change what anyone holds about it; every refusal is counted and noted (``poll_notes``).

Membership decides what may exist: a node that left (or was reaped) is dropped at once and records about it are
refused until it joins again; a failed node's record stays (readers show its ``serfHealth`` critical).  Only
members that advertise ``tcv`` are ever sent a message: a real Consul/serf node never sees one.

Shape as protocol.Node: inputs are methods taking ``now``; outputs are polled (``poll_send``, ``poll_changes``,
``poll_announce``, ``poll_timeout``).  No trio, no sockets, no clock of its own, randomness passed in.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping

import attrs

from agent.catalog import messages
from agent.catalog.messages import Digest, MessageError, Records, Request
from agent.catalog.query import PRESENT
from agent.catalog.record import MAX_VERSION, Announcement, CheckRecord, NodeCatalog, ServiceRecord
from protocol.serf import MemberStatus
from protocol.suspicion import push_pull_scale

__all__ = ["Replicator", "ReplicatorConfig", "ReplicatorStats"]

OUTBID_HEADROOM = 2**32  # a claim about our own record must leave this many versions free below MAX_VERSION
MAX_NOTES = 64


@attrs.frozen
class ReplicatorConfig:
    digest_interval: float = 30.0  # the profile's push/pull interval
    fetch_timeout: float = 2.0
    fetch_attempts: int = 3
    announce_delay: float = 0.05


@attrs.define
class ReplicatorStats:
    sent: int = 0
    received: int = 0
    malformed: int = 0
    fetches: int = 0
    fetch_retries: int = 0
    records_accepted: int = 0
    records_refused: int = 0
    claims_refused: int = 0
    digests: int = 0


@attrs.define
class _Fetch:
    version: int  # at least this version is wanted
    deadline: float
    attempts: int = 1


@attrs.define
class _Peer:
    status: int
    announced: Announcement | None  # the tcv tag: None = not a triumvir catalog peer


class Replicator:
    """The replicated catalog of one agent (its own record included) and the exchange that keeps it whole."""

    def __init__(
        self,
        name: str,
        *,
        rng: random.Random,
        now: float,
        config: ReplicatorConfig | None = None,
        version_floor: int = 0,
    ) -> None:
        self.name = name
        self.rng = rng
        self.config = config or ReplicatorConfig()
        self.stats = ReplicatorStats()
        self.records: dict[str, NodeCatalog] = {}
        self._version_floor = version_floor
        self._peers: dict[str, _Peer] = {}
        self._fetches: dict[str, _Fetch] = {}
        self._outbox: deque[tuple[str, bytes]] = deque()
        self._changes: dict[str, NodeCatalog | None] = {}
        self._announce_at: float | None = None
        self._notes: deque[str] = deque(maxlen=MAX_NOTES)
        self._next_digest = now + self.rng.uniform(0.5, 1.0) * self.config.digest_interval

    # ------------------------------------------------------------------ our own record

    @property
    def local(self) -> NodeCatalog | None:
        return self.records.get(self.name)

    @property
    def local_version(self) -> int:
        local = self.local
        return local.version if local is not None else self._version_floor

    def set_local(
        self,
        now: float,
        wall_ms: int,
        services: tuple[ServiceRecord, ...],
        checks: tuple[CheckRecord, ...],
        meta: Mapping[str, str] | None = None,
    ) -> NodeCatalog:
        """Our services/checks changed: a new version (unless nothing did), announced after ``announce_delay``."""
        candidate = NodeCatalog(self.name, 0, services, checks, meta or {})
        old = self.local
        if old is not None and candidate.same_content(old):
            return old
        record = attrs.evolve(candidate, version=max(self.local_version + 1, wall_ms))
        self._store(record)
        self._schedule_announce(now)
        return record

    def _schedule_announce(self, now: float) -> None:
        if self._announce_at is None:
            self._announce_at = now + self.config.announce_delay

    def _outbid(self, now: float, sender: str, claimed: int) -> None:
        """A peer holds a version of our record at least as new as ours (we lost our state): jump past it.

        Only a present catalog member is believed: anyone else could make us re-announce at will."""
        local = self.local
        if local is None or claimed < local.version:
            return
        if self._announced(sender) is None:
            self.stats.claims_refused += 1
            self._note(f"refused a claim about our record from {sender!r}, not a catalog member")
            return
        if claimed > MAX_VERSION - OUTBID_HEADROOM:
            self.stats.claims_refused += 1
            self._note(f"refused a claim that our record is at version {claimed} (beyond any real version)")
            return
        self._store(attrs.evolve(local, version=claimed + 1))
        self._schedule_announce(now)

    # ------------------------------------------------------------------ membership

    def member(self, now: float, name: str, status: int, announced: Announcement | None) -> None:
        """A member event (join/update/leave/failed) with the member's ``tcv`` tag, if any."""
        if name == self.name:
            return
        if status not in PRESENT:
            self.member_gone(name)
            self._peers[name] = _Peer(status, announced)
            return
        self._peers[name] = _Peer(status, announced)
        if announced is not None and announced.version > self._have(name):
            self._fetch(now, name, announced.version, ask=name)

    def member_gone(self, name: str) -> None:
        """Left or reaped: the record goes at once (Consul deregisters a left node), pending fetches too."""
        self._peers.pop(name, None)
        self._fetches.pop(name, None)
        if self.records.pop(name, None) is not None:
            self._changes[name] = None

    def _have(self, name: str) -> int:
        record = self.records.get(name)
        return record.version if record is not None else 0

    def _present(self, name: str) -> bool:
        peer = self._peers.get(name)
        return peer is not None and peer.status in PRESENT

    def _capable_alive(self) -> list[str]:
        return sorted(n for n, p in self._peers.items() if p.status == MemberStatus.ALIVE and p.announced is not None)

    def _announced(self, name: str) -> Announcement | None:
        peer = self._peers.get(name)
        return peer.announced if peer is not None and peer.status in PRESENT else None

    # ------------------------------------------------------------------ messages

    def handle_message(self, now: float, sender: str, payload: bytes) -> None:
        """An app message from ``sender``; malformed ones are counted and dropped."""
        try:
            message = messages.decode(payload)
        except MessageError as exc:
            self.stats.malformed += 1
            self._note(f"dropped a malformed message from {sender!r}: {exc}")
            return
        self.stats.received += 1
        match message:
            case Digest():
                self._on_digest(now, sender, dict(message.versions))
            case Request():
                self._on_request(sender, message.nodes)
            case Records():
                for record in message.records:
                    self._accept(now, sender, record)

    def _on_digest(self, now: float, sender: str, versions: dict[str, int]) -> None:
        """The sender's view: fetch from each owner what we are behind on (as far as the owner announced it),
        and send back our own record (and the sender's, so it can jump past it) where the sender is behind."""
        if versions.get(self.name, 0) > self.local_version:
            self._outbid(now, sender, versions[self.name])
        for node, version in sorted(versions.items()):
            announced = self._announced(node)
            if node == self.name or announced is None or version <= self._have(node):
                continue
            if announced.version > self._have(node) and self._peers[node].status == MemberStatus.ALIVE:
                self._fetch(now, node, announced.version, ask=node)
        newer = [
            self.records[node]
            for node in (self.name, sender)
            if node in self.records and self.records[node].version > versions.get(node, 0)
        ]
        if newer:
            self._send(sender, Records(tuple(newer)))

    def _on_request(self, sender: str, nodes: tuple[str, ...]) -> None:
        local = self.local
        if self.name in nodes and local is not None:  # only our own: nobody accepts a relayed record
            self._send(sender, Records((local,)))

    def _accept(self, now: float, sender: str, record: NodeCatalog) -> None:
        if record.node == self.name:
            local_version = self.local_version
            if record.version > local_version or (
                record.version == local_version and not record.same_content(self.local)
            ):
                self._outbid(now, sender, record.version)
            return
        if record.version < self._have(record.node) or record == self.records.get(record.node):
            return  # old news (a late or duplicate answer): nothing to refuse
        refusal = self._refusal(sender, record)
        if refusal is not None:
            self.stats.records_refused += 1
            self._note(f"refused the record of {record.node!r} at version {record.version} from {sender!r}: "
                       f"{refusal}")  # fmt: skip
            return
        self.stats.records_accepted += 1
        self._store(record)
        fetch = self._fetches.get(record.node)
        if fetch is not None and record.version >= fetch.version:
            del self._fetches[record.node]

    def _refusal(self, sender: str, record: NodeCatalog) -> str | None:
        """Why ``record`` from ``sender`` must not be stored (None: it is the owner's own, as announced)."""
        if sender != record.node:
            return "only its owner may send it"
        announced = self._announced(record.node)
        if announced is None:
            return "its owner is not a present catalog member"
        if record.version != announced.version:
            return f"its owner announced version {announced.version}"
        if not announced.matches(record):
            return "its content is not what its owner announced"
        return None

    def _note(self, text: str) -> None:
        self._notes.append(text)

    def _store(self, record: NodeCatalog) -> None:
        self.records[record.node] = record
        self._changes[record.node] = record

    def _fetch(self, now: float, node: str, version: int, *, ask: str) -> None:
        fetch = self._fetches.get(node)
        if fetch is not None and fetch.version >= version and now < fetch.deadline:
            return  # already asked for that much
        self.stats.fetches += 1
        self._fetches[node] = _Fetch(version, now + self.config.fetch_timeout)
        self._send(ask, Request((node,)))

    def _send(self, node: str, message: messages.Message) -> None:
        self.stats.sent += 1
        self._outbox.append((node, messages.encode(message)))

    # ------------------------------------------------------------------ time

    def handle_timeout(self, now: float) -> None:
        """Retry overdue fetches; send the periodic digest when due."""
        for node, fetch in list(self._fetches.items()):
            if now < fetch.deadline:
                continue
            if fetch.attempts >= self.config.fetch_attempts or not self._present(node):
                del self._fetches[node]  # the digest rounds will repair it
                continue
            if self._peers[node].status != MemberStatus.ALIVE:
                del self._fetches[node]  # only the owner may answer, and it is not there
                continue
            fetch.attempts += 1
            fetch.deadline = now + self.config.fetch_timeout
            self.stats.fetch_retries += 1
            self._send(node, Request((node,)))
        if now >= self._next_digest:
            peers = self._capable_alive()
            self._next_digest = now + push_pull_scale(self.config.digest_interval, len(peers) + 1)
            if peers:
                self.stats.digests += 1
                versions = tuple(sorted((n, r.version) for n, r in self.records.items()))
                self._send(self.rng.choice(peers), Digest(versions))

    def poll_timeout(self) -> float | None:
        deadlines = [self._next_digest, *(f.deadline for f in self._fetches.values())]
        if self._announce_at is not None:
            deadlines.append(self._announce_at)
        return min(deadlines)

    # ------------------------------------------------------------------ outputs

    def poll_send(self) -> tuple[str, bytes] | None:
        """The next (node, payload) to send as an app message."""
        return self._outbox.popleft() if self._outbox else None

    def poll_changes(self) -> dict[str, NodeCatalog | None]:
        """Records stored (or removed: None) since the last call, by node."""
        changes, self._changes = self._changes, {}
        return changes

    def poll_announce(self, now: float) -> Announcement | None:
        """Our version and digest, when it is time to (re)publish them in the ``tcv`` tag."""
        if self._announce_at is None or now < self._announce_at:
            return None
        self._announce_at = None
        local = self.local
        return Announcement.of(local) if local is not None else None

    def poll_notes(self) -> list[str]:
        """What was dropped or refused since the last call (the runner logs it); at most MAX_NOTES are kept."""
        notes = list(self._notes)
        self._notes.clear()
        return notes
