"""Consul's agent configuration keys with their Go types: the ``Config`` struct of hashicorp/consul
``agent/config/config.go`` (with ``DeprecatedConfig`` from ``deprecated.go``), written down as data.

Every key an operator may put in a Consul config file is here, so a Consul config dir loads: agent/config_schema.py
checks each value's type as Consul's decoder (mapstructure) would, then the keys triumvir does not act on are named
once at start, and the few whose being ignored would weaken security stop the agent (``REFUSED``).

Types are Go's words: ``bool``, ``int``, ``uint``/``uint32``/``uint64`` (no negatives), ``float64``, ``string``
(durations too: Consul decodes them as strings and parses them later), ``[]string``, ``map[string]string``,
``map[string]interface {}`` / ``[]map[string]interface {}`` (free-form), a dict for a nested struct, and
``ListOf``/``MapOf`` for a list or map of structs.  Of ``acl`` only what triumvir does not act on
(agent/config_schema.py keeps the ACL block as issue 13 built it).  Not described here: ``service``/``check`` and
their lists (agent/services/definitions.py parses them, ServiceDefinition's and CheckDefinition's keys and types).
Keys match in any case, as mapstructure's do (an exact match first, then one that differs only in case).
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["CONSUL_KEYS", "REFUSED", "ListOf", "MapOf", "Refusal"]


@attrs.frozen
class ListOf:
    """``[]Struct``: a list of objects (or repeated HCL blocks), each checked against ``item``."""

    item: dict[str, Any]


@attrs.frozen
class MapOf:
    """``map[string]Struct``: an object of named objects (HCL ``sink "name" { ... }``)."""

    item: dict[str, Any]


def _fields(kind: str, *names: str) -> dict[str, str]:
    return dict.fromkeys(names, kind)


_TLS_PROTOCOL = {
    **_fields("string", "ca_file", "ca_path", "cert_file", "key_file", "tls_min_version", "tls_cipher_suites"),
    **_fields("bool", "verify_incoming", "verify_outgoing", "verify_server_hostname", "use_auto_cert"),
}
_GOSSIP_POOL = {
    **_fields("int", "gossip_nodes", "suspicion_mult", "retransmit_mult"),
    **_fields("string", "gossip_interval", "probe_interval", "probe_timeout"),
}
_AUTO_CONFIG_AUTHORIZER = {
    **_fields("[]string", "claim_assertions", "jwt_supported_algs", "bound_audiences", "jwt_validation_pub_keys"),
    "allow_reuse": "bool",
    **_fields("map[string]string", "claim_mappings", "list_claim_mappings"),
    **_fields("string", "oidc_discovery_url", "oidc_discovery_ca_cert", "jwks_url", "jwks_ca_cert", "bound_issuer",
              "expiration_leeway", "not_before_leeway", "clock_skew_leeway"),
}  # fmt: skip

#: config.go's Config (and DeprecatedConfig), key by key; ``service(s)`` and ``check(s)`` are described where they
#: are parsed, and the part of ``acl`` triumvir acts on in agent/config_schema.py (see the module docstring).
CONSUL_KEYS: dict[str, Any] = {
    "addresses": _fields("string", "dns", "http", "https", "grpc", "grpc_tls"),
    **_fields("string", "advertise_addr", "advertise_addr_ipv4", "advertise_addr_ipv6", "advertise_addr_wan",
              "advertise_addr_wan_ipv4", "advertise_addr_wan_ipv6", "advertise_reconnect_timeout"),
    "auto_config": {
        "enabled": "bool",
        "intro_token": "string",
        "intro_token_file": "string",
        **_fields("[]string", "server_addresses", "dns_sans", "ip_sans"),
        "authorization": {"enabled": "bool", "static": _AUTO_CONFIG_AUTHORIZER},
    },
    "autopilot": {
        "cleanup_dead_servers": "bool",
        "last_contact_threshold": "string",
        "max_trailing_logs": "int",
        "min_quorum": "uint",
        "server_stabilization_time": "string",
        "disable_upgrade_migration": "bool",
        "redundancy_zone_tag": "string",
        "upgrade_version_tag": "string",
    },
    "bind_addr": "string",
    "bootstrap": "bool",
    "bootstrap_expect": "int",
    "cache": {"entry_fetch_max_burst": "int", "entry_fetch_rate": "float64"},
    "check_output_max_size": "int",
    "check_update_interval": "string",
    "client_addr": "string",
    "cloud": _fields("string", "resource_id", "client_id", "client_secret", "hostname", "auth_url", "scada_address"),
    "config_entries": {"bootstrap": "[]map[string]interface {}"},
    "auto_encrypt": {"tls": "bool", "dns_san": "[]string", "ip_san": "[]string", "allow_tls": "bool"},
    "connect": {
        "enabled": "bool",
        "ca_provider": "string",
        "ca_config": "map[string]interface {}",
        "enable_mesh_gateway_wan_federation": "bool",
        "test_ca_leaf_root_change_spread": "string",
    },
    "dns_config": {
        **_fields("bool", "allow_stale", "disable_compression", "enable_truncate", "only_passing",
                  "enable_additional_node_meta_txt", "use_cache", "prefer_namespace"),
        **_fields("int", "a_record_limit", "udp_answer_limit"),
        **_fields("string", "max_stale", "node_ttl", "recursor_strategy", "recursor_timeout", "cache_max_age"),
        "service_ttl": "map[string]string",
        "soa": _fields("uint32", "refresh", "retry", "expire", "min_ttl"),
    },
    "domain": "string",
    "alt_domain": "string",
    "recursors": "[]string",
    "data_dir": "string",
    "datacenter": "string",
    "default_query_time": "string",
    **_fields("bool", "disable_anonymous_signature", "disable_coordinates", "disable_host_node_id",
              "disable_http_unprintable_char_filter", "disable_keyring_file", "disable_remote_exec",
              "disable_update_check", "discard_check_output"),
    "discovery_max_stale": "string",
    **_fields("bool", "enable_agent_tls_for_checks", "enable_central_service_config", "enable_debug",
              "enable_script_checks", "enable_local_script_checks", "enable_syslog"),
    "encrypt": "string",
    "encrypt_verify_incoming": "bool",
    "encrypt_verify_outgoing": "bool",
    "gossip_lan": _GOSSIP_POOL,
    "gossip_wan": _GOSSIP_POOL,
    "http_config": {
        "block_endpoints": "[]string",
        "allow_write_http_from": "[]string",
        "response_headers": "map[string]string",
        "use_cache": "bool",
        "max_header_bytes": "int",
    },
    "leave_on_terminate": "bool",
    "license_path": "string",
    "limits": {
        "http_max_conns_per_client": "int",
        "https_handshake_timeout": "string",
        "request_limits": {"mode": "string", "read_rate": "float64", "write_rate": "float64"},
        "rpc_client_timeout": "string",
        "rpc_handshake_timeout": "string",
        "rpc_max_burst": "int",
        "rpc_max_conns_per_client": "int",
        "rpc_rate": "float64",
        "kv_max_value_size": "uint64",
        "txn_max_req_len": "uint64",
    },
    "locality": {"region": "string", "zone": "string"},
    "log_level": "string",
    "log_sublevels": "map[string]string",
    "log_json": "bool",
    "log_file": "string",
    "log_rotate_duration": "string",
    "log_rotate_bytes": "int",
    "log_rotate_max_files": "int",
    "max_query_time": "string",
    "node_id": "string",
    "node_meta": "map[string]string",
    "node_name": "string",
    "peering": {"enabled": "bool", "test_allow_peer_registrations": "bool"},
    "performance": {"leave_drain_time": "string", "raft_multiplier": "int", "rpc_hold_timeout": "string"},
    "pid_file": "string",
    "ports": _fields("int", "dns", "http", "https", "serf_lan", "serf_wan", "server", "grpc", "grpc_tls",
                     "proxy_min_port", "proxy_max_port", "sidecar_min_port", "sidecar_max_port", "expose_min_port",
                     "expose_max_port"),
    "primary_datacenter": "string",
    "primary_gateways": "[]string",
    "primary_gateways_interval": "string",
    "protocol": "int",
    "raft_protocol": "int",
    "raft_snapshot_threshold": "int",
    "raft_snapshot_interval": "string",
    "raft_trailing_logs": "int",
    "reconnect_timeout": "string",
    "reconnect_timeout_wan": "string",
    "rejoin_after_leave": "bool",
    "auto_reload_config": "bool",
    "retry_interval": "string",
    "retry_interval_wan": "string",
    "retry_join": "[]string",
    "retry_max": "int",
    "retry_max_wan": "int",
    "retry_join_wan": "[]string",
    "serf_lan_allowed_cidrs": "[]string",
    "serf_wan_allowed_cidrs": "[]string",
    "serf_lan": "string",
    "serf_wan": "string",
    "server": "bool",
    "server_name": "string",
    "session_ttl_min": "string",
    "skip_leave_on_interrupt": "bool",
    "syslog_facility": "string",
    "tls": {"defaults": _TLS_PROTOCOL, "internal_rpc": _TLS_PROTOCOL, "https": _TLS_PROTOCOL, "grpc": _TLS_PROTOCOL},
    "tagged_addresses": "map[string]string",
    "telemetry": {
        **_fields("string", "circonus_api_app", "circonus_api_token", "circonus_api_url", "circonus_broker_id",
                  "circonus_broker_select_tag", "circonus_check_display_name",
                  "circonus_check_force_metric_activation", "circonus_check_id", "circonus_check_instance_id",
                  "circonus_check_search_tag", "circonus_check_tags", "circonus_submission_interval",
                  "circonus_submission_url", "dogstatsd_addr", "metrics_prefix", "prometheus_retention_time",
                  "statsd_address", "statsite_address"),
        **_fields("bool", "disable_hostname", "retry_failed_connection", "filter_default"),
        **_fields("[]string", "dogstatsd_tags", "prefix_filter"),
    },
    "translate_wan_addrs": "bool",
    "xds": {"update_max_per_second": "float64"},
    "ui": "bool",
    "ui_content_path": "string",
    "ui_dir": "string",
    "ui_config": {
        "enabled": "bool",
        "dir": "string",
        "content_path": "string",
        "metrics_provider": "string",
        "metrics_provider_files": "[]string",
        "metrics_provider_options_json": "string",
        "metrics_proxy": {
            "base_url": "string",
            "add_headers": ListOf({"name": "string", "value": "string"}),
            "path_allowlist": "[]string",
        },
        "dashboard_url_templates": "map[string]string",
    },
    "unix_sockets": _fields("string", "group", "mode", "user"),
    "watches": "[]map[string]interface {}",
    "rpc": {"enable_streaming": "bool"},
    "raft_logstore": {
        "backend": "string",
        "disable_log_cache": "bool",
        "verification": {"enabled": "bool", "interval": "string"},
        "boltdb": {"no_freelist_sync": "bool"},
        "wal": {"segment_size_mb": "int"},
    },
    "use_streaming_backend": "bool",
    "snapshot_agent": "map[string]interface {}",
    # Consul's "non-user configurable values" (set by its own sources; a file may still carry them)
    **_fields("string", "ae_interval", "check_deregister_interval_min", "check_reap_interval", "revision",
              "sync_coordinate_interval_min", "version", "version_prerelease", "version_metadata", "build_date"),
    "consul": {
        "coordinate": {"update_batch_size": "int", "update_max_batches": "int", "update_period": "string"},
        "raft": _fields("string", "election_timeout", "heartbeat_timeout", "leader_lease_timeout"),
        "server": {"health_interval": "string"},
    },
    "segment_limit": "int",
    "segment_name_limit": "int",
    "sync_coordinate_rate_target": "float64",
    # Enterprise only
    "audit": {
        "enabled": "bool",
        "sink": MapOf({
            **_fields("string", "type", "format", "path", "delivery_guarantee", "mode", "rotate_duration"),
            **_fields("int", "rotate_bytes", "rotate_max_files"),
        }),
    },
    "read_replica": "bool",
    "non_voting_server": "bool",  # read_replica's alias
    "segment": "string",
    "segments": ListOf({**_fields("string", "advertise", "bind", "name"), "port": "int", "rpc_listener": "bool"}),
    "partition": "string",
    **_fields("string", "license_poll_base_time", "license_poll_max_time", "license_update_base_time",
              "license_update_max_time"),
    "reporting": {"license": {"enabled": "bool"}},
    # DeprecatedConfig (deprecated.go), outside the acl ones
    **_fields("string", "ca_file", "ca_path", "cert_file", "key_file", "tls_cipher_suites", "tls_min_version"),
    **_fields("bool", "verify_incoming", "verify_incoming_https", "verify_incoming_rpc", "verify_outgoing",
              "verify_server_hostname", "tls_prefer_server_cipher_suites"),
    "start_join": "[]string",
    "start_join_wan": "[]string",
    "raft_boltdb": {"NoFreelistSync": "bool"},
    # The ACL block's keys triumvir does not act on (agent/config_schema.py keeps the ones issue 13 built; the two
    # overlay, so these are typed and named at start like every other inert key).
    "acl": {
        "msp_disable_bootstrap": "bool",
        "disabled_ttl": "string",
        "tokens": {
            "config_file_service_registration": "string",
            "managed_service_provider": ListOf({"accessor_id": "string", "secret_id": "string"}),
        },
    },
}  # fmt: skip


@attrs.frozen
class Refusal:
    """A key whose being ignored would weaken security: the agent stops when ``applies(value)``."""

    applies: Any  # Callable[[Any], bool]
    reason: str


_TLS_VERIFY = Refusal(
    bool,
    "TLS is not implemented here, so this verification would not happen: triumvir would accept connections "
    "Consul refuses. Remove the key (or set it to false) to run without TLS.",
)
_ACCESS_LIST = Refusal(
    bool,
    "this access restriction is not implemented here, so everything it would refuse would be allowed. "
    "Remove the key (or leave it empty) to run without it.",
)

#: Dotted keys (``tls.*.`` stands for each of defaults, internal_rpc, https, grpc) that stop the agent when set so
#: that ignoring them would weaken security.  ``encrypt_verify_*`` are acted on (protocol.config's
#: gossip_verify_incoming/outgoing), so they are not here; the ``acl`` block is handled by agent/config.py.
REFUSED: dict[str, Refusal] = {
    "verify_incoming": _TLS_VERIFY,
    "verify_incoming_rpc": _TLS_VERIFY,
    "verify_incoming_https": _TLS_VERIFY,
    "verify_outgoing": _TLS_VERIFY,
    "verify_server_hostname": _TLS_VERIFY,
    **{f"tls.{part}.{key}": _TLS_VERIFY for part in ("defaults", "internal_rpc", "https", "grpc")
       for key in ("verify_incoming", "verify_outgoing", "verify_server_hostname")},
    "http_config.allow_write_http_from": _ACCESS_LIST,
    "http_config.block_endpoints": _ACCESS_LIST,
    "serf_lan_allowed_cidrs": _ACCESS_LIST,
    "serf_wan_allowed_cidrs": _ACCESS_LIST,
}  # fmt: skip
