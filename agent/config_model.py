"""The agent's configuration as the rest of the agent sees it: ``AgentConfig`` and its parts, the limits Consul puts
on them, and which fields a reload cannot change.  agent/config.py builds one from the command line and files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

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
    #: Consul's ``raft_snapshot_threshold``: applied entries between two snapshots; 0 keeps Raft's (16384).
    raft_snapshot_threshold: int = 0
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
        return converter.unstructure(self)


converter = cattrs.Converter()
#: Fields that say where a config came from rather than what it is: a reload never "changes" them.
_PROVENANCE = frozenset({"config_dirs", "config_files", "argv", "warnings", "inert_keys"})


def diff_config(old: AgentConfig, new: AgentConfig) -> list[str]:
    """The names of the fields that differ, in field order (``RESTART_REQUIRED`` tells which need a restart)."""
    return [
        field.name
        for field in attrs.fields(AgentConfig)
        if field.name not in _PROVENANCE and getattr(old, field.name) != getattr(new, field.name)
    ]
