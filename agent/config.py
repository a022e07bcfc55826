"""The agent's configuration: Consul's flags and config files, merged and validated before anything binds.

Consul's rules (consul-compat §5), because operators bring their Consul command lines and config dirs:

- Go ``flag`` syntax: ``-x`` or ``--x``, ``-x=v`` or ``-x v``; booleans by presence or ``-x=true|false`` (never
  ``-x false``); parsing stops at the first non-flag (then ``Unexpected extra arguments``) or after ``--``.
- Sources merge in this order, later wins: defaults -> dev defaults -> list values of flags -> each
  ``-config-dir``/``-config-file`` argument in command-line order (a dir: its ``*.json``/``*.hcl`` files in
  byte-wise name order, others skipped with a warning) -> scalar values of flags -> ``-hcl`` fragments.
  Scalars: last writer wins; maps (``ports``, ``node_meta``, ``dns_config``...) merge key-wise; lists
  (``retry_join``, ``start_join``, ``recursors``, ``services``, ``checks``) concatenate.  ``service``/``check``
  (one object, or HCL blocks) are collected with ``services``/``checks``.
- Unknown keys, wrong types and malformed files are fatal: ``ConfigError`` whose text is Consul's (the file and
  the dotted key), printed by the supervisor as ``==> <message>``.
- ``bind_addr`` unset: the host's single private IPv4 address (Consul's private blocks, interfaces that are up,
  loopback only when nothing else has an address); none or several is an error asking for ``-bind``.
  ``bind_addr = "0.0.0.0"`` binds everything and advertises the detected address, as Consul.

Ours, not Consul's: the file key ``gossip_profile`` / flag ``-profile`` (``lan`` default, ``wan``, ``local``;
``local`` under ``-dev``) picks the memberlist timing profile (``protocol.config.PROFILES``); ``http_config`` knows only
``allowed_hosts`` (Host names the HTTP API answers besides its own) and ``limits`` only Consul's
``http_max_conns_per_client``.  ``retry_interval``
and ``reconnect_timeout`` also accept a number of seconds.  Keys outside ``KEYS`` (``addresses``,
``telemetry``...) are unknown keys here, and keys match exactly (Go's decoder also folds their case).
"""

from __future__ import annotations

import array
import ipaddress
import json
import os
import re
import socket
import stat
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import cattrs

from agent.durations import parse_duration
from protocol.keyring import KeyringError, decode_key

__all__ = [
    "ACL_DEFAULT_POLICIES",
    "ACL_DOWN_POLICIES",
    "GOSSIP_PROFILES",
    "KEYS",
    "RESTART_REQUIRED",
    "ACLConfig",
    "ACLTokens",
    "AgentConfig",
    "ConfigError",
    "Flags",
    "HelpRequested",
    "Interface",
    "Ports",
    "default_bind_addr",
    "diff_config",
    "list_interfaces",
    "load_config",
    "parse_duration",
    "parse_flags",
    "reload_config",
]

HOUR = 3600.0
DEFAULT_RECONNECT_TIMEOUT = 72 * HOUR
#: Consul's performance.raft_multiplier: its default and the largest value it accepts (consul.MaxRaftMultiplier).
DEFAULT_RAFT_MULTIPLIER = 5
MAX_RAFT_MULTIPLIER = 10
MIN_RECONNECT_TIMEOUT = 8 * HOUR
#: protocol.config.PROFILES' names (not imported: only the supervisor and the gossip driver touch the protocol).
GOSSIP_PROFILES = ("lan", "local", "wan")
#: Consul's logging.allowedLogLevels.
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR", "ERROR")
#: What a reload cannot change in a running agent: the supervisor reports these as "restart required".
RESTART_REQUIRED = frozenset(
    {
        "node_name", "node_id", "datacenter", "domain", "data_dir", "bind_addr", "advertise_addr", "client_addr",
        "server", "bootstrap", "bootstrap_expect", "dev", "ports", "gossip_profile", "reconnect_timeout",
        "encrypt", "encrypt_verify_incoming", "encrypt_verify_outgoing", "primary_datacenter", "acl",
    }
)  # fmt: skip


class ConfigError(Exception):
    """A configuration the agent refuses to start (or reload) with; ``str(err)`` is the whole message."""


class HelpRequested(ConfigError):
    """``-h``/``-help``: Go's flag package answers with ErrHelp; the caller prints usage and exits 0."""


# ----------------------------------------------------------------------------------------------------------------
# The result


@attrs.frozen
class Ports:
    """Consul's ports; a value <= 0 in a file or flag disables the listener and is stored as -1."""

    http: int = 8500
    dns: int = 8600
    serf_lan: int = 8301
    serf_wan: int = 8302
    server: int = 8300
    grpc: int = -1
    https: int = -1


@attrs.frozen
class ACLTokens:
    """``acl.tokens``: secrets, kept out of every repr (and so of every log line)."""

    initial_management: str = attrs.field(default="", repr=False)
    agent: str = attrs.field(default="", repr=False)
    default: str = attrs.field(default="", repr=False)
    agent_recovery: str = attrs.field(default="", repr=False)
    dns: str = attrs.field(default="", repr=False)
    replication: str = attrs.field(default="", repr=False)


#: ``acl.default_policy`` values, and ``acl.down_policy`` values (Consul's ``NewACLResolver``).
ACL_DEFAULT_POLICIES = ("allow", "deny")
ACL_DOWN_POLICIES = ("allow", "deny", "async-cache", "extend-cache")


@attrs.frozen
class ACLConfig:
    """Consul's ``acl`` block (its defaults: disabled, ``allow``, ``extend-cache``, TTLs of 30 s)."""

    enabled: bool = False
    default_policy: str = "allow"
    down_policy: str = "extend-cache"
    enable_token_persistence: bool = False
    enable_token_replication: bool = False
    enable_key_list_policy: bool = False
    token_ttl: float = 30.0
    policy_ttl: float = 30.0
    role_ttl: float = 30.0
    tokens: ACLTokens = ACLTokens()


@attrs.frozen
class AgentConfig:
    """The validated configuration.

    ``load_config`` resolves the derived defaults (``leave_on_terminate``/``skip_leave_on_interrupt`` from
    ``server``, the bind address...); constructing one directly, as tests do, gets a client's defaults.
    Mappings are plain dicts: treat them as read-only.
    """

    node_name: str = "node"
    node_id: str | None = None
    datacenter: str = "dc1"
    #: Consul's ``primary_datacenter`` (the ACL authority; ``acl_datacenter`` before 1.4): this DC when unset.
    primary_datacenter: str = "dc1"
    #: Consul's ``acl`` block (issue 13).
    acl: ACLConfig = ACLConfig()
    domain: str = "consul."
    data_dir: str | None = None
    bind_addr: str = "127.0.0.1"
    advertise_addr: str = "127.0.0.1"
    client_addr: str = "127.0.0.1"
    server: bool = False
    bootstrap: bool = False
    bootstrap_expect: int = 0
    dev: bool = False
    #: Consul's ``performance.raft_multiplier`` (1..10; 5 by default, 1 under -dev): scales Raft's timeouts.
    raft_multiplier: int = DEFAULT_RAFT_MULTIPLIER
    ui: bool = False
    start_join: tuple[str, ...] = ()
    retry_join: tuple[str, ...] = ()
    retry_interval: float = 30.0
    retry_max: int = 0
    ports: Ports = Ports()
    leave_on_terminate: bool = True
    skip_leave_on_interrupt: bool = False
    rejoin_after_leave: bool = False
    reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT
    log_level: str = "info"
    log_json: bool = False
    node_meta: Mapping[str, str] = attrs.field(factory=dict)
    gossip_profile: str = "lan"
    services: tuple[Mapping[str, Any], ...] = ()
    checks: tuple[Mapping[str, Any], ...] = ()
    enable_script_checks: bool = False
    enable_local_script_checks: bool = False
    #: Gossip encryption (Consul's ``encrypt``): a base64 key of 16, 24 or 32 bytes; "" = plaintext gossip.
    #: The keyring file ``<data_dir>/serf/local.keyring`` wins when it exists (agent/keyring_file.py).
    encrypt: str = attrs.field(default="", repr=False)
    encrypt_verify_incoming: bool = True
    encrypt_verify_outgoing: bool = True
    recursors: tuple[str, ...] = ()
    dns_config: Mapping[str, Any] = attrs.field(factory=dict)
    #: ``limits.http_max_conns_per_client`` (Consul's, 200; 0: no cap).
    http_max_conns_per_client: int = 200
    #: ``http_config.allowed_hosts`` (ours): Host names the HTTP API answers besides its own (agent/http/hosts.py).
    http_allowed_hosts: tuple[str, ...] = ()
    config_dirs: tuple[str, ...] = ()
    config_files: tuple[str, ...] = ()
    #: The command line it was loaded from: ``reload_config`` replays it. Not in the repr: it may hold -encrypt.
    argv: tuple[str, ...] = attrs.field(default=(), repr=False)
    #: Consul's startup warnings (skipped files, deprecated keys, non-DNS node names), for the log.
    warnings: tuple[str, ...] = attrs.field(default=(), eq=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for /v1/agent/self and logs)."""
        return _converter.unstructure(self)


_converter = cattrs.Converter()
#: Fields that say where a config came from rather than what it is: a reload never "changes" them.
_PROVENANCE = frozenset({"config_dirs", "config_files", "argv", "warnings"})


def diff_config(old: AgentConfig, new: AgentConfig) -> list[str]:
    """The names of the fields that differ, in field order (``RESTART_REQUIRED`` tells which need a restart)."""
    return [
        field.name
        for field in attrs.fields(AgentConfig)
        if field.name not in _PROVENANCE and getattr(old, field.name) != getattr(new, field.name)
    ]


# ----------------------------------------------------------------------------------------------------------------
# Command-line flags


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


@attrs.frozen
class _Flag:
    kind: str  # bool | int | str | duration | list | meta | path | special
    key: tuple[str, ...] = ()  # where the value goes in Flags.config


def _f(kind: str, key: str = "") -> _Flag:
    return _Flag(kind, tuple(key.split(".")) if key else ())


_FLAGS: dict[str, _Flag] = {
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
    "dev": _f("special"),
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
}

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _flag_error(message: str) -> ConfigError:
    return ConfigError(f"error parsing flags: {message}")


def parse_flags(argv: Sequence[str]) -> Flags:
    """Consul's agent flags with Go's ``flag`` package semantics (see the module docstring)."""
    args = list(argv)
    state: dict[str, Any] = {"dev": False, "paths": [], "format": None, "hcl": [], "config": {}}
    i = 0
    while i < len(args):
        arg = args[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        dashes = 2 if arg[1] == "-" else 1
        if arg == "--":
            i += 1
            break
        name = arg[dashes:]
        if not name or name[0] in "-=":
            raise _flag_error(f"bad flag syntax: {arg}")
        i += 1
        name, has_value, value = name.partition("=")
        if name in ("h", "help"):
            raise HelpRequested("flag: help requested")
        flag = _FLAGS.get(name)
        if flag is None:
            raise _flag_error(f"flag provided but not defined: -{name}")
        if flag.kind == "bool" or name == "dev":
            _apply_flag(state, name, flag, _flag_bool(name, value) if has_value else True)
            continue
        if not has_value:
            if i >= len(args):
                raise _flag_error(f"flag needs an argument: -{name}")
            value = args[i]
            i += 1
        _apply_flag(state, name, flag, _flag_value(name, flag.kind, value))
    if args[i:]:
        raise ConfigError(f"Unexpected extra arguments: [{' '.join(args[i:])}]")
    return Flags(
        argv=tuple(argv),
        dev=state["dev"],
        config_paths=tuple(state["paths"]),
        config_format=state["format"],
        hcl=tuple(state["hcl"]),
        config=state["config"],
    )


def _flag_bool(name: str, value: str) -> bool:
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    raise _flag_error(f'invalid boolean value "{value}" for -{name}: parse error')


def _flag_value(name: str, kind: str, value: str) -> Any:
    """Convert one flag value as Go's flag.Value.Set would."""
    try:
        if kind == "int":
            number = int(value, 0)
            if not -(2**63) <= number < 2**63:
                raise _flag_error(f'invalid value "{value}" for flag -{name}: value out of range')
            return number
        if kind == "duration":
            return parse_duration(value)
    except ValueError:
        raise _flag_error(f'invalid value "{value}" for flag -{name}: parse error') from None
    if kind == "meta":
        key, sep, val = value.partition(":")
        if not sep:
            raise _flag_error(f'invalid value "{value}" for flag -{name}: Missing ":" in: {value}')
        return (key, val)
    return value


def _apply_flag(state: dict[str, Any], name: str, flag: _Flag, value: Any) -> None:
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


# ----------------------------------------------------------------------------------------------------------------
# The schema of a config source, and Go's (mapstructure's) words for type errors


class _Blocks(list):  # type: ignore[type-arg]
    """HCL blocks (``ports { ... }`` twice): python-hcl2 returns them as a list of dicts."""


#: ``acl.tokens`` keys; ``master`` and ``agent_master`` are the deprecated names of two of them.
_ACL_TOKEN_KEYS = ("initial_management", "agent", "default", "agent_recovery", "dns", "replication", "master",
                   "agent_master")  # fmt: skip
_RAW = "raw"  # an object kept as it is (dns_config, one service or check)
_RAW_LIST = "raw_list"  # services / checks
KEYS: dict[str, Any] = {
    "node_name": "string",
    "node_id": "string",
    "bind_addr": "string",
    "advertise_addr": "string",
    "client_addr": "string",
    "server": "bool",
    "bootstrap": "bool",
    "bootstrap_expect": "int",
    "datacenter": "string",
    "domain": "string",
    "data_dir": "string",
    "start_join": "[]string",
    "retry_join": "[]string",
    "retry_interval": "duration",
    "retry_max": "int",
    "ports": {name: "int" for name in ("http", "dns", "serf_lan", "serf_wan", "server", "grpc", "https")},
    "leave_on_terminate": "bool",
    "skip_leave_on_interrupt": "bool",
    "rejoin_after_leave": "bool",
    "reconnect_timeout": "duration",
    "log_level": "string",
    "log_json": "bool",
    "ui": "bool",
    "ui_config": {"enabled": "bool"},
    "performance": {"raft_multiplier": "int"},
    "node_meta": "map[string]string",
    "service": _RAW,
    "services": _RAW_LIST,
    "check": _RAW,
    "checks": _RAW_LIST,
    "dns_config": _RAW,
    "recursors": "[]string",
    "gossip_profile": "string",
    "enable_script_checks": "bool",
    "enable_local_script_checks": "bool",
    "limits": {"http_max_conns_per_client": "int"},
    "http_config": {"allowed_hosts": "[]string"},
    "encrypt": "string",
    "encrypt_verify_incoming": "bool",
    "encrypt_verify_outgoing": "bool",
    "primary_datacenter": "string",
    "acl": {
        "enabled": "bool",
        "default_policy": "string",
        "down_policy": "string",
        "enable_token_persistence": "bool",
        "enable_token_replication": "bool",
        "enable_key_list_policy": "bool",
        "token_ttl": "duration",
        "policy_ttl": "duration",
        "role_ttl": "duration",
        "tokens": dict.fromkeys(_ACL_TOKEN_KEYS, "string"),
    },
    # Consul's deprecated ACL keys (agent/config/deprecated.go), mapped onto the acl block with a warning.
    "acl_datacenter": "string",
    "acl_default_policy": "string",
    "acl_down_policy": "string",
    "acl_ttl": "duration",
    "acl_master_token": "string",
    "acl_agent_master_token": "string",
    "acl_agent_token": "string",
    "acl_token": "string",
    "acl_replication_token": "string",
    "enable_acl_replication": "bool",
    "acl_enable_key_list_policy": "bool",
}


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _go_kind(value: Any) -> str:
    return {"[]interface {}": "slice", "map[string]interface {}": "map"}.get(_go_type(value), _go_type(value))


def _go_value(value: Any) -> str:
    """Go's ``%v``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_value(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _unconvertible(name: str, expected: str, value: Any) -> str:
    return (
        f"'{name}' expected type '{expected}', got unconvertible type '{_go_type(value)}', value: '{_go_value(value)}'"
    )


@attrs.define
class _Checker:
    """Walks one source against ``KEYS``: collects type errors and unknown keys, returns the normalised values."""

    errors: list[str] = attrs.field(factory=list)
    unknown: list[str] = attrs.field(factory=list)

    def struct(self, schema: Mapping[str, Any], data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            path = f"{prefix}{key}"
            if key not in schema:
                self.unknown.append(path)
                continue
            if value is None:  # JSON/HCL null: as if absent (a nil pointer to Go)
                continue
            checked = self.value(schema[key], value, path)
            if checked is not None:
                out[key] = checked
        return out

    def value(self, spec: Any, value: Any, name: str) -> Any:
        if isinstance(spec, dict):
            mapping = self.mapping(value, name)
            return None if mapping is None else self.struct(spec, mapping, f"{name}.")
        return getattr(self, _LEAF_CHECKS[spec])(value, name)

    def mapping(self, value: Any, name: str) -> dict[str, Any] | None:
        """A JSON object or HCL block(s); several blocks merge in order."""
        if isinstance(value, _Blocks):
            merged: dict[str, Any] = {}
            for block in value:
                merged = _merge(merged, block)
            return merged
        if isinstance(value, dict):
            return value
        self.errors.append(f"'{name}' expected a map, got '{_go_kind(value)}'")
        return None

    def leaf_bool(self, value: Any, name: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.errors.append(_unconvertible(name, "bool", value))
        return None

    def leaf_int(self, value: Any, name: str) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        self.errors.append(_unconvertible(name, "int", value))
        return None

    def leaf_string(self, value: Any, name: str) -> str | None:
        if isinstance(value, str):
            return value
        self.errors.append(_unconvertible(name, "string", value))
        return None

    def leaf_duration(self, value: Any, name: str) -> str | float | None:
        """A Go duration string (checked when the config is built) or, ours, a number of seconds."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return self.leaf_string(value, name)

    def leaf_list_string(self, value: Any, name: str) -> list[str] | None:
        if isinstance(value, str):  # Consul's StringToSliceHookFunc(",")
            return value.split(",") if value else []
        if not isinstance(value, list):
            self.errors.append(f"'{name}': source data must be an array or slice, got {_go_kind(value)}")
            return None
        items = [self.leaf_string(item, f"{name}[{i}]") for i, item in enumerate(value)]
        return [item for item in items if item is not None]

    def leaf_map_string(self, value: Any, name: str) -> dict[str, str] | None:
        mapping = self.mapping(value, name)
        if mapping is None:
            return None
        out = {str(k): self.leaf_string(v, f"{name}[{k}]") for k, v in mapping.items()}
        return {k: v for k, v in out.items() if v is not None}

    def leaf_raw(self, value: Any, name: str) -> dict[str, Any] | None:
        if isinstance(value, _Blocks) and len(value) > 1:
            self.errors.append(f"'{name}' expected a map, got 'slice'")
            return None
        mapping = self.mapping(value, name)
        return None if mapping is None else _plain(mapping)

    def leaf_raw_list(self, value: Any, name: str) -> list[dict[str, Any]] | None:
        if not isinstance(value, list):
            self.errors.append(f"'{name}': source data must be an array or slice, got {_go_kind(value)}")
            return None
        items = [self.mapping(item, f"{name}[{i}]") for i, item in enumerate(value)]
        return [_plain(item) for item in items if item is not None]


_LEAF_CHECKS = {
    "bool": "leaf_bool",
    "int": "leaf_int",
    "string": "leaf_string",
    "duration": "leaf_duration",
    "[]string": "leaf_list_string",
    "map[string]string": "leaf_map_string",
    _RAW: "leaf_raw",
    _RAW_LIST: "leaf_raw_list",
}


def _plain(value: Any) -> Any:
    """A raw object with HCL's blocks unwrapped: one block is an object (as HCL1 + Consul's weak decoding)."""
    if isinstance(value, _Blocks):
        return _plain(value[0]) if len(value) == 1 else [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_source(name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one parsed source; ``service``/``check`` join ``services``/``checks`` (all HCL blocks count)."""
    data = dict(data)
    singles = {}
    for single in ("service", "check"):
        value = data.pop(single, None)
        if isinstance(value, _Blocks):
            singles[single] = list(value)
        elif value is not None:
            data[single] = value
    checker = _Checker()
    out = checker.struct(KEYS, data, "")
    for single, blocks in singles.items():
        out.setdefault(single + "s", []).extend(_plain(b) for b in blocks)
    if checker.errors:
        points = "\n".join(sorted(f"* {e}" for e in checker.errors))
        raise ConfigError(f"failed to parse {name}: {len(checker.errors)} error(s) decoding:\n\n{points}")
    if checker.unknown:
        count = len(checker.unknown)
        header = "1 error occurred:" if count == 1 else f"{count} errors occurred:"
        points = "\n\t".join(f"* invalid config key {key}" for key in sorted(checker.unknown))
        raise ConfigError(f"failed to parse {name}: {header}\n\t{points}")
    for single in ("service", "check"):
        if single in out:
            out.setdefault(single + "s", []).append(out.pop(single))
    _check_definitions(name, out)
    return out


def _check_definitions(name: str, source: Mapping[str, Any]) -> None:
    """Each service/check definition of one source, parsed now so that an error names its file and key."""
    from agent.services.definitions import DefinitionError, parse_check, parse_service

    try:
        for i, raw in enumerate(source.get("services", [])):
            parse_service(raw, api=False, path=f"services[{i}]")
        for i, raw in enumerate(source.get("checks", [])):
            parse_check(raw, api=False, path=f"checks[{i}]")
    except DefinitionError as exc:
        raise ConfigError(f"failed to parse {name}: {exc.message}") from None


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Consul's merge: maps key-wise (recursively), lists concatenated, anything else replaced."""
    out = dict(a)
    for key, value in b.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = _merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = old + value
        else:
            out[key] = value
    return out


def _split_lists(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flag values as two sources: Consul merges the lists before the files and the scalars after them."""
    lists = {k: v for k, v in config.items() if isinstance(v, list)}
    return lists, {k: v for k, v in config.items() if k not in lists}


# ----------------------------------------------------------------------------------------------------------------
# Reading files


def _read_json(name: str, text: str) -> Any:
    def no_constants(token: str) -> Any:
        raise ValueError(f"invalid JSON value {token}")

    try:
        return json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"failed to parse {name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"failed to parse {name}: {exc}") from None


def _read_hcl(name: str, text: str) -> Any:
    import hcl2
    from hcl2.utils import SerializationOptions

    # python-hcl2 8.x keeps the quotes of strings ('"n1"') unless told otherwise; blocks come as lists of dicts.
    options = SerializationOptions(with_comments=False, strip_string_quotes=True, preserve_heredocs=False)
    try:
        data = hcl2.loads(text, serialization_options=options)
    except Exception as exc:  # lark's errors, and python-hcl2's own
        raise ConfigError(f"failed to parse {name}: {_hcl_message(exc)}") from None
    return _from_hcl(data)


def _hcl_message(exc: Exception) -> str:
    line, column = getattr(exc, "line", None), getattr(exc, "column", None)
    token = getattr(exc, "token", None)
    if token is not None:
        text = str(token)
        if token.type == "$END":
            what = "unexpected end of input"
        elif not text.strip():
            what = "unexpected newline" if "\n" in text else "unexpected whitespace"
        else:
            what = f"unexpected {text.strip()!r}"
    elif getattr(exc, "char", None) is not None:
        what = f"unexpected character {exc.char!r}"  # type: ignore[attr-defined]
    else:
        what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(line, int) and line > 0:
        return f"invalid HCL at line {line}, column {column}: {what}"
    return f"invalid HCL: {what}"


def _from_hcl(value: Any) -> Any:
    """python-hcl2's output in JSON's shapes: block lists become ``_Blocks``, block markers go."""
    if isinstance(value, dict):
        return {k: _from_hcl(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        items = [_from_hcl(v) for v in value]
        if value and all(isinstance(v, dict) and v.get("__is_block__") for v in value):
            return _Blocks(items)
        return items
    return value


def _parse_source(name: str, text: str, fmt: str) -> dict[str, Any] | None:
    """One file's validated values; None for an empty file (Consul skips those)."""
    if not text.strip():
        return None
    data = _read_json(name, text) if fmt == "json" else _read_hcl(name, text)
    if not isinstance(data, dict):
        kind = "array" if isinstance(data, list) else _go_type(data)
        raise ConfigError(f"failed to parse {name}: json: cannot unmarshal {kind} into Go value of type "
                          "map[string]interface {}")  # fmt: skip
    return _check_source(name, data)


def _go_os_error(op: str, path: str, exc: OSError) -> str:
    """Go's *PathError text: ``open <path>: no such file or directory``."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{op} {path}: {reason[:1].lower()}{reason[1:]}"


def _format_of(path: str, forced: str | None) -> str | None:
    if forced:
        return forced
    return "json" if path.endswith(".json") else "hcl" if path.endswith(".hcl") else None


def _read_path(path: str, forced: str | None, warnings: list[str]) -> list[dict[str, Any]]:
    """A file, or a directory's files (byte-wise name order, no recursion, symlinks followed)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"config: Open failed on {path}. {_go_os_error('open', path, exc)}") from None
    if not stat.S_ISDIR(info.st_mode):
        fmt = _format_of(path, forced)
        if fmt is None:
            raise ConfigError(f"file {path} has unknown extension; must be .hcl or .json, or config format must be set")
        return _nonempty([_read_file(path, fmt)])
    try:
        names = sorted(os.listdir(path), key=os.fsencode)
    except OSError as exc:
        raise ConfigError(f"config: Readdir failed on {path}. {_go_os_error('readdirent', path, exc)}") from None
    sources = []
    for entry in names:
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            continue
        fmt = _format_of(full, forced)
        if fmt is None:
            warnings.append(f"skipping file {full}, extension must be .hcl or .json, or config format must be set")
            continue
        sources.append(_read_file(full, fmt))
    return _nonempty(sources)


def _nonempty(sources: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [s for s in sources if s is not None]


def _read_file(path: str, fmt: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"config: failed to read {path}: {_go_os_error('open', path, exc)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"failed to parse {path}: invalid UTF-8 at byte {exc.start}") from None
    return _parse_source(path, text, fmt)


# ----------------------------------------------------------------------------------------------------------------
# Interfaces and the default bind address


@attrs.frozen
class Interface:
    """One network interface as Go's net.Interfaces sees it (only what address selection needs)."""

    name: str
    addresses: tuple[str, ...]
    up: bool = True
    loopback: bool = False


#: go-sockaddr / Consul ipaddr "private" blocks (consul-compat §5.4).
_PRIVATE_BLOCKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16",
    )
)  # fmt: skip

_SIOCGIFCONF = 0x8912
_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


def list_interfaces() -> list[Interface]:
    """The host's IPv4 interface addresses (Linux ioctls SIOCGIFCONF + SIOCGIFFLAGS; no dependency)."""
    import fcntl

    ifreq_size = 40 if struct.calcsize("P") == 8 else 32
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        size = ifreq_size * 64
        while True:
            buf = array.array("B", bytes(size))
            request = struct.pack("iP", size, buf.buffer_info()[0])
            length = struct.unpack("iP", fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, request))[0]
            if length < size:
                break
            size *= 2
        data = buf.tobytes()[:length]
        grouped: dict[str, list[str]] = {}
        flags: dict[str, int] = {}
        for offset in range(0, length - ifreq_size + 1, ifreq_size):
            raw_name = data[offset : offset + 16].split(b"\0", 1)[0]
            address = socket.inet_ntoa(data[offset + 20 : offset + 24])
            link = raw_name.decode(errors="replace").split(":", 1)[0]  # "eth0:1" is an alias on eth0
            grouped.setdefault(link, []).append(address)
            if link not in flags:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, struct.pack("16sH", link.encode(), 0))
                flags[link] = struct.unpack("16sH", reply[:18])[1]
    return [
        Interface(name, tuple(addrs), up=bool(flags[name] & _IFF_UP), loopback=bool(flags[name] & _IFF_LOOPBACK))
        for name, addrs in grouped.items()
    ]


def _private_ipv4(interfaces: Iterable[Interface]) -> list[str]:
    """Consul's ipaddr.GetPrivateIPv4: up interfaces, loopback only when no other up interface has addresses."""
    up = [i for i in interfaces if i.up]
    addresses = [a for i in up if not i.loopback for a in i.addresses]
    if not addresses:
        addresses = [a for i in up if i.loopback for a in i.addresses]
    found = []
    for text in addresses:
        try:
            ip = ipaddress.ip_address(text.split("/", 1)[0])
        except ValueError:
            continue
        if ip.version == 4 and any(ip in block for block in _PRIVATE_BLOCKS) and str(ip) not in found:
            found.append(str(ip))
    return found


def default_bind_addr(interfaces: Sequence[Interface] | None = None) -> str:
    """The single private IPv4 address of the host (``interfaces`` for tests), else Consul's error."""
    if interfaces is None:
        try:
            interfaces = list_interfaces()
        except OSError as exc:
            raise ConfigError(f"Error detecting private IPv4 address: {exc}") from None
    found = _private_ipv4(interfaces)
    if not found:
        raise ConfigError("No private IPv4 address found")
    if len(found) > 1:
        raise ConfigError("Multiple private IPv4 addresses found. Please configure one with 'bind' and/or 'advertise'.")
    return found[0]


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load_config(
    argv: Sequence[str], *, interfaces: Sequence[Interface] | None = None, hostname: str | None = None
) -> AgentConfig:
    """Flags + files merged and validated; raises ConfigError (nothing is bound or written here).

    ``interfaces`` and ``hostname`` replace the host's (tests); they are read only when needed.
    """
    flags = parse_flags(argv)
    if flags.config_format not in (None, "json", "hcl"):
        raise ConfigError("config: -config-format must be either 'hcl' or 'json'")
    warnings: list[str] = []
    lists, scalars = _split_lists(_check_source("command line flags", flags.config))
    sources: list[dict[str, Any]] = [_DEV_SOURCE] if flags.dev else []
    sources.append(lists)
    for _kind, path in flags.config_paths:
        sources.extend(_read_path(path, flags.config_format, warnings))
    sources.append(scalars)
    for index, fragment in enumerate(flags.hcl):
        sources.extend(_nonempty([_parse_source(f"flags-{index}.hcl", fragment, "hcl")]))
    merged: dict[str, Any] = {}
    for source in sources:
        merged = _merge(merged, source)
    return _build(merged, flags, warnings, interfaces, hostname)


def reload_config(
    previous: AgentConfig, *, interfaces: Sequence[Interface] | None = None, hostname: str | None = None
) -> AgentConfig:
    """Consul's reload: the whole load again, same command line, the files as they are now."""
    return load_config(list(previous.argv), interfaces=interfaces, hostname=hostname)


#: Consul's DevSource, as far as our keys go (no ``bootstrap``: a dev server bootstraps without the tag).
_DEV_SOURCE: dict[str, Any] = {
    "server": True,
    "bind_addr": "127.0.0.1",
    "ui_config": {"enabled": True},
    "log_level": "DEBUG",
    "ports": {"grpc": 8502},
    "gossip_profile": "local",
    "performance": {"raft_multiplier": 1},
}


def _build(
    c: dict[str, Any],
    flags: Flags,
    warnings: list[str],
    interfaces: Sequence[Interface] | None,
    hostname: str | None,
) -> AgentConfig:
    """Defaults, derived values and Consul's semantic checks, in the order Consul's builder runs them."""
    ports = _ports(c.get("ports", {}))
    server = c.get("server", False)
    bind_addr, advertise_addr = _addresses(c, interfaces)
    client_addr = _client_addr(c.get("client_addr", "127.0.0.1"))
    ui = c.get("ui_config", {}).get("enabled")
    if "ui" in c:
        warnings.append("The 'ui' field is deprecated. Use the 'ui_config.enabled' field instead.")
        ui = c["ui"] if ui is None else ui
    bootstrap, expect = c.get("bootstrap", False), c.get("bootstrap_expect", 0)
    if expect == 1:
        bootstrap, expect = True, 0
        warnings.append("BootstrapExpect is set to 1; this is the same as Bootstrap mode.")
    values: dict[str, Any] = {
        "node_name": (c.get("node_name") or (socket.gethostname() if hostname is None else hostname)).strip(),
        "node_id": _node_id(c.get("node_id")),
        "datacenter": c.get("datacenter", "dc1").lower(),
        "primary_datacenter": _primary_datacenter(c),
        "acl": _acl(c, warnings),
        "domain": c.get("domain", "consul."),
        "data_dir": c.get("data_dir") or None,
        "bind_addr": bind_addr,
        "advertise_addr": advertise_addr,
        "client_addr": client_addr,
        "server": server,
        "bootstrap": bootstrap,
        "bootstrap_expect": expect,
        "dev": flags.dev,
        "raft_multiplier": _raft_multiplier(c.get("performance", {}).get("raft_multiplier", DEFAULT_RAFT_MULTIPLIER)),
        "ui": bool(ui),
        "start_join": c.get("start_join", []),
        "retry_join": c.get("retry_join", []),
        "retry_interval": _duration("retry_interval", c.get("retry_interval", 30.0)),
        "retry_max": c.get("retry_max", 0),
        "ports": ports,
        "leave_on_terminate": c.get("leave_on_terminate", not server),
        "skip_leave_on_interrupt": c.get("skip_leave_on_interrupt", server),
        "rejoin_after_leave": c.get("rejoin_after_leave", False),
        "reconnect_timeout": _reconnect_timeout(c.get("reconnect_timeout")),
        "log_level": _log_level(c.get("log_level", "INFO")),
        "log_json": c.get("log_json", False),
        "node_meta": c.get("node_meta", {}),
        "gossip_profile": c.get("gossip_profile", "lan"),
        "services": c.get("services", []),
        "checks": c.get("checks", []),
        "enable_script_checks": c.get("enable_script_checks", False),
        "enable_local_script_checks": c.get("enable_local_script_checks", False),
        "encrypt": c.get("encrypt", ""),
        "encrypt_verify_incoming": c.get("encrypt_verify_incoming", True),
        "encrypt_verify_outgoing": c.get("encrypt_verify_outgoing", True),
        "recursors": list(dict.fromkeys(c.get("recursors", []))),
        "dns_config": c.get("dns_config", {}),
        "http_max_conns_per_client": c.get("limits", {}).get("http_max_conns_per_client", 200),
        "http_allowed_hosts": c.get("http_config", {}).get("allowed_hosts", []),
        "config_dirs": flags.config_dirs,
        "config_files": flags.config_files,
        "argv": flags.argv,
    }
    _validate(values, warnings)
    values["warnings"] = tuple(warnings)
    return _converter.structure({**values, "ports": attrs.asdict(ports)}, AgentConfig)


def _deprecated(old: str, new: str) -> str:
    return f"The '{old}' field is deprecated. Use the '{new}' field instead."


#: (deprecated key, where it goes in the acl block) as agent/config/deprecated.go maps them; the new key wins.
_ACL_DEPRECATED = (
    ("acl_default_policy", ("default_policy",), "acl.default_policy"),
    ("acl_down_policy", ("down_policy",), "acl.down_policy"),
    ("acl_ttl", ("token_ttl",), "acl.token_ttl"),
    ("acl_enable_key_list_policy", ("enable_key_list_policy",), "acl.enable_key_list_policy"),
    ("enable_acl_replication", ("enable_token_replication",), "acl.enable_token_replication"),
    ("acl_master_token", ("tokens", "initial_management"), "acl.tokens.initial_management"),
    ("acl_agent_master_token", ("tokens", "agent_recovery"), "acl.tokens.agent_recovery"),
    ("acl_agent_token", ("tokens", "agent"), "acl.tokens.agent"),
    ("acl_token", ("tokens", "default"), "acl.tokens.default"),
    ("acl_replication_token", ("tokens", "replication"), "acl.tokens.replication"),
)


def _primary_datacenter(c: Mapping[str, Any]) -> str:
    """``primary_datacenter``, else the deprecated ``acl_datacenter``, else this datacenter (lower-cased)."""
    return str(c.get("primary_datacenter") or c.get("acl_datacenter") or c.get("datacenter", "dc1")).lower()


def _acl(c: Mapping[str, Any], warnings: list[str]) -> dict[str, Any]:
    """The ``acl`` block with Consul's deprecated keys folded in (each with Consul's warning); `_validate` checks
    the policies (after the datacenter and data dir, as Consul's resolver starts after its builder)."""
    block: dict[str, Any] = {**c.get("acl", {})}
    tokens: dict[str, Any] = {**block.pop("tokens", {})}
    for old, new in (("master", "initial_management"), ("agent_master", "agent_recovery")):
        if old in tokens:
            tokens.setdefault(new, tokens[old])
            del tokens[old]
            warnings.append(_deprecated(f"acl.tokens.{old}", f"acl.tokens.{new}"))
    for old, path, new in _ACL_DEPRECATED:
        if old in c:
            target = tokens if path[0] == "tokens" else block
            target.setdefault(path[-1], c[old])
            warnings.append(_deprecated(old, new))
    if c.get("acl_replication_token"):
        block.setdefault("enable_token_replication", True)
    if "acl_datacenter" in c:  # it implicitly enables ACLs
        block["enabled"] = True
        warnings.append(_deprecated("acl_datacenter", "primary_datacenter"))
    for ttl in ("token_ttl", "policy_ttl", "role_ttl"):
        if ttl in block:
            block[ttl] = _duration(f"acl.{ttl}", block[ttl])
            if block[ttl] < 0:
                raise ConfigError(f"acl.{ttl} cannot be negative")
    return {**block, "tokens": tokens}


def _raft_multiplier(value: int) -> int:
    if not 1 <= value <= MAX_RAFT_MULTIPLIER:
        raise ConfigError(f"performance.raft_multiplier cannot be {value}. Must be between 1 and {MAX_RAFT_MULTIPLIER}")
    return value


def _ports(raw: Mapping[str, int]) -> Ports:
    """Consul's portVal: <= 0 disables (-1), > 65535 is an error; the server and Serf LAN ports are required."""
    values = attrs.asdict(Ports())
    for name, value in raw.items():
        if value > 65535:
            raise ConfigError(f"ports.{name}: invalid port: {value}")
        values[name] = value if value > 0 else -1
    if values["server"] <= 0:
        raise ConfigError("server-port must be greater than zero")
    if values["serf_lan"] <= 0:
        raise ConfigError("serf-lan-port must be greater than zero")
    return Ports(**values)


def _no_template(name: str, text: str | None) -> None:
    """Consul expands go-sockaddr templates in address fields; we say so rather than fail on the braces."""
    if text and "{{" in text:
        raise ConfigError(f"{name}: go-sockaddr templates are not supported: {text!r}")


def _ip(name: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address("::" if text == "[::]" else text)
    except ValueError:
        raise ConfigError(f"{name}: invalid ip address: {text}") from None


def _addresses(c: Mapping[str, Any], interfaces: Sequence[Interface] | None) -> tuple[str, str]:
    """(bind, advertise).  Unset bind: the detected private IPv4 (or 0.0.0.0 when advertise is given)."""
    advertise_text = c.get("advertise_addr") or None
    bind_text = c.get("bind_addr")
    _no_template("bind_addr", bind_text)
    _no_template("advertise_addr", advertise_text)
    if bind_text is None:
        if advertise_text is None:
            detected = default_bind_addr(interfaces)
            return detected, detected
        bind_text = "0.0.0.0"
    fields = bind_text.split()
    if not fields:
        raise ConfigError("bind_addr cannot be empty")
    if len(fields) > 1:
        raise ConfigError("bind_addr cannot contain multiple addresses. Use 'addresses.{dns,http,https}' instead.")
    if fields[0].startswith("unix://"):
        raise ConfigError("bind_addr cannot be a unix socket")
    bind = _ip("bind_addr", fields[0])
    if advertise_text is not None:
        advertise = _ip("advertise_addr", advertise_text.strip())
        if advertise.is_unspecified:
            raise ConfigError("Advertise address cannot be 0.0.0.0, :: or [::]")
        return str(bind), str(advertise)
    if not bind.is_unspecified:
        return str(bind), str(bind)
    if bind.version == 6:
        raise ConfigError('bind_addr "::" needs advertise_addr: IPv6 address detection is not supported')
    return str(bind), default_bind_addr(interfaces)


def _client_addr(text: str) -> str:
    """Space-separated IPs, as Consul; kept as one string (the HTTP/DNS servers split it)."""
    _no_template("client_addr", text)
    fields = text.split()
    for field in fields:
        if field.startswith("unix://"):
            raise ConfigError("client_addr cannot be a unix socket")
        _ip("client_addr", field)
    return " ".join(fields)


def _duration(name: str, value: str | float) -> float:
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f'{name}: invalid duration: "{value}": {exc}') from None
    return float(value)


def _reconnect_timeout(value: str | float | None) -> float:
    if value is None:
        return DEFAULT_RECONNECT_TIMEOUT
    seconds = _duration("reconnect_timeout", value)
    if seconds < MIN_RECONNECT_TIMEOUT:
        shown = value if isinstance(value, str) else _go_value(value)
        raise ConfigError(f"reconnect_timeout: duration '{shown}' cannot be less than: 8h0m0s")
    return seconds


def _log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise ConfigError(f"Invalid log level: {value}. Valid log levels are: [{' '.join(LOG_LEVELS)}]")
    return value.lower()


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _node_id(value: str | None) -> str | None:
    """Consul's agent.setupNodeID: lower-cased, then hashicorp/go-uuid's ParseUUID."""
    if not value:
        return None
    value = value.lower()
    if len(value) != 36:
        raise ConfigError("specified NodeID is invalid: uuid string is wrong length")
    if not _UUID.fullmatch(value):
        raise ConfigError("specified NodeID is invalid: uuid is improperly formatted")
    return value


_BASIC_NAME = re.compile(r"[a-z0-9_-]+")
_DNS_INVALID = re.compile(r"[^A-Za-z0-9\-]+")
_NODE_INVALID = re.compile(r"[\s\"'`]")


def _validate(v: Mapping[str, Any], warnings: list[str]) -> None:
    """Consul's builder.validate(), the parts that concern our keys, in its order."""
    if not v["datacenter"]:
        raise ConfigError("datacenter cannot be empty")
    if not _BASIC_NAME.fullmatch(v["datacenter"]):
        raise ConfigError(
            f'datacenter can only contain lowercase alphanumeric, - or _ characters. received: "{v["datacenter"]}"'
        )
    if not _BASIC_NAME.fullmatch(v["primary_datacenter"]):
        raise ConfigError(
            "primary_datacenter can only contain lowercase alphanumeric, - or _ characters. "
            f'received: "{v["primary_datacenter"]}"'
        )
    if not v["data_dir"] and not v["dev"]:
        raise ConfigError("data_dir cannot be empty")
    if v["data_dir"] and not v["dev"]:
        _check_data_dir(v["data_dir"])
    _check_node_name(v["node_name"], warnings)
    _check_bootstrap(v)
    if v["retry_interval"] <= 0:
        raise ConfigError(f"retry_interval must be positive, got {v['retry_interval']:g}s")
    if v["retry_max"] < 0:
        raise ConfigError(f"retry_max cannot be {v['retry_max']}. Must be greater than or equal to zero")
    if v["http_max_conns_per_client"] < 0:
        raise ConfigError(f"limits.http_max_conns_per_client cannot be negative: {v['http_max_conns_per_client']}")
    for host in v["http_allowed_hosts"]:
        if not host.strip() or any(c in host for c in " /@?#"):
            raise ConfigError(f"http_config.allowed_hosts: {host!r} is not a host name or address")
    if v["gossip_profile"] not in GOSSIP_PROFILES:
        raise ConfigError(
            f'gossip_profile must be one of {", ".join(GOSSIP_PROFILES)}. received: "{v["gossip_profile"]}"'
        )
    _check_addresses_unique(v)
    acl = v["acl"]
    if acl.get("default_policy", "allow") not in ACL_DEFAULT_POLICIES:
        raise ConfigError(f"invalid ACL default policy {json.dumps(acl['default_policy'])}")
    if acl.get("down_policy", "extend-cache") not in ACL_DOWN_POLICIES:
        raise ConfigError(f"invalid ACL down policy {json.dumps(acl['down_policy'])}")
    if v["encrypt"]:
        try:
            decode_key(v["encrypt"])
        except KeyringError as exc:
            raise ConfigError(f"encrypt has invalid key: {exc}") from None


def _check_data_dir(path: str) -> None:
    """It may not exist yet (the data dir module creates it); if it does, it must be a directory."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"Error getting info on data_dir: {_go_os_error('stat', path, exc)}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f'data_dir "{path}" is not a directory')


def _check_node_name(name: str, warnings: list[str]) -> None:
    if not name:
        raise ConfigError("node_name cannot be empty")
    if _DNS_INVALID.search(name):
        warnings.append(
            f'Node name "{name}" will not be discoverable via DNS due to invalid characters. '
            "Valid characters include all alpha-numerics and dashes."
        )
    elif _NODE_INVALID.search(name):
        warnings.append(
            f'Found invalid characters in node name "{name}" - whitespace and quotes (\', ", `) cannot be used '
            "with auto-config."
        )
    elif len(name.encode()) > 63:
        warnings.append(
            f'Node name "{name}" will not be discoverable via DNS due to it being too long. '
            "Valid lengths are between 1 and 63 bytes."
        )


def _check_bootstrap(v: Mapping[str, Any]) -> None:
    if v["bootstrap"] and not v["server"]:
        raise ConfigError("'bootstrap = true' requires 'server = true'")
    if v["bootstrap_expect"] < 0:
        raise ConfigError(f"bootstrap_expect cannot be {v['bootstrap_expect']}. Must be greater than or equal to zero")
    if v["bootstrap_expect"] > 0 and not v["server"]:
        raise ConfigError("'bootstrap_expect > 0' requires 'server = true'")
    if v["bootstrap_expect"] > 0 and v["dev"]:
        raise ConfigError("'bootstrap_expect > 0' not allowed in dev mode")
    if v["bootstrap_expect"] > 0 and v["bootstrap"]:
        raise ConfigError("'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_addresses_unique(v: Mapping[str, Any]) -> None:
    """Consul's addrUnique: two listeners on one TCP/UDP address would fail only at bind time."""
    ports: Ports = v["ports"]
    clients = v["client_addr"].split()
    listeners: list[tuple[str, str, str]] = []
    for name, port, networks in (("DNS", ports.dns, ("tcp", "udp")), ("HTTP", ports.http, ("tcp",)),
                                 ("HTTPS", ports.https, ("tcp",))):  # fmt: skip
        if port > 0:
            listeners += [(name, net, _hostport(host, port)) for host in clients for net in networks]
    advertise = v["advertise_addr"]
    listeners.append(("RPC Advertise", "tcp", _hostport(advertise, ports.server)))
    listeners.append(("Serf Advertise LAN", "tcp", _hostport(advertise, ports.serf_lan)))
    if ports.serf_wan > 0:
        listeners.append(("Serf Advertise WAN", "tcp", _hostport(advertise, ports.serf_wan)))
    in_use: dict[tuple[str, str], str] = {}
    for name, net, addr in listeners:
        other = in_use.setdefault((net, addr), name)
        if other != name:
            raise ConfigError(f"{name} address {addr} already configured for {other}")
