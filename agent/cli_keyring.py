"""`consul keyring` and `consul keygen`: the gossip encryption keys (command/keyring, command/keygen)."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

from agent.cli_client import ClientError
from agent.cli_command import HTTP_FLAGS, Command, _client_or_error
from agent.cli_output import _err, _out
from agent.goflags import Flag


def run_keyring(values: dict[str, Any], args: list[str]) -> int:
    """`consul keyring -list | -list-primary | -install KEY | -use KEY | -remove KEY` (command/keyring)."""
    actions = [name for name in ("list", "list-primary") if values.get(name)]
    actions += [name for name in ("install", "use", "remove") if values.get(name)]
    if len(actions) > 1:
        _err("Only a single action is allowed")
        return 1
    if not actions:
        _err(COMMANDS["keyring"].help())
        return 1
    try:
        relay = int(values.get("relay-factor", "0") or "0")
    except ValueError:
        _err(f"invalid value {values.get('relay-factor')!r} for flag -relay-factor: parse error")
        return 1
    if not 0 <= relay <= 5:
        _err("Error parsing relay factor: Relay factor must be in range: [0, 5]")
        return 1
    local_only = bool(values.get("local-only"))
    if local_only and actions[0] != "list":
        _err("Error validating local-only: local-only can only be set for list requests")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    params = {"relay-factor": str(relay)} if relay else {}
    action = actions[0]
    try:
        if action in ("list", "list-primary"):
            if local_only:
                params["local-only"] = "true"
            primary = action == "list-primary"
            _out(f"==> Gathering installed {'primary ' if primary else ''}encryption keys...")
            responses = client.get_json("/v1/operator/keyring", params)
            for response in responses or []:
                _out(_format_keyring(response, response.get("PrimaryKeys" if primary else "Keys") or {}))
            return 0
        method, banner = {
            "install": ("POST", "==> Installing new gossip encryption key..."),
            "use": ("PUT", "==> Changing primary gossip encryption key..."),
            "remove": ("DELETE", "==> Removing gossip encryption key..."),
        }[action]
        _out(banner)
        client.request(method, "/v1/operator/keyring", params, json.dumps({"Key": values[action]}).encode())
    except ClientError as err:
        _err(f"error: {err}")
        return 1
    return 0


def _format_keyring(response: Mapping[str, Any], keys: Mapping[str, int]) -> str:
    """command/keyring formatResponse: a blank line, the pool, member messages, then `  KEY [n/N]` per key."""
    pool = "WAN" if response.get("WAN") else f"{response.get('Datacenter', '')} (LAN)"
    if response.get("Segment") and not response.get("WAN"):
        pool += f" [{response['Segment']}]"
    lines = ["", pool + ":"]
    lines += [f"  {node}: {msg}" for node, msg in sorted((response.get("Messages") or {}).items())]
    lines += [f"  {key} [{num}/{response.get('NumNodes', 0)}]" for key, num in sorted(keys.items())]
    return "\n".join(lines)


def run_keygen(values: dict[str, Any], args: list[str]) -> int:
    """`consul keygen`: 32 random bytes, base64 (an AES-256 gossip key)."""
    if args:
        _err("Error: keygen takes no arguments")
        return 1
    _out(base64.b64encode(os.urandom(32)).decode())
    return 0


KEYRING_FLAGS = (
    Flag("install", "Install a new encryption key. This will broadcast the new key to all members in the "
         "cluster.", placeholder="<string>"),
    Flag("use", "Change the primary encryption key, which is used to encrypt messages. The key must already "
         "be installed before this operation can succeed.", placeholder="<string>"),
    Flag("remove", "Remove the given key from the cluster. This operation may only be performed on keys which "
         "are not currently the primary key.", placeholder="<string>"),
    Flag("list", "List all keys currently in use within the cluster.", is_bool=True),
    Flag("list-primary", "List all primary keys currently in use within the cluster.", is_bool=True),
    Flag("relay-factor", "Setting this to a non-zero value will cause nodes to relay their response to the "
         "operation through this many randomly-chosen other nodes in the cluster. The maximum allowed value is "
         "5.", default="0", placeholder="<int>"),
    Flag("local-only", "Setting this to true will force the keyring query to only hit local servers (no WAN "
         "traffic). This flag can only be set for list queries.", is_bool=True),
)  # fmt: skip


COMMANDS: dict[str, Command] = {
    "keyring": Command(
        "keyring",
        "Manages gossip layer encryption keys",
        "Usage: consul keyring [options]\n\n"
        "  Manages encryption keys used for gossip messages. Gossip encryption is\n"
        "  optional. When enabled, this command may be used to examine active encryption\n"
        "  keys in the cluster, add new keys, and remove old ones. When combined, this\n"
        "  functionality provides the ability to perform key rotation cluster-wide,\n"
        "  without disrupting the cluster.\n\n"
        "  All operations performed by this command can only be run against server nodes\n"
        "  in Consul; this agent answers them on any node.\n\n"
        "  All variations of the keyring command return 0 if all nodes reply and there\n"
        "  are no errors. If any node fails to reply or reports failure, the exit code\n"
        "  will be 1.",
        (*HTTP_FLAGS, *KEYRING_FLAGS),
        run_keyring,
    ),
    "keygen": Command(
        "keygen",
        "Generates a new encryption key",
        "Usage: consul keygen\n\n"
        "  Generates a new 32-byte encryption key that can be used to configure the\n"
        "  agent to encrypt traffic. The output of this command is already\n"
        "  in the proper format that the agent expects.",
        (),
        run_keygen,
    ),
}
