"""From merged sources to an ``AgentConfig``: Consul's defaults and derived values (the bind address from the host's
interfaces, ``leave_on_terminate`` from ``server``...), its deprecated keys folded in with its warnings, each value
checked as Consul's builder checks it, then agent/config_checks.py's checks of the whole."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from agent.agent_watches import parse_watches
from agent.config_checks import validate
from agent.config_errors import ConfigError
from agent.config_flags import Flags
from agent.config_model import (
    DEFAULT_RAFT_MULTIPLIER,
    DEFAULT_RECONNECT_TIMEOUT,
    LOG_LEVELS,
    MAX_RAFT_MULTIPLIER,
    MIN_RECONNECT_TIMEOUT,
    AgentConfig,
    Ports,
    converter,
)
from agent.config_schema import INERT, go_value
from agent.durations import parse_duration
from agent.interfaces import Interface, default_bind_addr
from agent.watch_plans import WatchError

__all__ = ["build"]


def build(
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
        "raft_snapshot_threshold": _not_negative("raft_snapshot_threshold", c.get("raft_snapshot_threshold", 0)),
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
    validate(values, warnings)
    try:
        parse_watches(values["watches"], http_enabled=ports.http >= 0)
    except WatchError as err:
        raise ConfigError(str(err)) from None
    if values["inert_keys"]:
        warnings.append(f"accepted, no effect here: {', '.join(values['inert_keys'])}")
    values["warnings"] = tuple(warnings)
    return converter.structure({**values, "ports": attrs.asdict(ports)}, AgentConfig)


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


def _not_negative(key: str, value: int) -> int:
    """Consul converts these to Go's uint64, where a negative number wraps to a huge one: refuse it instead."""
    if value < 0:
        raise ConfigError(f"{key} cannot be negative: {value}")
    return value


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
