"""Consul's semantic checks of a built configuration (builder.validate(), the parts that concern our keys, in its
order): names, the data dir, bootstrap, listeners on one address, ACL policies, the gossip key."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from typing import Any

from agent.config_errors import ConfigError
from agent.config_model import ACL_DEFAULT_POLICIES, ACL_DOWN_POLICIES, GOSSIP_PROFILES, Ports
from agent.goerrors import go_os_error
from agent.hostport import join_host_port
from protocol.keyring import KeyringError, decode_key

__all__ = ["validate"]

_BASIC_NAME = re.compile(r"[a-z0-9_-]+")
_DNS_INVALID = re.compile(r"[^A-Za-z0-9\-]+")
_NODE_INVALID = re.compile(r"[\s\"'`]")


def validate(v: Mapping[str, Any], warnings: list[str]) -> None:
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


def _check_addresses_unique(v: Mapping[str, Any]) -> None:
    """Consul's addrUnique: two listeners on one TCP/UDP address would fail only at bind time."""
    ports: Ports = v["ports"]
    clients = v["client_addr"].split()
    listeners: list[tuple[str, str, str]] = []
    for name, port, networks in (("DNS", ports.dns, ("tcp", "udp")), ("HTTP", ports.http, ("tcp",)),
                                 ("HTTPS", ports.https, ("tcp",))):  # fmt: skip
        if port > 0:
            listeners += [(name, net, join_host_port(host, port)) for host in clients for net in networks]
    advertise = v["advertise_addr"]
    listeners.append(("RPC Advertise", "tcp", join_host_port(advertise, ports.server)))
    listeners.append(("Serf Advertise LAN", "tcp", join_host_port(advertise, ports.serf_lan)))
    if ports.serf_wan > 0:
        listeners.append(("Serf Advertise WAN", "tcp", join_host_port(advertise, ports.serf_wan)))
    in_use: dict[tuple[str, str], str] = {}
    for name, net, addr in listeners:
        other = in_use.setdefault((net, addr), name)
        if other != name:
            raise ConfigError(f"{name} address {addr} already configured for {other}")
