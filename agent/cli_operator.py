"""`consul operator raft list-peers | remove-peer` (command/operator/raft)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.cli_client import ClientError
from agent.cli_command import HTTP_FLAGS, Command, _client_or_error, run_command
from agent.cli_output import _err, _out, columnize
from agent.goflags import Flag


def run_operator(values: dict[str, Any], args: list[str]) -> int:
    """`consul operator raft list-peers | remove-peer`: the subcommands are commands of their own."""
    sub = OPERATOR_RAFT_COMMANDS.get(" ".join(args[:2]))
    if sub is None:
        _err(COMMANDS["operator"].help())
        return 1
    given = [f"-{name}" if value is True else f"-{name}={value}" for name, value in values.items()]
    return run_command(sub, [*given, *args[2:]])


def raft_peer_rows(config: Mapping[str, Any]) -> list[list[str]]:
    """command/operator/raft/listpeers: Node, ID, Address, State, Voter, RaftProtocol; header first."""
    rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
    for s in config.get("Servers") or []:
        state = "leader" if s.get("Leader") else "follower"
        rows.append([str(s.get("Node", "")), str(s.get("ID", "")), str(s.get("Address", "")), state,
                     "true" if s.get("Voter") else "false", str(s.get("ProtocolVersion") or "<=1")])
    return rows


def run_list_peers(values: dict[str, Any], args: list[str]) -> int:
    client = _client_or_error(values)
    if client is None:
        return 1
    try:
        config = client.get_json("/v1/operator/raft/configuration", {"stale": ""} if values.get("stale") else {})
    except ClientError as err:
        _err(f"Error getting peers: {err}")
        return 1
    _out(columnize(raft_peer_rows(config or {})))
    return 0


def run_remove_peer(values: dict[str, Any], args: list[str]) -> int:
    address, server_id = values.get("address", ""), values.get("id", "")
    if not address and not server_id:
        _err("Error removing peer: an address or id is required for the peer to remove")
        return 1
    if address and server_id:
        _err("Error removing peer: cannot give both an address and id")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    params = {"id": server_id} if server_id else {"address": address}
    try:
        client.request("DELETE", "/v1/operator/raft/peer", params)
    except ClientError as err:
        _err(f"Error removing peer: {err}")
        return 1
    _out(f'Removed peer with id "{server_id}"' if server_id else f'Removed peer with address "{address}"')
    return 0


OPERATOR_RAFT_COMMANDS: dict[str, Command] = {
    "raft list-peers": Command(
        "list-peers",
        "Display the current Raft peer configuration",
        "Usage: consul operator raft list-peers [options]\n\n  Displays the current Raft peer configuration.",
        (*HTTP_FLAGS, Flag("stale", "If this flag is set, any server can service the request and return the "
                                    "peer list (ours: the leader still answers).", is_bool=True)),
        run_list_peers,
    ),
    "raft remove-peer": Command(
        "remove-peer",
        "Remove a Consul server from the Raft configuration",
        "Usage: consul operator raft remove-peer [options]\n\n"
        "  Remove the Consul server with given -id from the Raft configuration.",
        (*HTTP_FLAGS,
         Flag("address", "Remove a Consul server with given address from the Raft configuration.",
              placeholder="<string>"),
         Flag("id", "Remove a Consul server with given id from the Raft configuration.", placeholder="<string>")),
        run_remove_peer,
    ),
}

COMMANDS: dict[str, Command] = {
    "operator": Command(
        "operator",
        "Provides cluster-level tools for Consul operators",
        "Usage: consul operator <subcommand> [options]\n\n"
        "  Provides cluster-level tools for Consul operators:\n\n"
        "      raft list-peers     Display the current Raft peer configuration\n"
        "      raft remove-peer    Remove a Consul server from the Raft configuration",
        HTTP_FLAGS,
        run_operator,
    ),
}
