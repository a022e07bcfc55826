"""`python -m agent` (and the `triumvir` script): one program for the agent and its CLI, as `consul` is.

`agent ARGS`, no arguments, or arguments starting with a flag (`-dev`, `-config-dir=...`) run the agent;
`members`, `join`, `kv`, `lock`, `event`, `watch`, `rtt`, `acl`, ... run the CLI (agent/cli.py, cli_kv.py,
cli_lock.py, cli_events.py, cli_rtt.py, cli_acl.py); `help`/`-h`/`--help`
and `version` print what consul prints.
The supervisor is imported only when the agent runs, so CLI calls stay fast and never need trio.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from agent import cli, cli_acl, cli_events, cli_kv, cli_lock, cli_rtt

#: Every CLI command: agent/cli.py's own, and those of the modules built on it.
COMMANDS = {**cli.COMMANDS, **cli_kv.COMMANDS, **cli_lock.COMMANDS, **cli_events.COMMANDS,
            **cli_rtt.COMMANDS, **cli_acl.COMMANDS}


def _load_supervisor() -> Callable[[list[str]], int] | None:
    """agent.supervisor.main, or None after saying clearly why it cannot be used."""
    try:
        from agent import supervisor
    except ModuleNotFoundError as err:
        if err.name != "agent.supervisor":
            raise  # a missing dependency inside the supervisor is a real bug: show its traceback
        print("==> The agent is not available: agent/supervisor.py is missing", file=sys.stderr)
        return None
    run = getattr(supervisor, "main", None)
    if not callable(run):
        print("==> The agent is not available: agent.supervisor has no main(argv)", file=sys.stderr)
        return None
    return run


def run_agent(argv: list[str]) -> int:
    """Start the agent with its own flags; exit 1 when it cannot be started at all."""
    run = _load_supervisor()
    if run is None:
        return 1
    return int(run(argv) or 0)


def _is_agent_invocation(argv: list[str]) -> bool:
    """No subcommand (nothing, or a flag first that is not help/version) means: run the agent."""
    if not argv:
        return True
    first = argv[0]
    return first.startswith("-") and first not in cli.HELP_ARGS + cli.VERSION_ARGS


def main(argv: list[str] | None = None) -> int:
    """Dispatch between the agent and the CLI; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "agent":
        return run_agent(args[1:])
    if _is_agent_invocation(args):
        return run_agent(args)
    return cli.main(args, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
