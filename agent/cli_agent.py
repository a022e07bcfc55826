"""`consul info`, `reload`, `maint` and `monitor`: commands about the local agent itself."""

from __future__ import annotations

from typing import Any

from agent.cli_client import ClientError, path_escape
from agent.cli_command import HTTP_FLAGS, Command, _client_or_error, _reached_agent, _simple_put
from agent.cli_output import _err, _out, go_v
from agent.goflags import Flag
from agent.gostrings import go_quote


def run_info(values: dict[str, Any], args: list[str]) -> int:
    """`consul info`: the Stats of /v1/agent/self, sections and keys sorted, `\\tkey = value`."""
    client = _client_or_error(values)
    if client is None:
        return 1
    try:
        self_doc = client.get_json("/v1/agent/self")
        if not isinstance(self_doc, dict):
            raise ClientError("json: cannot unmarshal into Go value of type map[string]map[string]interface {}")
    except ClientError as err:
        _err(f"Error querying agent: {err}")
        return 1
    if "Stats" not in self_doc:
        _err(f"Agent response did not contain 'Stats' key: {go_v(self_doc)}")
        return 1
    stats = self_doc["Stats"] or {}
    for key in sorted(stats):
        _out(key + ":")
        section = stats[key]
        if not isinstance(section, dict):
            _err("Got invalid subkey in stats: map[]")
            return 1
        for sub in sorted(section):
            _out(f"\t{sub} = {go_v(section[sub])}")
    return 0


def run_reload(values: dict[str, Any], args: list[str]) -> int:
    """`consul reload`: PUT /v1/agent/reload (the agent re-reads its config files, as on SIGHUP)."""
    return _simple_put(values, "/v1/agent/reload", None, "Error reloading", "Configuration reload triggered")


def run_maint(values: dict[str, Any], args: list[str]) -> int:
    """`consul maint [-enable|-disable] [-reason R] [-service ID]`: without an action, list what is in maintenance."""
    enable, disable = bool(values.get("enable")), bool(values.get("disable"))
    reason, service_id = values.get("reason", ""), values.get("service", "")
    if enable and disable:
        _err("Only one of -enable or -disable may be provided")
        return 1
    if not enable and reason:
        _err("Reason may only be provided with -enable")
        return 1
    if not enable and not disable and service_id:
        _err("Service requires either -enable or -disable")
        return 1
    reached = _reached_agent(values)
    if reached is None:
        return 1
    client, node_name = reached
    if not enable and not disable:
        try:
            checks = client.get_json("/v1/agent/checks")
        except ClientError as err:
            _err(f"Error getting checks: {err}")
            return 1
        for check_id in sorted(checks or {}):
            check = checks[check_id]
            if check_id == "_node_maintenance":
                _out("Node:\n  Name:   " + node_name + "\n  Reason: " + str(check.get("Notes", "")) + "\n")
            elif check_id.startswith("_service_maintenance:"):
                _out("Service:\n  ID:     " + str(check.get("ServiceID", "")) + "\n  Reason: "
                     + str(check.get("Notes", "")) + "\n")  # fmt: skip
        return 0
    action = "enabl" if enable else "disabl"
    params = {"enable": "true" if enable else "false"}
    if enable:
        params["reason"] = reason
    if service_id:
        path, what = "/v1/agent/service/maintenance/" + path_escape(service_id), "service"
    else:
        path, what = "/v1/agent/maintenance", "node"
    try:
        client.request("PUT", path, params)
    except ClientError as err:
        _err(f"Error {action}ing {what} maintenance: {err}")
        return 1
    if service_id:
        _out(f"Service maintenance is now {action}ed for {go_quote(service_id)}")
    else:
        _out(f"Node maintenance is now {action}ed")
    return 0


def run_monitor(values: dict[str, Any], args: list[str]) -> int:
    """`consul monitor [-log-level L] [-log-json]`: the agent's log lines as they happen, until Ctrl-C (exit 0)
    or until the agent ends the stream (exit 1, Consul's "Remote side ended the monitor!")."""
    client = _client_or_error(values)
    if client is None:
        return 1
    params = {"loglevel": values.get("log-level") or "INFO"}
    if values.get("log-json"):
        params["logjson"] = "true"
    lines = client.stream_lines("/v1/agent/monitor", params)
    try:
        try:
            first = next(lines, None)
        except ClientError as err:
            _err(f"Error starting monitor: {err}")
            return 1
        if first is not None:
            print(first, flush=True)
            try:
                for line in lines:
                    print(line, flush=True)
            except ClientError:
                pass  # the connection broke: the remote side ended the monitor
    except KeyboardInterrupt:
        return 0
    finally:
        lines.close()
    _out("")
    _out("Remote side ended the monitor! This usually means that the\nremote side has exited or crashed.")
    return 1


COMMANDS: dict[str, Command] = {
    "info": Command(
        "info",
        "Provides debugging information for operators.",
        "Usage: consul info [options]\n\n  Provides debugging information for operators",
        HTTP_FLAGS,
        run_info,
    ),
    "maint": Command(
        "maint",
        "Controls node or service maintenance mode",
        "Usage: consul maint [options]\n\n"
        "  Places a node or service into maintenance mode. During maintenance mode,\n"
        "  the node or service will be excluded from all queries through the DNS\n"
        "  or API interfaces, effectively taking it out of the pool of available\n"
        "  nodes. This is done by registering an additional critical health check.\n\n"
        "  When enabling maintenance mode for a node or service, you may optionally\n"
        '  specify a reason string. This string will appear in the "Notes" field\n'
        "  of the critical health check which is registered against the node or\n"
        "  service. If no reason is provided, a default value will be used.\n\n"
        "  Maintenance mode is persistent, and will be restored in the event of an\n"
        "  agent restart. It is therefore required to disable maintenance mode on\n"
        "  a given node or service before it will be placed back into the pool.\n\n"
        "  By default, we operate on the node as a whole. By specifying the\n"
        '  "-service" argument, this behavior can be changed to enable or disable\n'
        "  only a specific service.\n\n"
        "  If no arguments are given, the agent's maintenance status will be shown.\n"
        "  This will return blank if nothing is currently under maintenance.",
        (
            *HTTP_FLAGS,
            Flag("enable", "Enable maintenance mode.", is_bool=True),
            Flag("disable", "Disable maintenance mode.", is_bool=True),
            Flag("reason", "Text describing the maintenance reason.", placeholder="<string>"),
            Flag("service", "Control maintenance mode for a specific service ID.", placeholder="<string>"),
        ),
        run_maint,
    ),
    "monitor": Command(
        "monitor",
        "Stream logs from a Consul agent",
        "Usage: consul monitor [options]\n\n"
        "  Shows recent log messages of a Consul agent, and attaches to the agent,\n"
        "  outputting log messages as they occur in real time. The monitor lets you\n"
        "  listen for log levels that may be filtered out of the Consul agent. For\n"
        "  example your agent may only be logging at INFO level, but with the monitor\n"
        "  you can see the DEBUG level logs.",
        (
            *HTTP_FLAGS,
            Flag("log-level", "Log level of the agent.", default="INFO", placeholder="<string>"),
            Flag("log-json", "Output logs in JSON format.", is_bool=True),
        ),
        run_monitor,
    ),
    "reload": Command(
        "reload",
        "Triggers the agent to reload configuration files",
        "Usage: consul reload\n\n"
        "  Causes the agent to reload configurations. This can be used instead\n"
        "  of sending the SIGHUP signal to the agent.",
        HTTP_FLAGS,
        run_reload,
    ),
}
