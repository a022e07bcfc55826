"""`acl bootstrap | token ... | policy ... | role ...`: Consul's command/acl, with its flags, texts and exit codes.

Each command is one or two calls to ``/v1/acl/*`` through the shared client (agent/cli_client.py ``make_client``:
the ``-token``/``-token-file`` flags and ``CONSUL_HTTP_TOKEN``/``CONSUL_HTTP_TOKEN_FILE``), then Consul's output
(agent/cli_acl_format.py: the pretty forms of ``command/acl/{token,policy,role}/formatter.go`` or, with
``-format json``, the API objects indented by four spaces in the Go API struct's field order).  IDs may be given as a
unique prefix (Consul's ``GetTokenAccessorIDFromPartial`` and friends; ``anonymous`` and ``global-management`` by name).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.cli_acl_format import (
    POLICY_FIELDS,
    POLICY_LIST_FIELDS,
    ROLE_FIELDS,
    TOKEN_FIELDS,
    TOKEN_LIST_FIELDS,
    as_json,
    format_policy,
    format_policy_list,
    format_role,
    format_role_list,
    format_token,
    format_token_list,
    go_time_v,
)
from agent.cli_client import AgentClient, ClientError, path_escape
from agent.cli_command import HTTP_FLAGS, PARTITION_FLAG, SERVER_FLAGS, Command, _client_or_error
from agent.cli_kv import load_data_source
from agent.cli_output import _err, _out
from agent.durations import parse_duration
from agent.goflags import Flag
from agent.gostrings import go_json_text, go_quote

__all__ = ["COMMANDS", "format_policy", "format_role", "format_token", "go_time_v"]

ANONYMOUS_TOKEN_ID = "00000000-0000-0000-0000-000000000002"
GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
FORMATS = ("pretty", "json")

# --------------------------------------------------------------------------------------------------------------
# Helpers: IDs from prefixes, identities, the shared run shape


class _Failed(Exception):
    """A command's failure: its text is printed on stderr and the exit code is 1."""


def _call(what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ClientError as err:
        raise _Failed(f"{what}: {err}") from None


def _from_partial(client: AgentClient, partial: str, kind: str) -> str:
    """``Get{Token,Policy,Role}IDFromPartial``: a full (36 character) ID as given, else the one listed ID with
    that prefix; ClientError with Consul's texts."""
    if kind == "token" and partial == "anonymous":
        return ANONYMOUS_TOKEN_ID
    if kind == "policy" and partial == "global-management":
        return GLOBAL_MANAGEMENT_ID
    if len(partial) == 36:
        return partial
    path, key = {"token": ("/v1/acl/tokens", "AccessorID"), "policy": ("/v1/acl/policies", "ID"),
                 "role": ("/v1/acl/roles", "ID")}[kind]  # fmt: skip
    found = ""
    for entry in client.get_json(path) or ():
        if str(entry.get(key, "")).startswith(partial):
            if found:
                raise ClientError(f"Partial {kind} ID is not unique")
            found = entry[key]
    if not found:
        raise ClientError(f"No such {kind} ID with prefix: {partial}")
    return found


def _by_name(client: AgentClient, name: str, kind: str) -> str:
    """``Get{Policy,Role}IDByName``."""
    if not name:
        raise ClientError(f"No {kind} name specified")
    reply = client.call("GET", f"/v1/acl/{kind}/name/{path_escape(name)}")
    # The api's requireNotFoundOrOK: a 404 is "none" (and an older agent's 403 "ACL not found" the same)
    if reply.status == 404 or (reply.status == 403 and b"ACL not found" in reply.body):
        raise ClientError(f"No such {kind} with name {name}")
    return str(reply.ok().json()["ID"])


def service_identities(raw: Sequence[str]) -> list[dict[str, Any]]:
    """``acl.ExtractServiceIdentities``: ``NAME`` or ``NAME:DC1,DC2``."""
    out: list[dict[str, Any]] = []
    for item in raw:
        parts = item.split(":")
        if len(parts) == 1:
            out.append({"ServiceName": parts[0]})
        elif len(parts) == 2:
            out.append({"ServiceName": parts[0], "Datacenters": parts[1].split(",")})
        else:
            raise _Failed(f"Malformed -service-identity argument: {go_quote(item)}")
    return out


def node_identities(raw: Sequence[str]) -> list[dict[str, Any]]:
    """``acl.ExtractNodeIdentities``: ``NAME:DC``."""
    out = []
    for item in raw:
        parts = item.split(":")
        if len(parts) != 2:
            raise _Failed(f"Malformed -node-identity argument: {go_quote(item)}")
        out.append({"NodeName": parts[0], "Datacenter": parts[1]})
    return out


def _format(values: Mapping[str, Any]) -> str:
    fmt = values.get("format", "pretty")
    if fmt not in FORMATS:
        raise _Failed(f"Unknown format: {fmt}")
    return str(fmt)


def _show(values: Mapping[str, Any], obj: Any, pretty: Callable[[Any, bool], str], fields: Sequence[str],
          *, many: bool = False) -> None:  # fmt: skip
    """The formatter's output through ``cli.Ui.Info`` (a newline added), when not empty."""
    if _format(values) == "json":
        text = as_json(obj, fields, many=many)
    else:
        text = pretty(obj or [] if many else obj, bool(values.get("meta")))
    if text != "":
        _out(text)


def _command(run: Callable[[AgentClient, dict[str, Any], list[str]], None],
             check: Callable[[dict[str, Any]], None] | None = None) -> Callable[[dict[str, Any], list[str]], int]:
    """A command's Run: the flag checks that need no agent, the client (``Error connecting to Consul agent``),
    then ``run``; a `_Failed` is its text on stderr and exit 1."""

    def main(values: dict[str, Any], args: list[str]) -> int:
        try:
            if check is not None:
                check(values)
            client = _client_or_error(values)
            if client is None:
                return 1
            run(client, values, args)
        except _Failed as err:
            _err(str(err))
            return 1
        return 0

    return main


def _read_token(client: AgentClient, accessor: str) -> dict[str, Any]:
    return dict(client.get_json(f"/v1/acl/token/{accessor}"))


def _put_json(client: AgentClient, path: str, body: Any) -> Any:
    return client.call("PUT", path, body=go_json_text(body).encode()).ok().json()


def _rules(values: Mapping[str, Any]) -> str:
    try:
        return load_data_source(values.get("rules", ""), sys.stdin.buffer.read).decode("utf-8", "replace")
    except ValueError as err:
        raise _Failed(f"Error loading rules: {err}") from None


# --------------------------------------------------------------------------------------------------------------
# acl bootstrap


def _bootstrap(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    body = None
    if len(args) > 1:
        raise _Failed("Too many arguments: expected 0 or 1")
    if args:
        try:
            secret = load_data_source(args[0] if args[0] in ("-",) or args[0].startswith("@") else "@" + args[0],
                                      sys.stdin.buffer.read).decode().strip()
        except ValueError as err:
            raise _Failed(f"Error reading bootstrap secret: {err}") from None
        body = go_json_text({"BootstrapSecret": secret}).encode()
    token = _call("Failed ACL bootstrapping", lambda: client.call("PUT", "/v1/acl/bootstrap", body=body).ok().json())
    _show(values, token, format_token, TOKEN_FIELDS)


# --------------------------------------------------------------------------------------------------------------
# acl token ...


def _links_of(client: AgentClient, names: Sequence[str], ids: Sequence[str], kind: str) -> list[dict[str, str]]:
    links = [{"Name": name} for name in names]
    for partial in ids:
        try:
            links.append({"ID": _from_partial(client, partial, kind)})
        except ClientError as err:
            raise _Failed(f"Error resolving {kind} ID {partial}: {err}") from None
    return links


def _check_token_create(values: dict[str, Any]) -> None:
    if not any(values.get(k) for k in ("policy-name", "policy-id", "role-name", "role-id", "service-identity",
                                       "node-identity")):  # fmt: skip
        raise _Failed("Cannot create a token without specifying -policy-name, -policy-id, -role-name, -role-id, "
                      "-service-identity, or -node-identity at least once")  # fmt: skip


def _token_create(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    body: dict[str, Any] = {"Description": values.get("description", ""), "Local": bool(values.get("local")),
                            "AccessorID": values.get("accessor", ""), "SecretID": values.get("secret", "")}
    ttl = values.get("expires-ttl", 0)
    if ttl:
        body["ExpirationTTL"] = ttl
    body["ServiceIdentities"] = service_identities(values.get("service-identity", []))
    body["NodeIdentities"] = node_identities(values.get("node-identity", []))
    body["Policies"] = _links_of(client, values.get("policy-name", []), values.get("policy-id", []), "policy")
    body["Roles"] = _links_of(client, values.get("role-name", []), values.get("role-id", []), "role")
    token = _call("Failed to create new token", lambda: _put_json(client, "/v1/acl/token", body))
    _show(values, token, format_token, TOKEN_FIELDS)


def _token_list(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    tokens = _call("Failed to retrieve the token list", lambda: client.get_json("/v1/acl/tokens"))
    _show(values, tokens, format_token_list, TOKEN_LIST_FIELDS, many=True)


def _check_token_read(values: dict[str, Any]) -> None:
    if not values.get("id") and not values.get("self"):
        raise _Failed("Must specify the -id parameter")


def _token_read(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    if values.get("self"):
        token = _call("Error reading token", lambda: client.get_json("/v1/acl/token/self"))
    else:
        accessor = _call("Error determining token ID", lambda: _from_partial(client, values["id"], "token"))
        token = _call(f"Error reading token {go_quote(accessor)}", lambda: _read_token(client, accessor))
    _show(values, token, format_token, TOKEN_FIELDS)


def _accessor(values: dict[str, Any], missing: str) -> str:
    accessor = values.get("accessor-id") or values.get("id", "")
    if not accessor:
        raise _Failed(missing)
    if not values.get("accessor-id"):
        _err("Use the -accessor-id parameter to specify token by Accessor ID")
    return str(accessor)


def _token_update(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    partial = _accessor(values, "Cannot update a token without specifying the -accessor-id parameter")
    accessor = _call("Error determining token ID", lambda: _from_partial(client, partial, "token"))
    token = _call("Error when retrieving current token", lambda: _read_token(client, accessor))
    if values.get("description"):
        token["Description"] = values["description"]
    for kind, key in (("policy", "Policies"), ("role", "Roles")):
        names, ids = values.get(f"{kind}-name", []), values.get(f"{kind}-id", [])
        more_names, more_ids = values.get(f"append-{kind}-name", []), values.get(f"append-{kind}-id", [])
        if (names or ids) and (more_names or more_ids):
            plural = "policies" if kind == "policy" else "roles"
            raise _Failed(f"Cannot combine the use of {kind}-id/{kind}-name flags with append- variants. To set or "
                          f"overwrite existing {plural}, use -{kind}-id or -{kind}-name. To append to existing "
                          f"{plural}, use -append-{kind}-id or -append-{kind}-name.")  # fmt: skip
        if names or ids:
            token[key] = _links_of(client, names, ids, kind)
        elif more_names or more_ids:
            token[key] = [*(token.get(key) or []), *_links_of(client, more_names, more_ids, kind)]
    for flag, key, parse in (("service-identity", "ServiceIdentities", service_identities),
                             ("node-identity", "NodeIdentities", node_identities)):  # fmt: skip
        given, more = values.get(flag, []), values.get(f"append-{flag}", [])
        if given and more:
            raise _Failed(f"Cannot combine the use of {flag} flag with append-{flag}. To set or overwrite existing "
                          f"{flag.replace('-', ' ')}s, use -{flag}. To append to existing "
                          f"{flag.replace('-', ' ')}s, use -append-{flag}.")  # fmt: skip
        if more:
            token[key] = [*(token.get(key) or []), *parse(more)]
        else:
            token[key] = parse(given)
    updated = _call(f"Failed to update token {accessor}",
                    lambda: _put_json(client, f"/v1/acl/token/{accessor}", token))  # fmt: skip
    _show(values, updated, format_token, TOKEN_FIELDS)


def _token_delete(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    partial = _accessor(values, "Must specify the -accessor-id parameter")
    accessor = _call("Error determining token ID", lambda: _from_partial(client, partial, "token"))
    _call(f"Error deleting token {go_quote(accessor)}",
          lambda: client.request("DELETE", f"/v1/acl/token/{accessor}"))  # fmt: skip
    _out(f"Token {go_quote(accessor)} deleted successfully")


def _token_clone(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    partial = _accessor(values, "Cannot clone a token without specifying the -accessor-id parameter")
    accessor = _call("Error determining token ID", lambda: _from_partial(client, partial, "token"))
    body = {"Description": values.get("description", "")}
    token = _call("Error cloning token", lambda: _put_json(client, f"/v1/acl/token/{accessor}/clone", body))
    _show(values, token, format_token, TOKEN_FIELDS)


# --------------------------------------------------------------------------------------------------------------
# acl policy ... and acl role ...


def _object_id(client: AgentClient, values: dict[str, Any], kind: str) -> str:
    if values.get("id"):
        return _call(f"Error determining {kind} ID", lambda: _from_partial(client, values["id"], kind))
    return _call(f"Error determining {kind} ID", lambda: _by_name(client, values.get("name", ""), kind))


def _check_id_or_name(values: dict[str, Any]) -> None:
    if not values.get("id") and not values.get("name"):
        raise _Failed("Must specify either the -id or -name parameters")


def _check_name(values: dict[str, Any]) -> None:
    if not values.get("name"):
        raise _Failed("Missing require '-name' flag")


def _policy_create(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    body = {"Name": values["name"], "Description": values.get("description", ""),
            "Datacenters": values.get("valid-datacenter", []), "Rules": _rules(values)}  # fmt: skip
    policy = _call("Failed to create new policy", lambda: _put_json(client, "/v1/acl/policy", body))
    _show(values, policy, format_policy, POLICY_FIELDS)


def _policy_list(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    policies = _call("Failed to retrieve the policy list", lambda: client.get_json("/v1/acl/policies"))
    _show(values, policies, format_policy_list, POLICY_LIST_FIELDS, many=True)


def _policy_read(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    policy_id = _object_id(client, values, "policy")
    policy = _call(f"Error reading policy {go_quote(policy_id)}",
                   lambda: client.get_json(f"/v1/acl/policy/{policy_id}"))  # fmt: skip
    _show(values, policy, format_policy, POLICY_FIELDS)


def _check_update_id(kind: str) -> Callable[[dict[str, Any]], None]:
    def check(values: dict[str, Any]) -> None:
        if not values.get("id"):
            raise _Failed(f"Cannot update a {kind} without specifying the -id parameter")

    return check


def _policy_update(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    policy_id = _call("Error determining policy ID", lambda: _from_partial(client, values["id"], "policy"))
    rules = _rules(values) if values.get("rules") else ""
    body: dict[str, Any] = {"ID": policy_id, "Name": values.get("name", ""),
                            "Description": values.get("description", ""), "Rules": rules,
                            "Datacenters": values.get("valid-datacenter", [])}  # fmt: skip
    if not values.get("no-merge"):
        current = _call(f"Error reading policy {go_quote(policy_id)}",
                        lambda: client.get_json(f"/v1/acl/policy/{policy_id}"))  # fmt: skip
        for key, flag in (("Name", "name"), ("Description", "description"), ("Rules", "rules"),
                          ("Datacenters", "valid-datacenter")):  # fmt: skip
            if not values.get(flag):
                body[key] = current.get(key)
    policy = _call(f"Error updating policy {go_quote(policy_id)}",
                   lambda: _put_json(client, f"/v1/acl/policy/{policy_id}", body))  # fmt: skip
    _show(values, policy, format_policy, POLICY_FIELDS)


def _delete(kind: str) -> Callable[[AgentClient, dict[str, Any], list[str]], None]:
    def run(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
        object_id = _object_id(client, values, kind)
        _call(f"Error deleting {kind} {go_quote(object_id)}",
              lambda: client.request("DELETE", f"/v1/acl/{kind}/{object_id}"))  # fmt: skip
        _out(f"{kind.capitalize()} {go_quote(object_id)} deleted successfully")

    return run


def _check_role_create(values: dict[str, Any]) -> None:
    if not values.get("name"):
        raise _Failed("Missing required '-name' flag")
    if not any(values.get(k) for k in ("policy-name", "policy-id", "service-identity", "node-identity")):
        raise _Failed("Cannot create a role without specifying -policy-name, -policy-id, -service-identity, or "
                      "-node-identity at least once")  # fmt: skip


def _role_body(client: AgentClient, values: dict[str, Any]) -> dict[str, Any]:
    return {"Name": values.get("name", ""), "Description": values.get("description", ""),
            "Policies": _links_of(client, values.get("policy-name", []), values.get("policy-id", []), "policy"),
            "ServiceIdentities": service_identities(values.get("service-identity", [])),
            "NodeIdentities": node_identities(values.get("node-identity", []))}  # fmt: skip


def _role_create(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    role = _call("Failed to create new role", lambda: _put_json(client, "/v1/acl/role", _role_body(client, values)))
    _show(values, role, format_role, ROLE_FIELDS)


def _role_list(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    roles = _call("Failed to retrieve the role list", lambda: client.get_json("/v1/acl/roles"))
    _show(values, roles, format_role_list, ROLE_FIELDS, many=True)


def _role_read(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    role_id = _object_id(client, values, "role")
    role = _call(f"Error reading role {go_quote(role_id)}", lambda: client.get_json(f"/v1/acl/role/{role_id}"))
    _show(values, role, format_role, ROLE_FIELDS)


def _role_update(client: AgentClient, values: dict[str, Any], args: list[str]) -> None:
    role_id = _call("Error determining role ID", lambda: _from_partial(client, values["id"], "role"))
    body = {"ID": role_id, **_role_body(client, values)}
    if not values.get("no-merge"):
        current = _call("Error when retrieving current role", lambda: client.get_json(f"/v1/acl/role/{role_id}"))
        for key, flags in (("Name", ("name",)), ("Description", ("description",)),
                           ("ServiceIdentities", ("service-identity",)), ("NodeIdentities", ("node-identity",))):
            if not any(values.get(f) for f in flags):
                body[key] = current.get(key) or ([] if key.endswith("Identities") else "")
        known = {link.get("ID") for link in body["Policies"]}
        body["Policies"] = [*(p for p in current.get("Policies") or () if p.get("ID") not in known),
                            *body["Policies"]]  # fmt: skip
    role = _call(f"Error updating role {go_quote(role_id)}",
                 lambda: _put_json(client, f"/v1/acl/role/{role_id}", body))  # fmt: skip
    _show(values, role, format_role, ROLE_FIELDS)


# --------------------------------------------------------------------------------------------------------------
# The command table


def _flag(name: str, text: str, *, repeated: bool = False) -> Flag:
    return Flag(name, text, placeholder="<value>" if repeated else "<string>", repeated=repeated)


_META = Flag("meta", "Indicates that token metadata such as the content hash and raft indices should be shown for "
                     "each entry", is_bool=True)  # fmt: skip


def _format_flag() -> Flag:
    return Flag("format", "Output format {pretty|json}", default="pretty", placeholder="<string>")


_API = (*HTTP_FLAGS, *SERVER_FLAGS, *PARTITION_FLAG)
_REPEATED = "May be specified multiple times"


def _cmd(name: str, synopsis: str, usage: str, flags: Sequence[Flag],
         run: Callable[[AgentClient, dict[str, Any], list[str]], None],
         check: Callable[[dict[str, Any]], None] | None = None) -> Command:  # fmt: skip
    return Command(name, synopsis, usage, (*_API, *flags), _command(run, check), uses_server_flags=True)


_POLICY_LINKS = (_flag("policy-id", f"ID of a policy to use for this token. {_REPEATED}", repeated=True),
                 _flag("policy-name", f"Name of a policy to use for this token. {_REPEATED}", repeated=True))
_ROLE_LINKS = (_flag("role-id", f"ID of a role to use for this token. {_REPEATED}", repeated=True),
               _flag("role-name", f"Name of a role to use for this token. {_REPEATED}", repeated=True))
_IDENTITIES = (
    _flag("service-identity", f"Name of a service identity to use for this token. {_REPEATED}. Format is the "
                              "SERVICENAME or SERVICENAME:DATACENTER1,DATACENTER2,...", repeated=True),
    _flag("node-identity", f"Name of a node identity to use for this token. {_REPEATED}. Format is "
                           "NODENAME:DATACENTER", repeated=True),
)  # fmt: skip
_DEPRECATED_ID = _flag("id", "DEPRECATED. Use -accessor-id instead.")
_ACCESSOR = _flag("accessor-id", "The Accessor ID of the token. It may be specified as a unique ID prefix but will "
                                 "error if the prefix matches multiple token Accessor IDs")  # fmt: skip

TOKEN_COMMANDS: dict[str, Command] = {
    "create": _cmd("create", "Create an ACL token", "Usage: consul acl token create [options]", (
        _META, _format_flag(), _flag("accessor", "Create the token with this Accessor ID. It must be a UUID."),
        _flag("secret", "Create the token with this Secret ID. It must be a UUID."),
        Flag("local", "Create this as a datacenter local token", is_bool=True),
        _flag("description", "A description of the token"), *_POLICY_LINKS, *_ROLE_LINKS, *_IDENTITIES,
        Flag("expires-ttl", "Duration of time this token should be valid for", placeholder="<duration>",
             convert=lambda text: int(parse_duration(text) * 1e9)),
    ), _token_create, _check_token_create),
    "list": _cmd("list", "List ACL tokens", "Usage: consul acl token list [options]", (_META, _format_flag()),
                 _token_list),
    "read": _cmd("read", "Read an ACL token", "Usage: consul acl token read [options] -id TOKENID", (
        _META, _format_flag(), Flag("self", "Indicates that the current HTTP token should be read by secret ID "
                                            "instead of expecting a -id option", is_bool=True),
        _flag("id", "The Accessor ID of the token to read. It may be specified as a unique ID prefix but will "
                    "error if the prefix matches multiple token Accessor IDs"),
    ), _token_read, _check_token_read),
    "update": _cmd("update", "Update an ACL token", "Usage: consul acl token update [options]", (
        _META, _format_flag(), _ACCESSOR, _DEPRECATED_ID, _flag("description", "A description of the token"),
        *_POLICY_LINKS, *_ROLE_LINKS, *_IDENTITIES,
        *(_flag(f"append-{n}", f"Name of a {n.split('-')[0]} to add to this token. {_REPEATED}", repeated=True)
          for n in ("policy-id", "policy-name", "role-id", "role-name", "service-identity", "node-identity")),
    ), _token_update),
    "delete": _cmd("delete", "Delete an ACL token", "Usage: consul acl token delete [options] -accessor-id TOKEN",
                   (_ACCESSOR, _DEPRECATED_ID), _token_delete),
    "clone": _cmd("clone", "Clone an ACL token", "Usage: consul acl token clone [options]", (
        _META, _format_flag(), _ACCESSOR, _DEPRECATED_ID,
        _flag("description", "A description of the new cloned token"),
    ), _token_clone),
}

_POLICY_ID = _flag("id", "The ID of the policy. It may be specified as a unique ID prefix but will error if the "
                         "prefix matches multiple policy IDs")  # fmt: skip
_RULES = _flag("rules", "The policy rules. May be prefixed with '@' to indicate that the value is a file path to "
                        "load the rules from. '-' may also be given to indicate that the rules are available on "
                        "stdin")  # fmt: skip
_DCS = _flag("valid-datacenter", f"Datacenter that the policy should be valid within. {_REPEATED}", repeated=True)

POLICY_COMMANDS: dict[str, Command] = {
    "create": _cmd("create", "Create an ACL policy", "Usage: consul acl policy create -name NAME [options]", (
        _META, _format_flag(), _flag("name", "The new policy's name. This flag is required."),
        _flag("description", "A description of the policy"), _DCS, _RULES,
    ), _policy_create, _check_name),
    "list": _cmd("list", "Lists ACL policies", "Usage: consul acl policy list [options]", (_META, _format_flag()),
                 _policy_list),
    "read": _cmd("read", "Read an ACL policy", "Usage: consul acl policy read [options] POLICY", (
        _META, _format_flag(), _POLICY_ID, _flag("name", "The name of the policy to read."),
    ), _policy_read, _check_id_or_name),
    "update": _cmd("update", "Update an ACL policy", "Usage: consul acl policy update [options]", (
        _META, _format_flag(), _POLICY_ID, _flag("name", "The policy name."),
        _flag("description", "A description of the policy"), _DCS, _RULES,
        Flag("no-merge", "Do not merge the current policy information with what is provided to the command. "
                         "Instead overwrite all fields with the exception of the policy ID which is immutable.",
             is_bool=True),
    ), _policy_update, _check_update_id("policy")),
    "delete": _cmd("delete", "Delete an ACL policy", "Usage: consul acl policy delete [options] -id POLICY", (
        _POLICY_ID, _flag("name", "The name of the policy to delete."),
    ), _delete("policy"), _check_id_or_name),
}

_ROLE_ID = _flag("id", "The ID of the role. It may be specified as a unique ID prefix but will error if the "
                       "prefix matches multiple role IDs")  # fmt: skip

ROLE_COMMANDS: dict[str, Command] = {
    "create": _cmd("create", "Create an ACL role", "Usage: consul acl role create -name NAME [options]", (
        _META, _format_flag(), _flag("name", "The new role's name. This flag is required."),
        _flag("description", "A description of the role"), *_POLICY_LINKS, *_IDENTITIES,
    ), _role_create, _check_role_create),
    "list": _cmd("list", "Lists ACL roles", "Usage: consul acl role list [options]", (_META, _format_flag()),
                 _role_list),
    "read": _cmd("read", "Read an ACL role", "Usage: consul acl role read [options] ROLE", (
        _META, _format_flag(), _ROLE_ID, _flag("name", "The name of the role to read."),
    ), _role_read, _check_id_or_name),
    "update": _cmd("update", "Update an ACL role", "Usage: consul acl role update [options]", (
        _META, _format_flag(), _ROLE_ID, _flag("name", "The role name."),
        _flag("description", "A description of the role"), *_POLICY_LINKS, *_IDENTITIES,
        Flag("no-merge", "Do not merge the current role information with what is provided to the command. "
                         "Instead overwrite all fields with the exception of the role ID which is immutable.",
             is_bool=True),
    ), _role_update, _check_update_id("role")),
    "delete": _cmd("delete", "Delete an ACL role", "Usage: consul acl role delete [options] -id ROLE", (
        _ROLE_ID, _flag("name", "The name of the role to delete."),
    ), _delete("role"), _check_id_or_name),
}


def _group(name: str, synopsis: str, usage: str, subcommands: Mapping[str, Command]) -> Command:
    return Command(name, synopsis, usage, (), lambda values, args: 1, subcommands=subcommands)


COMMANDS: dict[str, Command] = {
    "acl": _group("acl", "Interact with Consul's ACLs", "Usage: consul acl <subcommand> [options] [args]\n\n"
                  "  This command has subcommands for interacting with Consul's ACLs.", {
        "bootstrap": _cmd("bootstrap", "Bootstrap Consul's ACL system",
                          "Usage: consul acl bootstrap [options] [<file>]", (_format_flag(),), _bootstrap),
        "token": _group("token", "Manage Consul's ACL tokens", "Usage: consul acl token <subcommand> [options] "
                        "[args]", TOKEN_COMMANDS),
        "policy": _group("policy", "Manage Consul's ACL policies", "Usage: consul acl policy <subcommand> "
                         "[options] [args]", POLICY_COMMANDS),
        "role": _group("role", "Manage Consul's ACL roles", "Usage: consul acl role <subcommand> [options] [args]",
                       ROLE_COMMANDS),
    }),
}
