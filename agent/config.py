"""The agent's configuration proper: the sources merged, defaults derived, Consul's checks, the ``AgentConfig``.

Consul's rules (consul-compat §5), because operators bring their Consul command lines and config dirs.  The
command line is read by agent/config_flags.py (Go's flag syntax), each file by agent/config_files.py, and every
source is checked against Consul's keys by agent/config_schema.py; here they come together:

- Sources merge in this order, later wins: defaults -> dev defaults -> list values of flags -> each
  ``-config-dir``/``-config-file`` argument in command-line order (a dir: its ``*.json``/``*.hcl`` files in
  byte-wise name order, others skipped with a warning) -> scalar values of flags -> ``-hcl`` fragments.
  Scalars: last writer wins; maps (``ports``, ``node_meta``, ``dns_config``...) merge key-wise; lists
  (``retry_join``, ``start_join``, ``recursors``, ``services``, ``checks``) concatenate.  ``service``/``check``
  (one object, or HCL blocks) are collected with ``services``/``checks``.
- Unknown keys, wrong types and malformed files are fatal: ``ConfigError`` whose text is Consul's (the file and
  the dotted key), printed by the supervisor as ``==> <message>``.
- ``bind_addr`` unset: the host's single private IPv4 address (agent/interfaces.py).
  ``bind_addr = "0.0.0.0"`` binds everything and advertises the detected address, as Consul.

Ours, not Consul's: the file key ``gossip_profile`` / flag ``-profile`` (``lan`` default, ``wan``, ``local``;
``local`` under ``-dev``) picks the memberlist timing profile (``protocol.config.PROFILES``); ``http_config`` knows only
``allowed_hosts`` (Host names the HTTP API answers besides its own) and ``limits`` only Consul's
``http_max_conns_per_client``.  ``retry_interval``
and ``reconnect_timeout`` also accept a number of seconds.  Keys outside ``KEYS`` (``addresses``,
``telemetry``...) are unknown keys here, and keys match exactly (Go's decoder also folds their case).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import stat
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import cattrs

from agent.agent_watches import parse_watches
from agent.config_errors import ConfigError, HelpRequested
from agent.config_files import go_os_error, nonempty, parse_source, read_path
from agent.config_flags import Flags, parse_flags
from agent.config_schema import INERT, KEYS, check_source, go_value, merge
from agent.durations import parse_duration
from agent.interfaces import Interface, default_bind_addr
from agent.watch_plans import WatchError
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
    "HelpRequested",
    "Interface",
    "Ports",
    "diff_config",
    "load_config",
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
        "pid_file", "disable_keyring_file", "disable_coordinates",
    }
)  # fmt: skip




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
    #: Consul's ``watches`` as written (checked at load: agent/agent_watches.py; agent/watch_runner.py runs them).
    watches: tuple[Mapping[str, Any], ...] = ()
    enable_script_checks: bool = False
    enable_local_script_checks: bool = False
    #: Gossip encryption (Consul's ``encrypt``): a base64 key of 16, 24 or 32 bytes; "" = plaintext gossip.
    #: The keyring file ``<data_dir>/serf/local.keyring`` wins when it exists (agent/keyring_file.py).
    encrypt: str = attrs.field(default="", repr=False)
    encrypt_verify_incoming: bool = True
    encrypt_verify_outgoing: bool = True
    #: Consul's ``disable_keyring_file``: the gossip keyring is never read from or written to the data dir.
    disable_keyring_file: bool = False
    #: Consul's ``disable_coordinates``: Serf keeps no network coordinates (its acks carry none; /v1/coordinate 401).
    disable_coordinates: bool = False
    #: Consul's ``pid_file`` / ``-pid-file``: the agent's PID is written there at start and removed on exit.
    pid_file: str | None = None
    #: The keys set that this agent accepts without acting on them (Consul's dotted names), named once at start.
    inert_keys: tuple[str, ...] = ()
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
_PROVENANCE = frozenset({"config_dirs", "config_files", "argv", "warnings", "inert_keys"})


def diff_config(old: AgentConfig, new: AgentConfig) -> list[str]:
    """The names of the fields that differ, in field order (``RESTART_REQUIRED`` tells which need a restart)."""
    return [
        field.name
        for field in attrs.fields(AgentConfig)
        if field.name not in _PROVENANCE and getattr(old, field.name) != getattr(new, field.name)
    ]


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
    lists, scalars = _split_lists(check_source("command line flags", flags.config))
    sources: list[dict[str, Any]] = [_DEV_SOURCE] if flags.dev else []
    sources.append(lists)
    for _kind, path in flags.config_paths:
        sources.extend(read_path(path, flags.config_format, warnings))
    sources.append(scalars)
    for index, fragment in enumerate(flags.hcl):
        sources.extend(nonempty([parse_source(f"flags-{index}.hcl", fragment, "hcl")]))
    merged: dict[str, Any] = {}
    for source in sources:
        merged = merge(merged, source)
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
        "watches": c.get("watches", []),
        "enable_script_checks": c.get("enable_script_checks", False),
        "enable_local_script_checks": c.get("enable_local_script_checks", False),
        "encrypt": c.get("encrypt", ""),
        "encrypt_verify_incoming": c.get("encrypt_verify_incoming", True),
        "encrypt_verify_outgoing": c.get("encrypt_verify_outgoing", True),
        "disable_keyring_file": c.get("disable_keyring_file", False),
        "disable_coordinates": c.get("disable_coordinates", False),
        "pid_file": c.get("pid_file") or None,
        "inert_keys": sorted(set(c.get(INERT, []))),
        "recursors": list(dict.fromkeys(c.get("recursors", []))),
        "dns_config": c.get("dns_config", {}),
        "http_max_conns_per_client": c.get("limits", {}).get("http_max_conns_per_client", 200),
        "http_allowed_hosts": c.get("http_config", {}).get("allowed_hosts", []),
        "config_dirs": flags.config_dirs,
        "config_files": flags.config_files,
        "argv": flags.argv,
    }
    _validate(values, warnings)
    try:
        parse_watches(values["watches"], http_enabled=ports.http >= 0)
    except WatchError as err:
        raise ConfigError(str(err)) from None
    if values["inert_keys"]:
        warnings.append(f"accepted, no effect here: {', '.join(values['inert_keys'])}")
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
        shown = value if isinstance(value, str) else go_value(value)
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
        raise ConfigError(f"Error getting info on data_dir: {go_os_error('stat', path, exc)}") from None
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


def _split_lists(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flag values as two sources: Consul merges the lists before the files and the scalars after them."""
    lists = {k: v for k, v in config.items() if isinstance(v, list)}
    return lists, {k: v for k, v in config.items() if k not in lists}
