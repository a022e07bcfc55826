"""A test AgentAPI for agent/http: the real MemberTable and AgentConfig, recorded actions, and HTTP helpers.

Nothing here mocks the member table: tests change membership with ``FakeAgent.apply`` (the table's own ``apply``
followed by the real ``agent.consul.leader_of``, as the supervisor does), so the HTTP layer reads real snapshots.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import h11
import requests
import trio
import trio.testing

from agent.acl.agent_tokens import AgentTokens, TokenStore
from agent.api import JoinError
from agent.config import AgentConfig, ConfigError, Ports
from agent.consul import leader_of
from agent.coordinate_book import CoordinateBook
from agent.http.options import HttpOptions
from agent.http.server import serve_http
from agent.members import STATUS_ALIVE, Member, MemberTable

SERVER_ID = "40e4a748-2192-161a-0510-9bf59fe950b5"
CLIENT_ID = "6a2d4c59-9a3e-4fb0-8a2b-1f2f0c5e7d11"


def member(
    name: str,
    addr: str,
    *,
    server: bool = False,
    node_id: str = "",
    status: int = STATUS_ALIVE,
    dc: str = "dc1",
    build: str = "1.20.1:2c7bc1d0",
) -> Member:
    """A member with Consul's LAN tags (consul-compat §7): a server's or a client's set."""
    tags = {
        "role": "consul" if server else "node",
        "dc": dc,
        "segment": "",
        "id": node_id or f"id-{name}",
        "vsn": "2",
        "vsn_min": "2",
        "vsn_max": "3",
        "build": build,
    }
    if server:
        tags.update(
            {
                "port": "8300",
                "raft_vsn": "3",
                "bootstrap": "1",
                "acls": "0",
                "ft_fs": "1",
                "ft_si": "1",
                "wan_join_port": "8302",
            }
        )
    return Member(name=name, addr=addr, port=8301, tags=tags, status=status)


@attrs.define
class FakeAgent:
    """What agent/http may ask of the running agent (agent.api.AgentAPI), with the calls recorded."""

    config: AgentConfig = attrs.Factory(lambda: AgentConfig(node_name="node1", server=True, bootstrap=True))
    node_id: str = SERVER_ID
    table: MemberTable = attrs.Factory(MemberTable)
    started: float = attrs.Factory(time.time)
    joins: list[list[str]] = attrs.Factory(list)
    join_error: str | None = None
    leaves: int = 0
    force_leaves: list[tuple[str, bool]] = attrs.Factory(list)
    reloads: int = 0
    reload_error: str | None = None
    stats_error: str | None = None  # stats() raises RuntimeError(this): a handler bug
    left: trio.Event = attrs.Factory(trio.Event)
    on_leave: Callable[[], None] | None = None
    #: The servers' store as the endpoints reach it: tests give `store_direct.direct_service()` (a real
    #: StoreService over a real StateStore, replication left out).
    store_access: Any = None
    #: Published coordinates (agent.coordinate_book); disabled unless a test gives it a source.
    coordinates: CoordinateBook = attrs.Factory(CoordinateBook)
    #: The agent's own ACL tokens, from the config's acl.tokens (not persisted).
    acl_tokens: TokenStore = attrs.Factory(lambda self: TokenStore(AgentTokens.from_config(self.config.acl.tokens)),
                                           takes_self=True)
    _acl: Any = None

    @property
    def acl(self) -> Any:
        """The token resolver a supervisor builds (agent/server/acl_resolver.py): from the store when it is a
        server's StoreService, else through ``store_access`` as a client's."""
        if self._acl is None:
            from agent.server.acl_resolver import TokenResolver

            store = getattr(self.store_access, "store", None)
            config = self.config
            self._acl = TokenResolver(config.acl, node_name=config.node_name, datacenter=config.datacenter,
                                      access=self.store_access, tokens=lambda: self.acl_tokens.current,
                                      local_state=None if store is None else (lambda: store.current))
        return self._acl

    def apply(self, kind: str, m: Member) -> None:
        """A membership event as the supervisor feeds it: the table, then the computed leader."""
        self.table.apply(kind, m)
        leader, servers = leader_of(
            self.table.current.members, max(1, self.config.bootstrap_expect), dc=self.config.datacenter
        )
        self.table.set_leader(leader, servers)

    def add_self(self) -> Member:
        m = member(self.config.node_name, "10.0.0.11", server=self.config.server, node_id=self.node_id)
        self.apply("member-join", m)
        return m

    async def join(self, addrs: list[str]) -> int:
        await trio.lowlevel.checkpoint()
        self.joins.append(list(addrs))
        if self.join_error:
            raise JoinError(self.join_error)
        return len(addrs)

    async def leave(self) -> None:
        await trio.lowlevel.checkpoint()
        self.leaves += 1
        self.left.set()
        if self.on_leave is not None:
            self.on_leave()

    async def force_leave(self, node: str, prune: bool) -> None:
        await trio.lowlevel.checkpoint()
        self.force_leaves.append((node, prune))
        if node not in self.table.current.members:
            raise LookupError(f"agent: No node found with name '{node}'")

    async def reload(self) -> list[str]:
        await trio.lowlevel.checkpoint()
        self.reloads += 1
        if self.reload_error:
            raise ConfigError(self.reload_error)
        return []

    def self_member(self) -> Member:
        return self.table.current.members[self.config.node_name]

    def stats(self) -> dict[str, dict[str, str]]:
        if self.stats_error:
            raise RuntimeError(self.stats_error)
        snap = self.table.current
        return {
            "agent": {"check_monitors": "0", "check_ttls": "0", "checks": "0", "services": "0"},
            "build": {"prerelease": "", "revision": "2c7bc1d0", "version": "1.20.1", "version_metadata": ""},
            "consul": {"server": str(self.config.server).lower(), "leader_addr": snap.leader},
            "serf_lan": {"members": str(len(snap.members))},
        }


def client_config(**kw: Any) -> AgentConfig:
    return AgentConfig(node_name="client1", server=False, **kw)


def server_config(**kw: Any) -> AgentConfig:
    kw.setdefault("bootstrap", True)
    return AgentConfig(node_name="node1", server=True, ports=Ports(), **kw)


# ---------------------------------------------------------------------- running


def run(fn: Callable[..., Awaitable[None]], *args: Any, mock_clock: bool = False) -> None:
    """trio.run for tests (pytest-trio is not installed); ``mock_clock`` only where no real I/O waits."""
    clock = trio.testing.MockClock(autojump_threshold=0) if mock_clock else None
    trio.run(functools.partial(fn, *args), clock=clock)


@asynccontextmanager
async def serving(api: FakeAgent, **options: Any) -> AsyncIterator[tuple[str, int]]:
    """serve_http on 127.0.0.1, port 0; yields the bound (host, port); cancelled on exit."""
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(functools.partial(serve_http, api, "127.0.0.1", 0, options=HttpOptions(**options)))
        yield bound
        nursery.cancel_scope.cancel()


@attrs.frozen
class Reply:
    """A parsed response: status, headers as sent (name -> value, names case preserved), body."""

    status: int
    headers: dict[str, str]
    body: bytes
    raw_header_names: tuple[str, ...]

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


async def read_replies(stream: trio.abc.ReceiveStream, count: int, *, method: bytes = b"GET") -> list[Reply]:
    """Read ``count`` responses off a client stream with an h11 client machine (our server speaks to clients)."""
    conn = h11.Connection(h11.CLIENT)
    # h11's client side insists on having sent the requests; replay a matching number of dummy ones.
    replies: list[Reply] = []
    for _ in range(count):
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        status = 0
        headers: dict[str, str] = {}
        names: list[str] = []
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                for k, v in event.headers.raw_items():
                    headers[k.decode()] = v.decode()
                    names.append(k.decode())
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise EOFError("connection closed before a whole response")
        replies.append(Reply(status, headers, bytes(body), tuple(names)))
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            break
        conn.start_next_cycle()
    return replies


def request_bytes(method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    h = {"Host": "127.0.0.1"}
    if body or method in ("PUT", "POST"):
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode() + body


async def fetch(
    addr: tuple[str, int], method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Reply:
    """One request on a fresh connection."""
    stream = await trio.open_tcp_stream(*addr)
    async with stream:
        await stream.send_all(request_bytes(method, target, body, headers))
        return (await read_replies(stream, 1, method=method.encode()))[0]


def settled_index(url: str) -> int:
    """The table's index once it has stopped moving (the agent publishes its own record after start)."""
    index = int(requests.get(url, timeout=5).headers["X-Consul-Index"])
    for _ in range(20):
        after = int(requests.get(f"{url}?index={index}&wait=1s", timeout=5).headers["X-Consul-Index"])
        if after == index:
            return index
        index = after
    raise AssertionError(f"the index of {url} never settled")
