"""``/v1/agent/*``: the local agent's own view (members, self) and its membership actions (consul-compat 1.2.6-8).

These are agent-local: they answer with or without a leader.  Actions answer 200 with an empty body (never 204:
py-consul checks ``code == 200``); their failures are 500 with the agent's message.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.api import JoinError
from agent.catalog.query import agent_node_meta, version_of
from agent.durations import go_duration
from agent.filtering.consul_types import SERF_MEMBER
from agent.http.errors import HTTPError, bad_request
from agent.http.filtering import FilterSpec
from agent.http.routes import EMPTY, Ctx, Route
from agent.http.views import member_json

__all__ = ["ROUTES", "self_json"]

log = logging.getLogger("agent.http")

BUILD_DATE = "1970-01-01T00:00:01Z"  # Consul's value when the build sets none
ALL_SEGMENTS = "_all"


async def agent_members(ctx: Ctx) -> list[dict[str, Any]] | None:
    """GET /v1/agent/members: the LAN pool, left and failed members included until reaped; sorted by name.

    ``wan`` counts only with a value.  There is no WAN pool here: a client answers ``null`` (as Consul), a server
    an empty list.  ``segment`` is accepted and ignored for the LAN (CE has one segment).
    """
    q = ctx.request.query
    wan = bool(q.get("wan"))
    if wan and q.get("segment") not in ("", ALL_SEGMENTS):
        raise bad_request("Cannot provide a segment with wan=true")
    if wan:
        return [] if ctx.api.config.server else None
    members = sorted(ctx.api.table.current.members.values(), key=lambda m: m.name)
    return [member_json(m) for m in members]


def _debug_config(ctx: Ctx) -> dict[str, Any]:
    """A sanitized runtime config with Consul's key names, for the fields this agent has."""
    c = ctx.api.config
    ports = c.ports
    return {
        "AdvertiseAddrLAN": c.advertise_addr,
        "BindAddr": c.bind_addr,
        "Bootstrap": c.bootstrap,
        "BootstrapExpect": c.bootstrap_expect,
        "ClientAddrs": [c.client_addr],
        "DNSDomain": c.domain,
        "DNSPort": ports.dns,
        "DataDir": c.data_dir or "",
        "Datacenter": c.datacenter,
        "DevMode": c.dev,
        "EncryptKey": "hidden" if c.encrypt else "",  # Consul's sanitizer hides secrets that are set
        "EncryptVerifyIncoming": c.encrypt_verify_incoming,
        "EncryptVerifyOutgoing": c.encrypt_verify_outgoing,
        "HTTPPort": ports.http,
        "LeaveOnTerm": c.leave_on_terminate,
        "Logging": {"LogJSON": c.log_json, "LogLevel": c.log_level.upper()},
        "NodeID": ctx.api.node_id,
        "NodeMeta": dict(sorted(c.node_meta.items())),
        "NodeName": c.node_name,
        "PrimaryDatacenter": c.datacenter,
        "ReconnectTimeoutLAN": go_duration(c.reconnect_timeout),
        "RejoinAfterLeave": c.rejoin_after_leave,
        "RetryJoinIntervalLAN": go_duration(c.retry_interval),
        "RetryJoinLAN": list(c.retry_join),
        "RetryJoinMaxAttemptsLAN": c.retry_max,
        "SerfPortLAN": ports.serf_lan,
        "SerfPortWAN": ports.serf_wan,
        "ServerMode": c.server,
        "ServerPort": ports.server,
        "SkipLeaveOnInt": c.skip_leave_on_interrupt,
        "StartJoinAddrsLAN": list(c.start_join),
        "UIConfig": {"Enabled": c.ui},
    }


def _own_coordinate(api: Any) -> dict[str, Any] | None:
    coord = api.coordinates.live().get(api.config.node_name)
    return coord.to_json() if coord is not None else None


def self_json(ctx: Ctx) -> dict[str, Any]:
    """The /v1/agent/self object: Config, DebugConfig, Coord (Serf's live one; null when disabled), Member, Stats,
    Meta."""
    api = ctx.api
    config = api.config
    member = api.self_member()
    stats = api.stats()
    build = stats.get("build", {})
    tag_version, _, tag_revision = member.tags.get("build", "").partition(":")
    return {
        "Config": {
            "Datacenter": config.datacenter,
            "PrimaryDatacenter": config.datacenter,
            "NodeName": config.node_name,
            "NodeID": api.node_id,
            "Revision": build.get("revision") or tag_revision,
            "Server": config.server,
            "Version": build.get("version") or tag_version or version_of(member),
            "BuildDate": BUILD_DATE,
        },
        "DebugConfig": _debug_config(ctx),
        "Coord": _own_coordinate(api),
        "Member": member_json(member),
        "Stats": stats,
        "Meta": agent_node_meta(member, config.node_meta),
    }


async def agent_self(ctx: Ctx) -> dict[str, Any]:
    """GET /v1/agent/self."""
    return self_json(ctx)


async def agent_join(ctx: Ctx) -> Any:
    """PUT /v1/agent/join/:address[?wan=1]: 500 with the join error text when no address answered."""
    address = ctx.request.path.removeprefix("/v1/agent/join/")
    if ctx.request.query.get("wan"):
        if not ctx.api.config.server:
            raise HTTPError(500, "Must be a server to join WAN cluster")
        raise HTTPError(500, "WAN federation is not supported by this agent")
    log.info("agent: (LAN) joining: lan_addresses=[%s]", address)
    try:
        await ctx.api.join([address])
    except JoinError as exc:  # an expected failure: Consul's text, logged as one line (no traceback)
        raise HTTPError(500, str(exc)) from None
    return EMPTY


async def agent_leave(ctx: Ctx) -> Any:
    """PUT /v1/agent/leave: leave gracefully; the agent then shuts down (the 200 still goes out)."""
    await ctx.api.leave()
    return EMPTY


async def agent_force_leave(ctx: Ctx) -> Any:
    """PUT /v1/agent/force-leave/:node[?prune][?wan]; a node no member has is a 500 ``agent: No node found with
    name '<node>'``, as Consul's agent checks its LAN members first (py-consul's own suite, run against Consul,
    expects it)."""
    node = ctx.request.path.removeprefix("/v1/agent/force-leave/")
    q = ctx.request.query
    if q.has("wan"):
        if not ctx.api.config.server:
            raise HTTPError(500, "Must be a server to force-leave a node from the WAN cluster")
        raise HTTPError(500, "WAN federation is not supported by this agent")
    log.info("agent: Force leaving node: node=%s", node)
    try:
        await ctx.api.force_leave(node, q.has("prune"))
    except LookupError as exc:
        log.error("agent: error removing node: error=%s", exc)
        raise HTTPError(500, str(exc)) from None
    return EMPTY


async def agent_reload(ctx: Ctx) -> Any:
    """PUT /v1/agent/reload: re-read the config files; a config error is a 500 with its message."""
    changes = await ctx.api.reload()
    log.info("agent: Reloaded configuration: %s", ", ".join(changes) or "no changes")
    return EMPTY


ROUTES = (
    Route("/v1/agent/members", ("GET",), agent_members, FilterSpec(SERF_MEMBER)),
    Route("/v1/agent/self", ("GET",), agent_self),
    Route("/v1/agent/join/", ("PUT",), agent_join),
    Route("/v1/agent/leave", ("PUT",), agent_leave),
    Route("/v1/agent/force-leave/", ("PUT",), agent_force_leave),
    Route("/v1/agent/reload", ("PUT",), agent_reload),
)
