"""The agent's command line: Consul's ``agent`` flags, parsed by Go's rules (agent/goflags.py) into config-file form.

Each flag names the config key it sets (``-http-port`` is ``ports.http``), so flags and files go through one
validator and one merge (agent/config.py).  Repeatable flags (``-join``, ``-node-meta``...) accumulate; the rest
keep the last value, as Go's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from agent.config_errors import ConfigError, HelpRequested
from agent.durations import parse_duration
from agent.goflags import Flag, FlagError, HelpFlag, go_int, parse_flag_pairs

__all__ = ["AGENT_FLAGS", "AGENT_USAGE", "Flags", "parse_flags"]


@attrs.frozen
class Flags:
    """A parsed command line.  ``config`` holds the flag values in config-file form (``{"ports": {"http": 1}}``)
    so files and flags go through one validator and one merge."""

    argv: tuple[str, ...] = ()
    dev: bool = False
    #: ``("dir" | "file", path)`` in command-line order: Consul loads them in that order.
    config_paths: tuple[tuple[str, str], ...] = ()
    config_format: str | None = None
    hcl: tuple[str, ...] = ()
    config: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def config_dirs(self) -> tuple[str, ...]:
        return tuple(path for kind, path in self.config_paths if kind == "dir")

    @property
    def config_files(self) -> tuple[str, ...]:
        return tuple(path for kind, path in self.config_paths if kind == "file")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError("parse error") from None  # Go's flag package hides time's detail


def _meta(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep:
        raise ValueError(f'Missing ":" in: {text}')
    return key, value


@attrs.frozen
class _AgentFlag:
    """One flag: how Go parses its value, and where the value goes (``kind``: bool, int, str, duration; list and
    meta accumulate; path and special are the loader's own)."""

    kind: str
    key: tuple[str, ...] = ()

    def spec(self, name: str) -> Flag:
        convert = {"int": go_int, "duration": _duration, "meta": _meta}.get(self.kind)
        return Flag(name, is_bool=self.kind == "bool", convert=convert)


def _f(kind: str, key: str = "") -> _AgentFlag:
    return _AgentFlag(kind, tuple(key.split(".")) if key else ())


AGENT_FLAGS: dict[str, _AgentFlag] = {
    "server": _f("bool", "server"),
    "bootstrap": _f("bool", "bootstrap"),
    "bootstrap-expect": _f("int", "bootstrap_expect"),
    "data-dir": _f("str", "data_dir"),
    "node": _f("str", "node_name"),
    "node-id": _f("str", "node_id"),
    "node-meta": _f("meta", "node_meta"),
    "bind": _f("str", "bind_addr"),
    "advertise": _f("str", "advertise_addr"),
    "client": _f("str", "client_addr"),
    "config-dir": _f("path"),
    "config-file": _f("path"),
    "config-format": _f("special"),
    "hcl": _f("special"),
    "dev": _f("bool"),  # not a config key: the loader adds the dev source
    "join": _f("list", "start_join"),
    "retry-join": _f("list", "retry_join"),
    "retry-interval": _f("duration", "retry_interval"),
    "retry-max": _f("int", "retry_max"),
    "datacenter": _f("str", "datacenter"),
    # Consul itself has only -datacenter; the user's brief and the guide's readers type -dc, so it is an alias.
    "dc": _f("str", "datacenter"),
    "domain": _f("str", "domain"),
    "recursor": _f("list", "recursors"),
    "log-level": _f("str", "log_level"),
    "log-json": _f("bool", "log_json"),
    "encrypt": _f("str", "encrypt"),
    "ui": _f("bool", "ui_config.enabled"),
    "http-port": _f("int", "ports.http"),
    "https-port": _f("int", "ports.https"),
    "dns-port": _f("int", "ports.dns"),
    "grpc-port": _f("int", "ports.grpc"),
    "serf-lan-port": _f("int", "ports.serf_lan"),
    "serf-wan-port": _f("int", "ports.serf_wan"),
    "server-port": _f("int", "ports.server"),
    "profile": _f("str", "gossip_profile"),
    "rejoin": _f("bool", "rejoin_after_leave"),
    "pid-file": _f("str", "pid_file"),
    "disable-keyring-file": _f("bool", "disable_keyring_file"),
    "enable-script-checks": _f("bool", "enable_script_checks"),
    "enable-local-script-checks": _f("bool", "enable_local_script_checks"),
    # Consul's other agent flags (command/agent, agent/config/flags.go): parsed and typed like the rest; the keys
    # they set are named at start as having no effect here (agent/consul_keys.py).
    "advertise-wan": _f("str", "advertise_addr_wan"),
    "allow-write-http-from": _f("list", "http_config.allow_write_http_from"),
    "alt-domain": _f("str", "alt_domain"),
    "auto-reload-config": _f("bool", "auto_reload_config"),
    "check_output_max_size": _f("int", "check_output_max_size"),
    "default-query-time": _f("str", "default_query_time"),
    "disable-host-node-id": _f("bool", "disable_host_node_id"),
    "grpc-tls-port": _f("int", "ports.grpc_tls"),
    "join-wan": _f("list", "start_join_wan"),
    "log-file": _f("str", "log_file"),
    "log-rotate-bytes": _f("int", "log_rotate_bytes"),
    "log-rotate-duration": _f("str", "log_rotate_duration"),
    "log-rotate-max-files": _f("int", "log_rotate_max_files"),
    "max-query-time": _f("str", "max_query_time"),
    "non-voting-server": _f("bool", "read_replica"),
    "read-replica": _f("bool", "read_replica"),
    "primary-gateway": _f("list", "primary_gateways"),
    "protocol": _f("int", "protocol"),
    "raft-protocol": _f("int", "raft_protocol"),
    "retry-interval-wan": _f("duration", "retry_interval_wan"),
    "retry-join-wan": _f("list", "retry_join_wan"),
    "retry-max-wan": _f("int", "retry_max_wan"),
    "segment": _f("str", "segment"),
    "serf-lan-allowed-cidrs": _f("list", "serf_lan_allowed_cidrs"),
    "serf-lan-bind": _f("str", "serf_lan"),
    "serf-wan-allowed-cidrs": _f("list", "serf_wan_allowed_cidrs"),
    "serf-wan-bind": _f("str", "serf_wan"),
    "syslog": _f("bool", "enable_syslog"),
    "ui-content-path": _f("str", "ui_config.content_path"),
    "ui-dir": _f("str", "ui_config.dir"),
}
_SPECS = tuple(flag.spec(name) for name, flag in AGENT_FLAGS.items())


def parse_flags(argv: Sequence[str]) -> Flags:
    """Consul's agent flags with Go's ``flag`` package semantics."""
    state: dict[str, Any] = {"dev": False, "paths": [], "format": None, "hcl": [], "config": {}}
    rest: list[str] = []
    try:
        for name, value in parse_flag_pairs(argv, _SPECS, rest):
            _apply_flag(state, name, AGENT_FLAGS[name], value)
    except HelpFlag as exc:
        raise HelpRequested(str(exc)) from None
    except FlagError as exc:
        raise ConfigError(f"error parsing flags: {exc}") from None
    if rest:
        raise ConfigError(f"Unexpected extra arguments: [{' '.join(rest)}]")
    return Flags(
        argv=tuple(argv),
        dev=state["dev"],
        config_paths=tuple(state["paths"]),
        config_format=state["format"],
        hcl=tuple(state["hcl"]),
        config=state["config"],
    )


def _apply_flag(state: dict[str, Any], name: str, flag: _AgentFlag, value: Any) -> None:
    """Record one flag: repeatable ones accumulate, scalars keep the last value (as Go)."""
    if name == "dev":
        state["dev"] = value
    elif name in ("config-dir", "config-file"):
        state["paths"].append((name.removeprefix("config-"), value))
    elif name == "config-format":
        state["format"] = value
    elif name == "hcl":
        state["hcl"].append(value)
    else:
        node = state["config"]
        for part in flag.key[:-1]:
            node = node.setdefault(part, {})
        last = flag.key[-1]
        if flag.kind == "list":
            node.setdefault(last, []).append(value)
        elif flag.kind == "meta":
            node.setdefault(last, {})[value[0]] = value[1]
        else:
            node[last] = value


#: What ``python -m agent -h`` prints (on stderr, exit 0).
AGENT_USAGE = """Usage: python -m agent [agent] [options]

  Starts the agent and runs until an interrupt is received.

Options (single or double dash, -flag=value or -flag value):
  -server  -bootstrap  -bootstrap-expect N  -dev  -ui
  -node NAME  -node-id UUID  -node-meta k:v  -datacenter/-dc NAME  -domain NAME
  -bind IP  -advertise IP  -client IP  -data-dir PATH
  -config-dir DIR  -config-file FILE  (repeatable)  -config-format json|hcl  -hcl TEXT
  -join ADDR  -retry-join ADDR  (repeatable)  -retry-interval DURATION  -retry-max N  -rejoin
  -http-port N  -dns-port N  -serf-lan-port N  -serf-wan-port N  -server-port N  -grpc-port N
  -log-level LEVEL  -log-json  -profile lan|local  -recursor ADDR  -pid-file PATH
  -enable-script-checks  -enable-local-script-checks  -disable-keyring-file
  Consul's other agent flags parse too; what they set is named at start ("accepted, no effect here")."""
