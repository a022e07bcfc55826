"""Issue 12: every key of Consul's agent configuration (agent/consul_keys.py, from config.go's ``Config``) and every
agent flag parses with its type checked; what triumvir does not act on is named once at start; the keys whose
being ignored would weaken security stop the agent; unknown keys still fail with Consul's text.

The key list is generated from ``CONSUL_KEYS`` (each leaf with a value of its Go type), so a key added there is
tested here without another line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, Interface, load_config
from agent.config_flags import AGENT_FLAGS, parse_flags
from agent.config_schema import INERT, KEYS, check_source
from agent.consul_keys import CONSUL_KEYS, REFUSED, ListOf, MapOf

ONE_NIC = [Interface("lo", ("127.0.0.1",), loopback=True), Interface("eth0", ("10.1.2.3",))]

#: A value of each Go type, and one of the wrong type with mapstructure's complaint about it.
GOOD: dict[str, Any] = {
    "bool": True, "int": 7, "uint": 7, "uint32": 7, "uint64": 7, "float64": 1.5, "string": "x",
    "[]string": ["x"], "map[string]string": {"k": "v"}, "map[string]interface {}": {"k": [1]},
    "[]map[string]interface {}": [{"k": 1}],
}  # fmt: skip
WRONG: dict[str, tuple[Any, str]] = {
    "bool": ("yes", "'{k}' expected type 'bool', got unconvertible type 'string', value: 'yes'"),
    "int": ("7", "'{k}' expected type 'int', got unconvertible type 'string', value: '7'"),
    "uint": (-1, "cannot parse '{k}', -1 overflows uint"),
    "uint64": (-1, "cannot parse '{k}', -1 overflows uint"),
    "float64": ("1.5", "'{k}' expected type 'float64', got unconvertible type 'string', value: '1.5'"),
    "string": (1, "'{k}' expected type 'string', got unconvertible type 'int', value: '1'"),
    "[]string": ({"a": "b"}, "'{k}': source data must be an array or slice, got map"),
    "map[string]string": ([1], "'{k}' expected a map, got 'slice'"),
    "map[string]interface {}": ("x", "'{k}' expected a map, got 'string'"),
    "[]map[string]interface {}": ("x", "'{k}': source data must be an array or slice, got string"),
    "list": ("x", "'{k}': source data must be an array or slice, got string"),
    "map": ("x", "'{k}' expected a map, got 'string'"),
}


def leaves(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, spec) for every leaf; a list or map of structs is one leaf."""
    for key, spec in tree.items():
        if isinstance(spec, dict):
            yield from leaves(spec, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", spec


def sample(spec: Any) -> Any:
    if isinstance(spec, ListOf):
        return [{k: sample(v) for k, v in leaves(spec.item)}]
    if isinstance(spec, MapOf):
        return {"one": {k: sample(v) for k, v in leaves(spec.item)}}
    return GOOD[spec]


def nest(dotted: str, value: Any) -> dict[str, Any]:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def acted(dotted: str) -> bool:
    node: Any = KEYS
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


ALL = sorted(leaves(CONSUL_KEYS))
INERT_KEYS = [(k, s) for k, s in ALL if not acted(k)]


def test_the_key_list_is_consuls() -> None:
    """A guard on the generated list itself: the keys issue 12 names and a sample of each block are there."""
    names = {k for k, _ in ALL}
    for key in ("performance.raft_multiplier", "ports.grpc_tls", "primary_datacenter", "pid_file",
                "tls.defaults.verify_incoming", "telemetry.prometheus_retention_time", "autopilot.min_quorum",
                "audit.sink", "segments", "ui_config.metrics_proxy.add_headers", "raft_logstore.wal.segment_size_mb",
                "acl.tokens.config_file_service_registration", "acl.disabled_ttl"):
        assert key in names, key  # fmt: skip
    assert len(ALL) > 250


@pytest.mark.parametrize(("key", "spec"), ALL, ids=[k for k, _ in ALL])
def test_every_consul_key_parses_with_its_type(key: str, spec: Any) -> None:
    value = sample(spec)
    if key in REFUSED:
        value = False if spec == "bool" else []  # the setting that weakens nothing (refusals: tested below)
    out = check_source("c.json", nest(key, value))
    if acted(key):
        assert INERT not in out or key not in out[INERT]
    else:
        assert out.get(INERT) == [key]


def _types() -> list[tuple[str, str]]:
    """One inert key of each Go type (and of list/map of structs), for the wrong-type cases."""
    seen: dict[str, str] = {}
    for key, spec in INERT_KEYS:
        kind = "list" if isinstance(spec, ListOf) else "map" if isinstance(spec, MapOf) else spec
        seen.setdefault(kind, key)
    return sorted(seen.items())


@pytest.mark.parametrize(("kind", "key"), _types())
def test_a_wrong_type_is_refused_with_mapstructures_words(kind: str, key: str) -> None:
    value, words = WRONG[kind]
    with pytest.raises(ConfigError) as info:
        check_source("c.json", nest(key, value))
    assert str(info.value) == f"failed to parse c.json: 1 error(s) decoding:\n\n* {words.format(k=key)}"


def test_every_type_in_the_list_has_a_wrong_type_case() -> None:
    assert {kind for kind, _ in _types()} == set(WRONG)


def test_unknown_keys_inside_consuls_blocks_still_fail(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"telemetry": {"prometheus_retention": "1m"}, "tls": {"defaults": {"verify": 1}}}))
    with pytest.raises(ConfigError) as info:
        load_config(["-config-file", str(path), "-data-dir", str(tmp_path / "d")], interfaces=ONE_NIC)
    assert str(info.value) == (
        f"failed to parse {path}: 2 errors occurred:\n\t* invalid config key telemetry.prometheus_retention\n"
        "\t* invalid config key tls.defaults.verify"
    )


def test_a_whole_consul_config_loads_and_the_start_line_names_what_has_no_effect(tmp_path: Path) -> None:
    """Every inert key at once (one file), with the acted-on ones at their usual values: it loads, nothing of
    it reaches the config, and one warning names every key, sorted."""
    source: dict[str, Any] = {}
    for key, spec in INERT_KEYS:
        value = (False if spec == "bool" else []) if key in REFUSED else sample(spec)
        node = source
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "consul.json"
    path.write_text(json.dumps(source))
    config = load_config(["-config-file", str(path), "-data-dir", str(tmp_path / "d")], interfaces=ONE_NIC,
                         hostname="h")  # fmt: skip
    assert config.inert_keys == tuple(sorted(k for k, _ in INERT_KEYS))
    named = [w for w in config.warnings if w.startswith("accepted, no effect here: ")]
    assert named == ["accepted, no effect here: " + ", ".join(sorted(k for k, _ in INERT_KEYS))]
    plain = load_config(["-data-dir", str(tmp_path / "d")], interfaces=ONE_NIC, hostname="h")
    assert config.as_dict() | {"inert_keys": [], "warnings": [], "config_files": [], "argv": []} == plain.as_dict() | {
        "inert_keys": [], "warnings": [], "config_files": [], "argv": []}


def test_consul_style_hcl_blocks_load(tmp_path: Path) -> None:
    """Consul's HCL shapes for the blocks: labelled blocks (audit sinks), repeated blocks (segments), nesting."""
    (tmp_path / "agent.hcl").write_text("""
        performance { raft_multiplier = 1 }
        ports { grpc_tls = 8503 }
        telemetry { prometheus_retention_time = "30s" disable_hostname = true }
        tls { defaults { ca_file = "/etc/ca.pem" verify_incoming = false } }
        audit { enabled = false sink "log" { type = "file" path = "/tmp/a.json" rotate_bytes = 10 } }
        segments { name = "alpha" port = 8303 }
        segments { name = "beta" port = 8304 }
        ui_config { enabled = true metrics_proxy { add_headers { name = "a" value = "b" } } }
        connect { enabled = true }
        autopilot { min_quorum = 3 }
    """)
    config = load_config(["-config-dir", str(tmp_path), "-data-dir", str(tmp_path / "d")], interfaces=ONE_NIC)
    assert config.raft_multiplier == 1 and config.ui is True
    assert config.inert_keys == (
        "audit.enabled", "audit.sink", "autopilot.min_quorum", "connect.enabled", "ports.grpc_tls", "segments",
        "telemetry.disable_hostname", "telemetry.prometheus_retention_time", "tls.defaults.ca_file",
        "tls.defaults.verify_incoming", "ui_config.metrics_proxy.add_headers",
    )  # fmt: skip


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_keys_whose_being_ignored_would_weaken_security_stop_the_agent(tmp_path: Path, key: str) -> None:
    spec = dict(ALL)[key]
    value = True if spec == "bool" else ["10.0.0.0/8"]
    path = tmp_path / "tls.json"
    path.write_text(json.dumps(nest(key, value)))
    with pytest.raises(ConfigError) as info:
        load_config(["-config-file", str(path), "-data-dir", str(tmp_path / "d")], interfaces=ONE_NIC)
    shown = "true" if value is True else "[10.0.0.0/8]"
    assert str(info.value).startswith(f"{path}: {key} = {shown}: ")
    assert "not implemented here" in str(info.value)


# ------------------------------------------------------------------------------------------------ flags


def _flag_value(kind: str) -> list[str]:
    return {"bool": [], "int": ["7"], "str": ["x"], "duration": ["5s"], "list": ["x"], "meta": ["k:v"],
            "path": ["/nonexistent"], "special": ["json"]}[kind]  # fmt: skip


@pytest.mark.parametrize("name", sorted(AGENT_FLAGS))
def test_every_agent_flag_parses_with_its_type(name: str) -> None:
    flag = AGENT_FLAGS[name]
    flags = parse_flags([f"-{name}", *_flag_value(flag.kind)])
    if flag.key:
        node: Any = flags.config
        for part in flag.key:
            node = node[part]
        expected = {"bool": True, "int": 7, "str": "x", "duration": 5.0, "list": ["x"], "meta": {"k": "v"}}
        assert node == expected[flag.kind]
    if flag.kind == "int":
        with pytest.raises(ConfigError) as info:
            parse_flags([f"-{name}", "seven"])
        assert str(info.value) == f'error parsing flags: invalid value "seven" for flag -{name}: parse error'
    if flag.kind == "bool":
        with pytest.raises(ConfigError) as info:
            parse_flags([f"-{name}=maybe"])
        assert str(info.value) == f'error parsing flags: invalid boolean value "maybe" for -{name}: parse error'


def test_inert_flags_are_named_at_start(tmp_path: Path) -> None:
    config = load_config(
        ["-data-dir", str(tmp_path), "-log-file", "/tmp/x.log", "-grpc-tls-port", "8503", "-syslog",
         "-retry-join-wan", "10.0.0.1", "-ui-content-path", "/ui/"],
        interfaces=ONE_NIC,
    )  # fmt: skip
    assert config.inert_keys == ("enable_syslog", "log_file", "ports.grpc_tls", "retry_join_wan",
                                 "ui_config.content_path")  # fmt: skip


def test_acted_on_keys_reach_the_config(tmp_path: Path) -> None:
    config = load_config(
        ["-data-dir", str(tmp_path), "-pid-file", str(tmp_path / "a.pid"), "-disable-keyring-file"],
        interfaces=ONE_NIC,
    )
    assert (config.pid_file, config.disable_keyring_file, config.inert_keys) == (str(tmp_path / "a.pid"), True, ())


def test_dns_config_is_typed_like_every_other_block(tmp_path: Path) -> None:
    """dns_config's keys are config.go's DNS struct: an unknown one is Consul's `invalid config key`, a wrong type
    mapstructure's words, the keys triumvir does not act on (max_stale, use_cache...) are named at start, and the
    ones it acts on reach agent/dns/settings.py."""
    with pytest.raises(ConfigError) as info:
        check_source("c.json", {"dns_config": {"only_passing": True, "max_stal": "1s", "soa": {"retri": 1}}})
    assert str(info.value) == ("failed to parse c.json: 2 errors occurred:\n\t* invalid config key dns_config.max_stal"
                               "\n\t* invalid config key dns_config.soa.retri")
    for bad, words in (({"udp_answer_limit": "3"}, "'dns_config.udp_answer_limit' expected type 'int', got "
                        "unconvertible type 'string', value: '3'"),
                       ({"soa": {"min_ttl": -1}}, "cannot parse 'dns_config.soa.min_ttl', -1 overflows uint"),
                       ({"service_ttl": {"web": True}}, "'dns_config.service_ttl[web]' expected type 'string', got "
                        "unconvertible type 'bool', value: 'true'")):
        with pytest.raises(ConfigError) as info:
            check_source("c.json", {"dns_config": bad})
        assert str(info.value) == f"failed to parse c.json: 1 error(s) decoding:\n\n* {words}"
    (tmp_path / "dns.hcl").write_text("""
        dns_config {
          only_passing = true
          max_stale = "10s"
          use_cache = true
          service_ttl = { "web*" = "5s" }
          soa { min_ttl = 30 }
        }
    """)
    config = load_config(["-config-dir", str(tmp_path), "-data-dir", str(tmp_path / "d")], interfaces=ONE_NIC)
    assert config.inert_keys == ("dns_config.max_stale", "dns_config.use_cache")
    assert config.dns_config == {"only_passing": True, "service_ttl": {"web*": "5s"}, "soa": {"min_ttl": 30}}


def test_keys_match_in_any_case_as_mapstructures_do(tmp_path: Path) -> None:
    """Consul decodes files with mapstructure, which falls back to a case-insensitive match on a field's name:
    `Node_Name`, `PORTS { HTTP = ... }`, `DNS_Config`, `Service { ... }` all work; a variant beside the exact key
    is unused, hence Consul's `invalid config key`.  Map keys (node_meta) keep their case."""
    (tmp_path / "agent.hcl").write_text("""
        Node_Name = "n1"
        PORTS { HTTP = 8511 }
        DNS_Config { Only_Passing = true }
        Node_Meta { Rack = "r1" }
        Service { Name = "web" Port = 80 }
        Telemetry { Disable_Hostname = true }
    """)
    config = load_config(["-config-dir", str(tmp_path), "-data-dir", str(tmp_path / "d")], interfaces=ONE_NIC)
    assert (config.node_name, config.ports.http, dict(config.node_meta)) == ("n1", 8511, {"Rack": "r1"})
    assert config.dns_config == {"only_passing": True}
    assert [s["Name"] for s in config.services] == ["web"]
    assert config.inert_keys == ("telemetry.disable_hostname",)
    with pytest.raises(ConfigError) as info:
        check_source("c.json", {"node_name": "a", "NODE_NAME": "b", "ports": {"dns": 1, "DNS": 2}})
    assert str(info.value) == ("failed to parse c.json: 2 errors occurred:\n\t* invalid config key NODE_NAME\n"
                               "\t* invalid config key ports.DNS")
