"""Loading the agent's configuration: the sources merged in Consul's order, then built into an ``AgentConfig``.

Consul's rules (consul-compat §5), because operators bring their Consul command lines and config dirs.  The
command line is read by agent/config_flags.py (Go's flag syntax), each file by agent/config_files.py, and every
source is checked against Consul's keys by agent/config_schema.py; here they come together, and
agent/config_build.py derives the defaults and checks each value (agent/config_checks.py the whole), making the
``AgentConfig`` of agent/config_model.py.  This module re-exports the model, so ``agent.config`` is the one name
to import:

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

from collections.abc import Mapping, Sequence
from typing import Any

from agent.config_build import build
from agent.config_errors import ConfigError, HelpRequested
from agent.config_files import nonempty, parse_source, read_path
from agent.config_flags import parse_flags
from agent.config_model import (
    ACL_DEFAULT_POLICIES,
    ACL_DOWN_POLICIES,
    GOSSIP_PROFILES,
    RESTART_REQUIRED,
    ACLConfig,
    ACLTokens,
    AgentConfig,
    Ports,
    diff_config,
)
from agent.config_schema import KEYS, check_source, merge
from agent.interfaces import Interface

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
    return build(merged, flags, warnings, interfaces, hostname)


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


def _split_lists(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Flag values as two sources: Consul merges the lists before the files and the scalars after them."""
    lists = {k: v for k, v in config.items() if isinstance(v, list)}
    return lists, {k: v for k, v in config.items() if k not in lists}
