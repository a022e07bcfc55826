"""What a config source may hold: Consul's keys with their Go types, checked as Consul's decoder checks them.

A source (one file, the flags, an ``-hcl`` fragment) is walked against ``KEYS``; wrong types and unknown keys
are fatal with Consul's texts (mapstructure's words for type errors: ``'x' expected type 'int', got
unconvertible type 'string'``), and service/check definitions are parsed here so that their errors name the file.
``merge`` is Consul's rule for combining sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from agent.config_errors import ConfigError
from agent.consul_keys import CONSUL_KEYS, REFUSED, ListOf, MapOf
from agent.services.definitions import DefinitionError, parse_check, parse_service

__all__ = ["INERT", "KEYS", "SCHEMA", "Blocks", "check_source", "go_type", "go_value", "merge"]



class Blocks(list):  # type: ignore[type-arg]
    """HCL blocks (``ports { ... }`` twice): python-hcl2 returns them as a list of dicts."""


#: ``acl.tokens`` keys; ``master`` and ``agent_master`` are the deprecated names of two of them.
_ACL_TOKEN_KEYS = ("initial_management", "agent", "default", "agent_recovery", "dns", "replication", "master",
                   "agent_master")  # fmt: skip
_RAW = "raw"  # an object kept as it is (one service or check)
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
    "raft_snapshot_threshold": "int",
    "node_meta": "map[string]string",
    "service": _RAW,
    "services": _RAW_LIST,
    "check": _RAW,
    "checks": _RAW_LIST,
    "watches": "[]map[string]interface {}",  # agent/agent_watches.py checks each entry
    # what agent/dns/settings.py reads (it checks the values' ranges); durations may also be numbers of seconds
    "dns_config": {
        **dict.fromkeys(("allow_stale", "disable_compression", "enable_truncate", "only_passing",
                         "enable_additional_node_meta_txt"), "bool"),
        **dict.fromkeys(("a_record_limit", "udp_answer_limit"), "int"),
        **dict.fromkeys(("node_ttl", "recursor_timeout"), "duration"),
        "recursor_strategy": "string",
        "service_ttl": "map[string]duration",
        "soa": dict.fromkeys(("refresh", "retry", "expire", "min_ttl"), "uint32"),
    },
    "recursors": "[]string",
    "gossip_profile": "string",
    "enable_script_checks": "bool",
    "enable_local_script_checks": "bool",
    "limits": {"http_max_conns_per_client": "int"},
    "http_config": {"allowed_hosts": "[]string"},
    "encrypt": "string",
    "pid_file": "string",
    "disable_keyring_file": "bool",
    "disable_coordinates": "bool",
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



def _overlay(consul: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """Consul's key tree with ours laid over it: where both describe a key, ours (what we act on) wins."""
    out: dict[str, Any] = dict(consul)
    for key, spec in ours.items():
        below = out.get(key)
        out[key] = _overlay(below, spec) if isinstance(below, dict) and isinstance(spec, dict) else spec
    return out


#: Every key a source may hold: Consul's (agent/consul_keys.py) and ours.  Keys outside ``KEYS`` are accepted,
#: type-checked and dropped: ``check_source`` lists them under ``INERT`` (the start line names them).
SCHEMA: dict[str, Any] = _overlay(CONSUL_KEYS, KEYS)
#: Where a checked source lists the dotted keys it set that have no effect here (merge concatenates the lists).
INERT = "(inert)"

def go_type(value: Any) -> str:
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
    return {"[]interface {}": "slice", "map[string]interface {}": "map"}.get(go_type(value), go_type(value))


def go_value(value: Any) -> str:
    """Go's ``%v``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _unconvertible(name: str, expected: str, value: Any) -> str:
    return (
        f"'{name}' expected type '{expected}', got unconvertible type '{go_type(value)}', value: '{go_value(value)}'"
    )


@attrs.define
class _Checker:
    """Walks one source against ``KEYS``: collects type errors and unknown keys, returns the normalised values."""

    errors: list[str] = attrs.field(factory=list)
    unknown: list[str] = attrs.field(factory=list)
    #: Keys set that we accept but do not act on; ``refused``: (key, value, why) for the ones we must not ignore.
    inert: list[str] = attrs.field(factory=list)
    refused: list[tuple[str, Any, str]] = attrs.field(factory=list)

    def struct(
        self, schema: Mapping[str, Any], data: Mapping[str, Any], prefix: str, acted: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """``acted``: the part of ``KEYS`` at this level (None: nothing here is acted on)."""
        out: dict[str, Any] = {}
        for given, value in data.items():
            key = _schema_key(schema, data, given)
            path = f"{prefix}{key or given}"
            if key is None:
                self.unknown.append(path)
                continue
            if value is None:  # JSON/HCL null: as if absent (a nil pointer to Go)
                continue
            below = acted.get(key) if acted is not None else None
            checked = self.value(schema[key], value, path, below if isinstance(below, dict) else None)
            if checked is None:
                continue
            refusal = REFUSED.get(path)
            if refusal is not None and refusal.applies(checked):
                self.refused.append((path, checked, refusal.reason))
            if below is not None:
                out[key] = checked
            elif not isinstance(schema[key], dict):  # a struct of inert keys names its leaves, not itself
                self.inert.append(path)
        return out

    def value(self, spec: Any, value: Any, name: str, acted: Mapping[str, Any] | None = None) -> Any:
        if isinstance(spec, dict):
            mapping = self.mapping(value, name)
            return None if mapping is None else self.struct(spec, mapping, f"{name}.", acted)
        if isinstance(spec, ListOf):
            items = value if isinstance(value, list) else None
            if items is None:
                self.errors.append(f"'{name}': source data must be an array or slice, got {_go_kind(value)}")
                return None
            maps = [self.mapping(item, f"{name}[{i}]") for i, item in enumerate(items)]
            named = len(self.inert)  # the list is named as a whole, not item by item
            out = [self.struct(spec.item, m, f"{name}[{i}].", None) for i, m in enumerate(maps) if m is not None]
            del self.inert[named:]
            return out
        if isinstance(spec, MapOf):
            if isinstance(value, list) and all(isinstance(v, dict) for v in value):
                value = Blocks(value)  # HCL's labelled blocks (sink "name" { ... }): one object per label
            mapping = self.mapping(value, name)
            if mapping is None:
                return None
            entries = {key: self.mapping(entry, f"{name}[{key}]") for key, entry in mapping.items()}
            named = len(self.inert)
            structs = {key: self.struct(spec.item, entry, f"{name}[{key}].", None)
                       for key, entry in entries.items() if entry is not None}  # fmt: skip
            del self.inert[named:]
            return structs
        return getattr(self, _LEAF_CHECKS[spec])(value, name)

    def mapping(self, value: Any, name: str) -> dict[str, Any] | None:
        """A JSON object or HCL block(s); several blocks merge in order."""
        if isinstance(value, Blocks):
            merged: dict[str, Any] = {}
            for block in value:
                merged = merge(merged, block)
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

    def leaf_uint(self, value: Any, name: str) -> int | None:
        """Go's unsigned integers: mapstructure refuses a negative number."""
        number = self.leaf_int(value, name)
        if number is not None and number < 0:
            self.errors.append(f"cannot parse '{name}', {number} overflows uint")
            return None
        return number

    def leaf_float(self, value: Any, name: str) -> float | None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        self.errors.append(_unconvertible(name, "float64", value))
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

    def leaf_map_duration(self, value: Any, name: str) -> dict[str, str | float] | None:
        mapping = self.mapping(value, name)
        if mapping is None:
            return None
        out = {str(k): self.leaf_duration(v, f"{name}[{k}]") for k, v in mapping.items()}
        return {k: v for k, v in out.items() if v is not None}

    def leaf_raw(self, value: Any, name: str) -> dict[str, Any] | None:
        if isinstance(value, Blocks) and len(value) > 1:
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
    "map[string]duration": "leaf_map_duration",
    _RAW: "leaf_raw",
    _RAW_LIST: "leaf_raw_list",
    "uint": "leaf_uint",
    "uint32": "leaf_uint",
    "uint64": "leaf_uint",
    "float64": "leaf_float",
    "map[string]interface {}": "leaf_raw",
    "[]map[string]interface {}": "leaf_raw_list",
}


def _schema_key(schema: Mapping[str, Any], data: Mapping[str, Any], given: str) -> str | None:
    """The schema's key for ``given``, as mapstructure finds a field: the exact name, else the one that differs only
    in case (Consul's file decoding ignores case: ``Node_Name`` sets node_name) unless the data also holds the exact
    name or an earlier variant (then this one is unused: Consul's ``invalid config key``).  None: unknown."""
    if given in schema:
        return given
    lowered = given.lower()
    for key in schema:
        if key.lower() == lowered:
            if key in data:
                return None
            first = next(k for k in data if k.lower() == lowered)
            return key if first == given else None
    return None


def _plain(value: Any) -> Any:
    """A raw object with HCL's blocks unwrapped: one block is an object (as HCL1 + Consul's weak decoding)."""
    if isinstance(value, Blocks):
        return _plain(value[0]) if len(value) == 1 else [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def check_source(name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one parsed source; ``service``/``check`` join ``services``/``checks`` (all HCL blocks count)."""
    data = dict(data)
    singles = {}
    for single in ("service", "check"):
        given = next((k for k in data if _schema_key(SCHEMA, data, k) == single), single)
        value = data.pop(given, None)
        if isinstance(value, Blocks):
            singles[single] = list(value)
        elif value is not None:
            data[single] = value
    checker = _Checker()
    out = checker.struct(SCHEMA, data, "", KEYS)
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
    if checker.refused:
        raise ConfigError("\n".join(f"{name}: {key} = {go_value(value)}: {why}" for key, value, why in checker.refused))
    if checker.inert:
        out[INERT] = checker.inert
    for single in ("service", "check"):
        if single in out:
            out.setdefault(single + "s", []).append(out.pop(single))
    _check_definitions(name, out)
    return out


def _check_definitions(name: str, source: Mapping[str, Any]) -> None:
    """Each service/check definition of one source, parsed now so that an error names its file and key."""
    try:
        for i, raw in enumerate(source.get("services", [])):
            parse_service(raw, api=False, path=f"services[{i}]")
        for i, raw in enumerate(source.get("checks", [])):
            parse_check(raw, api=False, path=f"checks[{i}]")
    except DefinitionError as exc:
        raise ConfigError(f"failed to parse {name}: {exc.message}") from None


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Consul's merge: maps key-wise (recursively), lists concatenated, anything else replaced."""
    out = dict(a)
    for key, value in b.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            out[key] = merge(old, value)
        elif isinstance(old, list) and isinstance(value, list):
            out[key] = old + value
        else:
            out[key] = value
    return out
