"""What the HTTP handlers may ask of the running agent: the seam between agent/http and the supervisor.

agent/http depends on this Protocol, never on the supervisor or protocol/, so it can be tested against a small
agent built on the real MemberTable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.acl.agent_tokens import TokenStore
    from agent.config import AgentConfig
    from agent.coordinate_book import CoordinateBook
    from agent.event_log import EventLog
    from agent.events import UserEvent
    from agent.logstream import LogHub
    from agent.members import Member, MemberTable
    from agent.metrics import Metrics
    from agent.server.access import StoreAccess
    from agent.server.acl_resolver import TokenResolver
    from agent.services.manager import ServiceManager
    from protocol.keymanager import KeyQueryDone


class JoinError(Exception):
    """No address of a join answered; the message names each address and its error."""


class AgentAPI(Protocol):
    config: AgentConfig
    node_id: str
    table: MemberTable
    started: float
    #: This agent's services and checks (agent.services.manager.ServiceManager); None in agents without them.
    services: ServiceManager | None
    #: The servers' state store (KV, sessions, txn, catalog registrations) as this agent reaches it: a server's
    #: own StoreService, a client's forwarding to the servers (agent/server/access.py).
    store_access: StoreAccess
    #: Who a request's token is (agent/server/acl_resolver.py): every HTTP endpoint, the stream and DNS ask it.
    acl: TokenResolver
    #: The agent's log records for /v1/agent/monitor (agent.logstream.LogHub).
    logs: LogHub
    #: The agent's metrics registry (agent.metrics.Metrics): /v1/agent/metrics, and what the parts count.
    metrics: Metrics
    #: The last user events this agent accepted (Consul's ring of 256), for /v1/event/list.
    events: EventLog
    #: The LAN members' network coordinates from this agent's Serf, published for /v1/coordinate and ?near.
    coordinates: CoordinateBook
    #: The agent's own ACL tokens (agent.acl.agent_tokens.TokenStore): ``default`` for requests without one.
    acl_tokens: TokenStore

    async def join(self, addrs: list[str]) -> int:
        """Join through each address; the number that answered, or JoinError when none did."""
        ...

    async def leave(self) -> None:
        """Leave gracefully; the process then exits 0."""
        ...

    async def force_leave(self, node: str, prune: bool) -> None: ...

    async def reload(self) -> list[str]:
        """Re-read the config (raises ConfigError); what changed."""
        ...

    async def keyring_operation(self, operation: str, key: str = "", relay_factor: int = 0) -> KeyQueryDone:
        """A Serf key query (install-key, use-key, remove-key, list-keys) on the LAN pool, aggregated.

        Raises KeyringError for a malformed key, TimeoutError if no aggregate came back at all.
        """
        ...

    async def server_rpc(self, method: str, args: dict[str, Any], *, stale: bool = False) -> Any:
        """A server RPC answered by the Raft leader (agent/server/rpc.py): forwarded to it unless we are it, held
        for the next leader within Consul's RPC hold.  LookupError("No cluster leader") without a leader by then;
        agent.server.rpc.RPCError with the leader's text.  ``stale``: any server answers from its own state."""
        ...

    async def fire_event(self, event: UserEvent) -> None:
        """Broadcast a validated user event over LAN Serf as Consul does; ValueError beyond Serf's size limit.
        Returns once this agent's own list shows the event (if its filters take this agent), so fire-then-list
        reads its write."""
        ...

    def self_member(self) -> Member: ...

    def stats(self) -> dict[str, dict[str, str]]: ...
