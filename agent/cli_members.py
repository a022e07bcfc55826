"""`consul members`, `join`, `leave` and `force-leave`: the cluster's membership as the agent sees it and changes it
(consul-compat §4.2 for the members table)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.cli_client import ClientError, path_escape
from agent.cli_command import HTTP_FLAGS, PARTITION_FLAG, SERVER_FLAGS, Command, _client_or_error, _simple_put
from agent.cli_output import _err, _out, columnize, go_v, tcp_addr
from agent.goflags import Flag
from protocol.serf_status import MemberStatus

ALL_SEGMENTS = "_all"


def members_rows(
    members: list[dict[str, Any]], status_re: re.Pattern[str], segment: str, detailed: bool
) -> list[list[str]]:
    """The members table as Consul's command/members builds it: tags completed, filtered, sorted; header first.

    Returns only the header when nothing matched (the caller then exits 2 without printing).
    """
    kept = []
    for raw in members:
        tags = dict(raw.get("Tags") or {})
        _synthesise_tags(tags, segment)
        member = {**raw, "Tags": tags}
        if status_re.search(_status_word(member)):
            kept.append(member)
    kept.sort(key=_member_sort_key)
    if detailed:
        header = ["Node", "Address", "Status", "Tags"]
        return [header] + [_detailed_row(m) for m in kept]
    header = ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]
    return [header] + [_standard_row(m) for m in kept]


def _synthesise_tags(tags: dict[str, str], segment: str) -> None:
    """Step 1 of consul-compat §4.2: `ap=default`; `segment=<all>` for servers, `<default>` when empty."""
    if not tags.get("ap"):
        tags["ap"] = "default"
    if tags["ap"] == "default":
        if segment == ALL_SEGMENTS and tags.get("role") == "consul":
            tags["segment"] = "<all>"
        elif not tags.get("segment"):
            tags["segment"] = "<default>"
    else:
        tags["segment"] = ""


def member_status_word(status: Any) -> str:
    """The CLI's word for a Serf status integer (none, alive, leaving, left, failed; else unknown)."""
    try:
        return str(MemberStatus(status))
    except (ValueError, TypeError):
        return "unknown"


def _status_word(member: Mapping[str, Any]) -> str:
    return member_status_word(member.get("Status", 0))


def _member_sort_key(member: Mapping[str, Any]) -> tuple[bool, bool, str, str, str]:
    """ByMemberNamePartitionAndSegment: servers, default partition, segment, partition, name (byte order)."""
    tags = member["Tags"]
    partition = tags.get("ap", "")
    return (
        tags.get("role") != "consul",
        partition not in ("", "default"),
        tags.get("segment", ""),
        partition,
        member.get("Name", ""),
    )


def _address(member: Mapping[str, Any]) -> str:
    return tcp_addr(member.get("Addr") or "", int(member.get("Port") or 0))


def _standard_row(member: Mapping[str, Any]) -> list[str]:
    tags = member["Tags"]
    kind = {"consul": "server", "node": "client"}.get(tags.get("role", ""), "unknown")
    row = [member.get("Name", ""), _address(member), _status_word(member), kind]
    if kind == "unknown":
        return [*row, "", "", "", "", ""]
    build = tags.get("build", "")
    build = build.split(":", 1)[0] if build else "< 0.3"
    return [*row, build, tags.get("vsn", ""), tags.get("dc", ""), tags.get("ap", ""), tags.get("segment", "")]


def _detailed_row(member: Mapping[str, Any]) -> list[str]:
    tags = member["Tags"]
    joined = ",".join(f"{k}={tags[k]}" for k in sorted(tags))
    return [member.get("Name", ""), _address(member), _status_word(member), joined]


def run_members(values: dict[str, Any], args: list[str]) -> int:
    """`consul members`: GET /v1/agent/members?segment=_all, table on stdout, exit 2 when nothing matches."""
    try:
        status_re = re.compile(values.get("status", ".*"))
    except re.error as err:
        _err(f"Failed to compile status regexp: error parsing regexp: {err}: `{values.get('status')}`")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    segment = values.get("segment", ALL_SEGMENTS)
    params = {"segment": segment}
    if values.get("wan"):
        params["wan"] = "1"
    if values.get("filter"):
        params["filter"] = values["filter"]
    try:
        members = client.get_json("/v1/agent/members", params) or []
        if not isinstance(members, list):
            raise ClientError("json: cannot unmarshal object into Go value of type []*api.AgentMember")
    except ClientError as err:
        _err(f"Error retrieving members: {err}")
        return 1
    rows = members_rows(members, status_re, segment, bool(values.get("detailed")))
    if len(rows) == 1:
        return 2
    _out(columnize(rows))
    return 0


def run_join(values: dict[str, Any], args: list[str]) -> int:
    """`consul join`: one PUT per address; N counts the addresses that succeeded; exit 1 only if none did."""
    if not args:
        return COMMANDS["join"].usage_error("At least one address to join must be specified.")
    client = _client_or_error(values)
    if client is None:
        return 1
    params = {"wan": "1"} if values.get("wan") else None
    joins = 0
    for addr in args:
        try:
            client.request("PUT", "/v1/agent/join/" + path_escape(addr), params)
        except ClientError as err:
            _err(f"Error joining address '{addr}': {err}")
        else:
            joins += 1
    if joins == 0:
        _err("Failed to join any nodes.")
        return 1
    _out(f"Successfully joined cluster by contacting {joins} nodes.")
    return 0


def run_leave(values: dict[str, Any], args: list[str]) -> int:
    """`consul leave`: PUT /v1/agent/leave; the agent leaves gracefully and exits."""
    if args:
        _err(f"Error found unexpected args: {go_v(args)}")
        _out(COMMANDS["leave"].help())
        return 1
    return _simple_put(values, "/v1/agent/leave", None, "Error leaving", "Graceful leave complete")


def run_force_leave(values: dict[str, Any], args: list[str]) -> int:
    """`consul force-leave [-prune] [-wan] NODE`: no output on success."""
    if len(args) != 1:
        return COMMANDS["force-leave"].usage_error("A single node name must be specified to force leave.")
    params = {}
    if values.get("prune"):
        params["prune"] = "1"
    if values.get("wan"):
        params["wan"] = "1"
    path = "/v1/agent/force-leave/" + path_escape(args[0])
    return _simple_put(values, path, params, "Error force leaving", None)


MEMBERS_FLAGS = (
    Flag("detailed", "Provides detailed information about nodes.", is_bool=True),
    Flag("wan", "If the agent is in server mode, this can be used to return the other peers in the WAN pool.", True),
    Flag(
        "status",
        "If provided, output is filtered to only nodes matching the regular expression for status.",
        default=".*",
        placeholder="<string>",
    ),
    Flag(
        "segment",
        "(Enterprise-only) If provided, output is filtered to only nodes in the given segment.",
        default=ALL_SEGMENTS,
        placeholder="<string>",
    ),
    Flag("filter", "Filter to use with the request", placeholder="<string>"),
)

COMMANDS: dict[str, Command] = {
    "members": Command(
        "members",
        "Lists the members of a Consul cluster",
        "Usage: consul members [options]\n\n  Outputs the members of a running Consul agent.",
        HTTP_FLAGS + PARTITION_FLAG + MEMBERS_FLAGS,
        run_members,
    ),
    "join": Command(
        "join",
        "Tell Consul agent to join cluster",
        "Usage: consul join [options] address ...\n\n"
        '  Tells a running Consul agent (with "consul agent") to join the cluster\n'
        "  by specifying at least one existing member.",
        (*HTTP_FLAGS, Flag("wan", "Joins a server to another server in the WAN pool.", is_bool=True)),
        run_join,
    ),
    "leave": Command(
        "leave",
        "Gracefully leaves the Consul cluster and shuts down",
        "Usage: consul leave [options]\n\n  Causes the agent to gracefully leave the Consul cluster and shutdown.",
        HTTP_FLAGS,
        run_leave,
    ),
    "force-leave": Command(
        "force-leave",
        'Forces a member of the cluster to enter the "left" state',
        "Usage: consul force-leave [options] name\n\n"
        '  Forces a member of a Consul cluster to enter the "left" state. Note\n'
        "  that if the member is still actually alive, it will eventually rejoin\n"
        '  the cluster. This command is most useful for cleaning out "failed" nodes\n'
        "  that are never coming back. If you do not force leave a failed node,\n"
        "  Consul will attempt to reconnect to those failed nodes for some period of\n"
        "  time before eventually reaping them.",
        (
            *HTTP_FLAGS,
            *SERVER_FLAGS,
            Flag("prune", "Remove agent completely from list of members", is_bool=True),
            Flag("wan", "Exclude agent from the WAN list of members", is_bool=True),
        ),
        run_force_leave,
        uses_server_flags=True,
    ),
}
