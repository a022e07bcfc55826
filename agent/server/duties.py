"""The leader's standing duties on the state store, each a proposal like any write (Consul's leader loop):

* **session TTLs** (``session_ttl.go``): renewals are not in the log, so the leader keeps ``2 x TTL``
  deadlines (`state.leader.SessionTimers`), re-armed in full whenever it takes office, and destroys a session
  whose deadline passed;
* **health invalidation** (Consul's ``sessionCreateTxn`` binding plus the catalog's check updates): a session
  on an agent's node is destroyed when one of its checks is critical or gone (serfHealth turns critical when
  the member fails), and every session of an agent node that left the catalog goes with the node.  Sessions on
  registered (external) nodes are handled inside the apply, where those checks live;
* **shadowed registrations** (docs/state.md rule 1): a node registered through the catalog API under the name
  of an agent's node is deregistered (its sessions kept: they are the agent's), as Consul's anti-entropy
  removes what an agent's node holds that the agent does not;
* **ACL initialisation** (``leader.go`` ``initializeACLs``), with ACLs enabled in the primary datacenter:
  once per term, after the leader applied an entry of its own term (so it sees every earlier commit), it
  proposes what `state.acl_leader.initial_commands` says is missing (the built-in policies, the anonymous token,
  the ``initial_management`` token), each once: the apply refuses a secret already in use, so a race between
  two leaders cannot store a second copy;
* **tombstone GC** (``tombstone_gc.go``): a deleted key's tombstone is kept ``tombstone_ttl`` (15 min) so a
  blocking reader of a deleted prefix sees the index move; the leader remembers when each index was applied,
  every ``granularity`` (30 s), and reaps the tombstones older than the TTL.

It runs on every server and does nothing while not the leader.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs
import trio

from agent.acl.builtin import is_reserved

from .access import CommandFailed, NoLeader, StoreUnavailable
from .state.acl_leader import initial_commands, is_uuid
from .state.commands import Command, InvalidateCheck, InvalidateNode, SessionDestroy, TombstoneReap
from .state.leader import shadowed_registrations
from .state.tables import State, node_key

if TYPE_CHECKING:
    from agent.config import AgentConfig

    from .service import StoreService

log = logging.getLogger("triumvir.server.duties")

TOMBSTONE_TTL = 15 * 60.0  # Consul's tombstone_ttl default
TOMBSTONE_GRANULARITY = 30.0  # Consul's tombstone_ttl_granularity default
POLL = 1.0  # seconds between looks when nothing pokes (health changes arrive by poke too)


def invalidations(state: State, agent_nodes: Mapping[str, Mapping[str, str]]) -> list[Command]:
    """What health says must go, for sessions on agents' nodes: the node gone -> `InvalidateNode`; a bound
    check critical or missing -> `InvalidateCheck` (one per (node, check))."""
    out: dict[tuple[str, str], Command] = {}
    for session in state.sessions.values():
        key = node_key(session.node)
        if key in state.nodes:
            continue  # a registered node: its checks are in the store, the apply invalidates
        checks = agent_nodes.get(key)
        if checks is None:
            out.setdefault((key, ""), InvalidateNode(node=session.node))
            continue
        for check in session.check_ids():
            if checks.get(check, "critical") == "critical":
                out.setdefault((key, check), InvalidateCheck(node=session.node, check_id=check))
    return list(out.values())


#: Consul's log lines for what initializeACLs created, by command.
_ACL_LOG = {
    "ACLPolicySet": "Created ACL built-in policy",
    "ACLTokenSet": "Created ACL token from configuration",
    "ACLBootstrap": "Bootstrapped ACL initial management token from configuration",
}


def new_token_uuid(state: State) -> str:
    """``lib.GenerateUUID(checkTokenUUID)``: a UUID that is neither an accessor nor a secret in use, nor reserved."""
    while True:
        candidate = str(uuid.uuid4())
        if not (candidate in state.acl_tokens or candidate in state.acl_secrets or is_reserved(candidate)):
            return candidate


@attrs.frozen
class ACLInit:
    """What the leader initialises ACLs with (None in `LeaderDuties`: ACLs off, or not the primary datacenter)."""

    initial_management: str = attrs.field(default="", repr=False)


def acl_init_for(config: AgentConfig) -> ACLInit | None:
    """A server initialises ACLs when it leads with ACLs enabled in the primary datacenter (``initializeACLs``;
    a secondary datacenter replicates them instead, which triumvir does not do)."""
    if not config.acl.enabled or config.primary_datacenter != config.datacenter:
        return None
    return ACLInit(config.acl.tokens.initial_management)


class LeaderDuties:
    def __init__(self, service: StoreService, *, tombstone_ttl: float = TOMBSTONE_TTL,
                 granularity: float = TOMBSTONE_GRANULARITY, acl: ACLInit | None = None) -> None:
        self.service = service
        self.acl = acl
        self._acl_ready = False  # this term's initialisation was applied (reset when we stop leading)
        self.tombstone_ttl = tombstone_ttl
        self.granularity = granularity
        self._wake = trio.Event()
        self._marks: deque[tuple[float, int]] = deque()  # (trio time, applied index), one per granularity
        self._leading = False

    def poke(self) -> None:
        """Health or membership changed: look now."""
        self._wake.set()

    timers_changed = poke

    async def run(self) -> None:
        while True:
            await self._round()
            timeout = POLL
            deadline = self.service.timers.next_deadline()
            if deadline is not None:
                timeout = min(timeout, max(0.0, (deadline - time.time_ns()) / 1e9))
            with trio.move_on_after(timeout):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _round(self) -> None:
        service = self.service
        if not service.replica.is_leader():
            self._leading = False
            self._acl_ready = False
            self._marks.clear()
            return
        if not self._leading:
            self._leading = True
            service.timers.arm_all(service.store.current, time.time_ns())
            log.info("leader: armed %d session TTL timers", len(service.timers.deadlines))
        if self.acl is not None and not self._acl_ready and service.replica.leader_ready():
            self._acl_ready = await self._initialize_acls(self.acl)
        state = service.store.current
        work: list[Command] = [SessionDestroy(id=i) for i in service.timers.expired(state, time.time_ns())]
        # the gossip catalog's view costs O(members): only build it when a session or registration can need it
        agent_nodes = service.agent_nodes() if state.sessions or state.nodes else {}
        work += invalidations(state, agent_nodes)
        work += shadowed_registrations(state, agent_nodes)
        reap = self._reap_index(state.applied)
        if reap and any(index <= reap for index in state.tombstones.values()):
            work.append(TombstoneReap(index=reap))
        for command in work:
            try:
                await service.apply(command)
            except (CommandFailed, NoLeader, StoreUnavailable) as err:
                log.info("leader: %s not applied: %s", type(command).__name__, err)
                return
            log.info("leader: applied %s", command)

    async def _initialize_acls(self, acl: ACLInit) -> bool:
        """Propose what the ACL system lacks; True once nothing is missing (False: retry next round)."""
        service = self.service
        log.info("leader: initializing acls")
        if acl.initial_management and not is_uuid(acl.initial_management):
            log.warning("leader: Configuring a non-UUID management token is deprecated")
        commands = initial_commands(service.store.current, initial_management=acl.initial_management,
                                    new_uuid=lambda: new_token_uuid(service.store.current))
        for command in commands:
            try:
                await service.apply(command)
            except (CommandFailed, NoLeader, StoreUnavailable) as err:
                log.warning("leader: initializing acls: %s not applied: %s", type(command).__name__, err)
                return False
            log.info("leader: %s", _ACL_LOG[type(command).__name__])
        log.info("leader: acls initialized (%d created or updated)", len(commands))
        return True

    def _reap_index(self, applied: int) -> int:
        """Mark ``applied`` once per granularity; the highest marked index older than the TTL, once."""
        now = trio.current_time()
        if not self._marks or now - self._marks[-1][0] >= self.granularity:
            self._marks.append((now, applied))
        reap = 0
        while self._marks and now - self._marks[0][0] >= self.tombstone_ttl:
            reap = self._marks.popleft()[1]
        return reap
