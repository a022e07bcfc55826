"""A CLI command as mitchellh/cli and Consul's flags package shape it: its flags (the HTTP API ones shared by
every command), its help text, Go-style flag parsing, and the first steps most commands share (reach the agent,
print Consul's error when that fails)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.cli_client import AgentClient, ClientError, make_client
from agent.cli_output import _err, _out
from agent.goflags import Flag, FlagError, parse_flags

HELP_ARGS = ("-h", "-help", "--help")


HTTP_FLAGS = (
    Flag(
        "http-addr",
        "The `address` and port of the Consul HTTP agent. The value can be an IP address or DNS address, "
        "but it must also include the port. This can also be specified via the CONSUL_HTTP_ADDR environment "
        "variable. The default value is http://127.0.0.1:8500. The scheme can also be set to HTTPS by "
        "setting the environment variable CONSUL_HTTP_SSL=true.",
        placeholder="<address>",
    ),
    Flag(
        "token", "ACL token to use in the request. Can also be specified via CONSUL_HTTP_TOKEN.", placeholder="<value>"
    ),
    Flag(
        "token-file",
        "File containing the ACL token to use in the request. Can also be specified via CONSUL_HTTP_TOKEN_FILE.",
        placeholder="<value>",
    ),
    Flag("ca-file", "Path to a CA file to use for TLS when communicating with Consul.", placeholder="<value>"),
    Flag("ca-path", "Path to a directory of CA certificates to use for TLS.", placeholder="<value>"),
    Flag("client-cert", "Path to a client cert file to use for TLS.", placeholder="<value>"),
    Flag("client-key", "Path to a client key file to use for TLS.", placeholder="<value>"),
    Flag("tls-server-name", "The server name to use as the SNI host when connecting via TLS.", placeholder="<value>"),
)
SERVER_FLAGS = (
    Flag("datacenter", "Name of the datacenter to query. Defaults to the agent's datacenter.", placeholder="<value>"),
    Flag("stale", "Permit any Consul server (non-leader) to respond to this request.", is_bool=True),
)
PARTITION_FLAG = (Flag("partition", "(Enterprise-only) Specifies the admin partition to query.", placeholder="<x>"),)


@dataclass(frozen=True)
class Command:
    name: str
    synopsis: str
    usage: str  # first lines of the help text
    flags: tuple[Flag, ...]
    run: Callable[[dict[str, Any], list[str]], int]
    uses_server_flags: bool = False
    # A command like `kv`: its first argument names one of these, which then parses the rest (mitchellh/cli's
    # nested commands); without a known one the group's help is printed and the exit code is 1.
    subcommands: Mapping[str, Command] | None = None

    def help(self) -> str:
        """flags.Usage: the usage text, then HTTP API options, then the command's own options."""
        if self.subcommands:
            width = max(map(len, self.subcommands))
            lines = [f"    {n.ljust(width)}    {c.synopsis}" for n, c in sorted(self.subcommands.items())]
            return "\n".join([self.usage, "", "Subcommands:", *lines])
        http_names = {f.name for f in HTTP_FLAGS}
        server_names = {f.name for f in SERVER_FLAGS}
        parts = [self.usage]
        parts += _flag_section("HTTP API Options", HTTP_FLAGS)
        if self.uses_server_flags:
            parts += _flag_section("API Options", SERVER_FLAGS)
        own = [f for f in self.flags if f.name not in http_names | server_names]
        parts += _flag_section("Command Options", own)
        return "\n".join(parts)

    def usage_error(self, message: str) -> int:
        """mitchellh/cli's answer to arguments a command cannot take: the message, a blank line and the help on
        stderr; exit 1."""
        _err(message)
        _err("")
        _err(self.help())
        return 1


def _flag_section(title: str, flags: Sequence[Flag]) -> list[str]:
    if not flags:
        return []
    lines = ["", title]
    for f in sorted(flags, key=lambda f: f.name):
        lines += ["", f"  -{f.name}" + ("" if f.is_bool else f"={f.placeholder or '<value>'}")]
        lines += textwrap.wrap(f.help, width=80, initial_indent="     ", subsequent_indent="     ")
    return lines


def _client_or_error(values: Mapping[str, Any]) -> AgentClient | None:
    try:
        return make_client(values)
    except ClientError as err:
        _err(f"Error connecting to Consul agent: {err}")
        return None


def _reached_agent(values: Mapping[str, Any]) -> tuple[AgentClient, str] | None:
    """A client and the agent's node name (``/v1/agent/self``): what Consul's lock, event, watch and maint ask
    first, to fail early with ``Error connecting to``/``Error querying Consul agent``; None after printing it."""
    client = _client_or_error(values)
    if client is None:
        return None
    try:
        answer = client.get_json("/v1/agent/self")
    except ClientError as err:
        _err(f"Error querying Consul agent: {err}")
        return None
    config = answer.get("Config") if isinstance(answer, Mapping) else None
    return client, str(config.get("NodeName", "")) if isinstance(config, Mapping) else ""


def _simple_put(
    values: Mapping[str, Any], path: str, params: Mapping[str, str] | None, fail: str, ok: str | None
) -> int:
    client = _client_or_error(values)
    if client is None:
        return 1
    try:
        client.request("PUT", path, params)
    except ClientError as err:
        _err(f"{fail}: {err}")
        return 1
    if ok is not None:
        _out(ok)
    return 0


def run_command(command: Command, args: list[str]) -> int:
    """Parse the command's flags as Go does (a help flag anywhere before `--` prints its help), then run it."""
    if command.subcommands is not None:
        sub = command.subcommands.get(args[0]) if args else None
        if sub is not None:
            return run_command(sub, args[1:])
        if not any(a in HELP_ARGS for a in args):
            _out(command.help())
            return 1
    before_dashdash = args[: args.index("--")] if "--" in args else args
    if any(a in HELP_ARGS for a in before_dashdash):
        _out(command.help())
        return 0
    try:
        values, rest = parse_flags(args, command.flags)
    except FlagError as err:
        _err(str(err))
        _err(command.help())
        return 1
    return command.run(values, rest)
