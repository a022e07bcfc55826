"""The `consul`-style command line: the command table, `help`, `version`, and the dispatch to one command.

Scripts parse this output and test these exit codes, so everything user-visible imitates the Go CLI (consul-compat
§4).  The commands live in modules by group: cli_members.py (members, join, leave, force-leave), cli_agent.py (info,
reload, maint, monitor), cli_keyring.py (keyring, keygen) and cli_operator.py (operator raft) make this table;
cli_kv.py, cli_lock.py, cli_events.py (event, watch), cli_rtt.py and cli_acl.py add theirs in agent/__main__.py.
What they all share is in cli_command.py (the Command, its flags and help), cli_client.py (the Go API client's slice
over http.client) and cli_output.py (Go's text formats).  The CLI starts fast and works without trio: these modules
import the stdlib, agent/goflags.py, agent/version.py and agent/gostrings.py (whose Go-string rule is
protocol.codec's, so msgpack and the sans-IO protocol package come along; `python -X importtime` shows no trio).
`main(argv)` takes the arguments after the program name, subcommand first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from agent import cli_agent, cli_keyring, cli_members, cli_operator
from agent.cli_client import (  # noqa: F401 -- the client's names, importable from here as before the split
    CONNECT_TIMEOUT,
    DEFAULT_HTTP_ADDR,
    IO_TIMEOUT,
    AgentClient,
    ClientError,
    Endpoint,
    Reply,
    make_client,
    parse_http_addr,
    path_escape,
)
from agent.cli_command import HELP_ARGS, HTTP_FLAGS, PARTITION_FLAG, SERVER_FLAGS, Command, run_command  # noqa: F401
from agent.cli_keyring import _format_keyring  # noqa: F401
from agent.cli_members import ALL_SEGMENTS, members_rows  # noqa: F401
from agent.cli_operator import raft_peer_rows  # noqa: F401
from agent.cli_output import _err, _out, columnize, go_trim, go_v, tcp_addr  # noqa: F401
from agent.version import CONSUL_VERSION, REVISION, __version__

#: The commands that need nothing beyond the stdlib client; agent/__main__.py adds kv, lock, event, watch, rtt and
#: acl (cli_events.py and cli_rtt.py reach trio through agent/events.py and agent/coordinates.py).
COMMANDS: dict[str, Command] = {
    **cli_members.COMMANDS,
    **cli_agent.COMMANDS,
    **cli_keyring.COMMANDS,
    **cli_operator.COMMANDS,
}

# Listed by `help` but run elsewhere (agent/__main__.py) or right here (version).
OTHER_SYNOPSES = {"agent": "Runs a Consul agent", "version": "Prints the Consul version"}
VERSION_ARGS = ("version", "-v", "-version", "--version")


def prog_name() -> str:
    """How the user called us: `python -m agent`, `triumvir`, or whatever the script is named."""
    arg0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m agent" if arg0 in ("", "-c", "-m", "__main__.py") else arg0


def usage(prog: str | None = None, commands: Mapping[str, Command] | None = None) -> str:
    """The top-level help, laid out as mitchellh/cli's BasicHelpFunc does."""
    prog = prog or prog_name()
    commands = COMMANDS if commands is None else commands
    synopses = {**OTHER_SYNOPSES, **{name: c.synopsis for name, c in commands.items()}}
    width = max(map(len, synopses))
    lines = [f"Usage: {prog} [--version] [--help] <command> [<args>]", "", "Available commands are:"]
    lines += [f"    {name.ljust(width)}    {synopses[name]}" for name in sorted(synopses)]
    return "\n".join(lines)


def version_text() -> str:
    """`consul version`: the lines consul prints, with triumvir's version where Consul's would be."""
    lines = [
        f"Consul v{CONSUL_VERSION}",
        f"Revision {REVISION}",
        "Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking"
        " to compatible agents)",
        f"triumvir v{__version__}",
    ]
    return "\n".join(lines)


def main(argv: list[str], commands: Mapping[str, Command] | None = None) -> int:
    """Run `<subcommand> [args]`; `help`/`-h` and `version` too.  Unknown subcommands exit 127 as consul's.

    ``commands`` is the whole table: COMMANDS here, plus the commands of modules built on the same parts (kv, lock,
    event, watch, rtt, acl), which agent/__main__.py adds.
    """
    commands = COMMANDS if commands is None else commands
    if not argv or argv[0] in ("help", *HELP_ARGS):
        _out(usage(commands=commands))
        return 0
    if argv[0] in VERSION_ARGS:
        _out(version_text())
        return 0
    command = commands.get(argv[0])
    if command is None:
        _err(usage(commands=commands))
        return 127
    return run_command(command, argv[1:])
