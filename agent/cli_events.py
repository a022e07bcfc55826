"""`event` and `watch`: Consul's command/event and command/watch, with their flags, texts and exit codes.

`event` fires a user event through `PUT /v1/event/fire/:name` (agent/events.py has the wire side).  `watch` runs one
of Consul's watch plans (agent/watch_plans.py decides what to ask and what counts as a change) with blocking
queries: without a handler it prints the first result as indented JSON and exits 0; with one, it runs the handler
on every change with the result as JSON on stdin and ``CONSUL_INDEX`` set, until SIGINT/SIGTERM (exit 0) or a
failing handler (exit 1).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from agent import watch_plans
from agent.cli_client import AgentClient, ClientError, path_escape
from agent.cli_command import HTTP_FLAGS, SERVER_FLAGS, Command, _reached_agent
from agent.cli_output import _err, _out
from agent.goflags import Flag
from agent.gostrings import go_json_text, to_bytes

__all__ = ["COMMANDS", "run_event", "run_watch"]

# --------------------------------------------------------------------------------------------------------------
# event


def _regexp_error(what: str, pattern: str, err: re.error) -> str:
    return f"Failed to compile {what} filter regexp: error parsing regexp: {err}: `{pattern}`"


def run_event(values: dict[str, Any], args: list[str]) -> int:
    """`consul event -name NAME [-node RE] [-service RE] [-tag RE] [payload]`: prints `Event ID: <id>`."""
    name = values.get("name", "")
    if not name:
        return COMMANDS["event"].usage_error("Event name must be specified")
    for flag in ("node", "service", "tag"):
        if pattern := values.get(flag, ""):
            try:
                re.compile(pattern)
            except re.error as err:
                _err(_regexp_error(flag, pattern, err))
                return 1
    if values.get("tag") and not values.get("service"):
        _err("Cannot provide tag filter without service filter.")
        return 1
    if len(args) > 1:
        return COMMANDS["event"].usage_error("Too many command line arguments.")
    payload = to_bytes(args[0]) if args else None
    reached = _reached_agent(values)
    if reached is None:
        return 1
    client = reached[0]
    params = {flag: values[flag] for flag in ("node", "service", "tag") if values.get(flag)}
    try:
        fired = client.call("PUT", "/v1/event/fire/" + path_escape(name), params, payload).ok().json()
        event_id = fired["ID"]
    except ClientError as err:
        _err(f"Error firing event: {err}")
        return 1
    except (KeyError, TypeError) as err:
        _err(f"Error firing event: invalid answer from the agent: {err!r}")
        return 1
    _out(f"Event ID: {event_id}")
    return 0


EVENT_FLAGS = (
    Flag("name", "Name of the event.", placeholder="<string>"),
    Flag("node", "Regular expression to filter on node names.", placeholder="<string>"),
    Flag("service", "Regular expression to filter on service instances.", placeholder="<string>"),
    Flag("tag", "Regular expression to filter on service tags. Must be used with -service.", placeholder="<string>"),
)

# --------------------------------------------------------------------------------------------------------------
# watch

#: A blocking query parks up to 10 m (plus jitter) on the agent: the client waits longer than that.
WATCH_IO_TIMEOUT = 660.0


class _Interrupted(Exception):
    """SIGTERM: `consul watch` stops its plan and exits with what it has (SIGINT is KeyboardInterrupt)."""


def _interrupt(_signum: int, _frame: Any) -> None:
    raise _Interrupted


def _watch_params(values: Mapping[str, Any]) -> dict[str, Any]:
    names = ("key", "prefix", "service", "tag", "passingonly", "state", "name")
    params: dict[str, Any] = {name: values[name] for name in names if values.get(name)}
    if values.get("stale"):
        params["stale"] = True
    return params


def _watch_once(client: AgentClient, plan: watch_plans.Plan, state: watch_plans.PlanState) -> tuple[int, Any]:
    """One (blocking) query of the plan: (index, result); ClientError for a failure Consul's API client reports."""
    params = dict(plan.params)
    if index := state.query_index():
        params["index"] = str(index)
    reply = client.call("GET", plan.path, params, timeout=WATCH_IO_TIMEOUT)
    missing = reply.status == 404 and plan.missing_ok
    if not missing:
        reply.ok()
    try:
        index = int(reply.headers.get("x-consul-index", ""))
    except ValueError:
        raise ClientError("Failed to parse X-Consul-Index") from None
    return index, plan.result(reply.status, None if missing else reply.json(), state.last_index)


def _run_handler(values: Mapping[str, Any], args: list[str], index: int, result: Any) -> bool:
    """The handler with the result as JSON on stdin (json.Encoder: compact, then a newline) and CONSUL_INDEX set;
    `-shell` (the default) runs the joined arguments with $SHELL -c, else the argv itself.  False when it failed."""
    stdin = (go_json_text(result) + "\n").encode("utf-8")
    env = dict(os.environ, CONSUL_INDEX=str(index))
    shell = values.get("shell", True)
    argv = [os.environ.get("SHELL") or "/bin/sh", "-c", " ".join(args)] if shell else list(args)
    try:
        done = subprocess.run(argv, input=stdin, env=env, check=False)
    except OSError as err:
        _err(f"Error starting handler: {err}")
        return False
    if done.returncode != 0:
        status = f"signal: {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        _err(f"Error executing handler: {status}")
        return False
    return True


def run_watch(values: dict[str, Any], args: list[str]) -> int:
    """`consul watch -type T [params] [handler...]`: without a handler, print the first result as JSON and exit;
    with one, run it on every change (JSON on stdin) until interrupted; a failing handler stops it with exit 1."""
    watch_type = values.get("type", "")
    if not watch_type:
        return COMMANDS["watch"].usage_error("Must specify watch type")
    try:
        plan = watch_plans.parse_plan(watch_type, _watch_params(values))
    except watch_plans.WatchError as err:
        _err(f"Error: {err}")
        return 1
    reached = _reached_agent(values)
    if reached is None:
        return 1
    client = reached[0]
    state = watch_plans.PlanState(monotonic=plan.monotonic)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            try:
                index, result = _watch_once(client, plan, state)
            except ClientError as err:
                delay = state.failed()
                _err(f"[ERR] consul.watch: Watch (type: {plan.type}) errored: {err}, retry in {delay:g}s")
                time.sleep(delay)
                continue
            if not state.answered(index, result):
                continue
            if not args:
                _out(go_json_text(result, "    "))
                return 0
            if not _run_handler(values, args, index, result):
                return 1
    except (_Interrupted, KeyboardInterrupt):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


WATCH_FLAGS = (
    Flag("type", "Specifies the watch type. One of key, keyprefix, services, nodes, service, checks, or event.",
         placeholder="<value>"),
    Flag("key", "Specifies the key to watch. Only for 'key' type.", placeholder="<value>"),
    Flag("prefix", "Specifies the key prefix to watch. Only for 'keyprefix' type.", placeholder="<value>"),
    Flag("service", "Specifies the service to watch. Required for 'service' type, optional for 'checks' type.",
         placeholder="<value>"),
    Flag("tag", "Specifies the service tag to filter on. Optional for 'service' type.", placeholder="<value>"),
    Flag("passingonly", "Specifies if only hosts passing all checks are displayed. Optional for 'service' type, "
         "must be one of `[true|false]`. Defaults false.", placeholder="<value>"),
    Flag("shell", "Use a shell to run the command (can set a custom shell via the SHELL environment variable).",
         is_bool=True, default="true"),
    Flag("state", "Specifies the states to watch. Optional for 'checks' type.", placeholder="<value>"),
    Flag("name", "Specifies an event name to watch. Only for 'event' type.", placeholder="<value>"),
)  # fmt: skip

COMMANDS: Mapping[str, Command] = {
    "event": Command(
        "event",
        "Fire a new event",
        "Usage: consul event [options] [payload]\n\n"
        "  Dispatches a custom user event across a datacenter. An event must provide\n"
        "  a name, but a payload is optional. Events support filtering using\n"
        "  regular expressions on node name, service, and tag definitions.",
        (*HTTP_FLAGS, *EVENT_FLAGS),
        run_event,
    ),
    "watch": Command(
        "watch",
        "Watch for changes in Consul",
        "Usage: consul watch [options] [child...]\n\n"
        "  Watches for changes in a given data view from Consul. If a child process\n"
        "  is specified, it will be invoked with the latest results on changes. Otherwise,\n"
        "  the latest values are dumped to stdout and the watch terminates.\n\n"
        "  Providing the watch type is required, and other parameters may be required\n"
        "  or supported depending on the watch type.",
        (*HTTP_FLAGS, *SERVER_FLAGS, *WATCH_FLAGS),
        run_watch,
        uses_server_flags=True,
    ),
}
