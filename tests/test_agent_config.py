"""agent.config: Consul's flags, config files, merge rules and error texts (consul-compat §5, traps 23-25).

Every test names its interfaces and host name, so nothing here depends on the machine running it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs
import pytest

from agent.config import (
    GOSSIP_PROFILES,
    AgentConfig,
    ConfigError,
    HelpRequested,
    Interface,
    Ports,
    diff_config,
    load_config,
    reload_config,
)
from agent.config_flags import parse_flags
from agent.durations import parse_duration
from agent.interfaces import default_bind_addr, list_interfaces

ONE_NIC = [Interface("lo", ("127.0.0.1",), loopback=True), Interface("eth0", ("10.1.2.3",))]


def load(argv: list[str], interfaces: list[Interface] | None = None, hostname: str = "host-1") -> AgentConfig:
    return load_config(argv, interfaces=ONE_NIC if interfaces is None else interfaces, hostname=hostname)


def error_of(argv: list[str], **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(argv, **{"interfaces": ONE_NIC, "hostname": "host-1", **kwargs})  # type: ignore[arg-type]
    return str(info.value)


def write(path: Path, content: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")


# ---------------------------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "argv",
    [
        ["-http-port=8501"],
        ["-http-port", "8501"],
        ["--http-port=8501"],
        ["--http-port", "8501"],
    ],
)
def test_flag_value_forms(argv: list[str], data_dir: str) -> None:
    assert load([*argv, "-data-dir", data_dir]).ports.http == 8501


@pytest.mark.parametrize(
    ("argv", "server"),
    [(["-server"], True), (["--server"], True), (["-server=true"], True), (["-server=false"], False),
     (["-server=1"], True), (["-server=F"], False), ([], False)],
)  # fmt: skip
def test_boolean_flags_by_presence_or_value(argv: list[str], server: bool, data_dir: str) -> None:
    assert load([*argv, "-data-dir", data_dir]).server is server


def test_boolean_flag_does_not_take_the_next_argument() -> None:
    """Go's flag package: `-server false` is `-server` then a positional argument."""
    with pytest.raises(ConfigError) as info:
        parse_flags(["-server", "false"])
    assert str(info.value) == "Unexpected extra arguments: [false]"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--no-such-flag=abc"], "error parsing flags: flag provided but not defined: -no-such-flag"),
        (["--disable-keyring-file=abc"], 'error parsing flags: invalid boolean value "abc" for -disable-keyring-file: '
                                         "parse error"),
        (["-http-port"], "error parsing flags: flag needs an argument: -http-port"),
        (["-http-port", "http"], 'error parsing flags: invalid value "http" for flag -http-port: parse error'),
        (["-server=yes"], 'error parsing flags: invalid boolean value "yes" for -server: parse error'),
        (["-retry-interval=5"], 'error parsing flags: invalid value "5" for flag -retry-interval: parse error'),
        (["-node-meta=rack"], 'error parsing flags: invalid value "rack" for flag -node-meta: Missing ":" in: rack'),
        (["---server"], "error parsing flags: bad flag syntax: ---server"),
        (["-=x"], "error parsing flags: bad flag syntax: -=x"),
        (["-server", "extra", "-ui"], "Unexpected extra arguments: [extra -ui]"),
    ],
)
def test_flag_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_flags(argv)
    assert str(info.value) == message


@pytest.mark.parametrize("argv", [["-dc", "East"], ["--dc=east"], ["-datacenter", "east"]])
def test_dc_is_an_alias_of_datacenter(argv: list[str], data_dir: str) -> None:
    assert load([*argv, "-data-dir", data_dir]).datacenter == "east"


def test_help_flag() -> None:
    with pytest.raises(HelpRequested):
        parse_flags(["-h"])


def test_double_dash_ends_the_flags() -> None:
    with pytest.raises(ConfigError) as info:
        parse_flags(["-server", "--", "-ui"])
    assert str(info.value) == "Unexpected extra arguments: [-ui]"


def test_repeatable_flags_accumulate_and_scalars_keep_the_last(data_dir: str) -> None:
    config = load(
        ["-retry-join", "a", "-retry-join=b", "-join", "c", "-recursor", "8.8.8.8", "-node-meta", "rack:r1",
         "-node-meta=zone:z:1", "-node", "first", "-node", "second", "-data-dir", data_dir]
    )  # fmt: skip
    assert config.retry_join == ("a", "b")
    assert config.start_join == ("c",)
    assert config.recursors == ("8.8.8.8",)
    assert config.node_meta == {"rack": "r1", "zone": "z:1"}
    assert config.node_name == "second"


def test_every_flag_reaches_its_key(data_dir: str) -> None:
    config = load(
        ["-server", "-bootstrap-expect=3", "-data-dir", data_dir, "-node=n1",
         "-node-id=ADF4238A-882B-9DDC-4A9D-5B6758E4159E", "-bind=10.0.0.5", "-advertise=192.168.1.5",
         "-client=0.0.0.0", "-retry-interval=1m30s", "-retry-max=4", "-datacenter=EU-West", "-domain=test.",
         "-log-level=WARN", "-log-json", "-ui", "-http-port=1", "-https-port=2", "-dns-port=3", "-grpc-port=4",
         "-serf-lan-port=5", "-serf-wan-port=6", "-server-port=7", "-profile=local", "-rejoin"]
    )  # fmt: skip
    assert (config.server, config.bootstrap_expect, config.node_name) == (True, 3, "n1")
    assert config.node_id == "adf4238a-882b-9ddc-4a9d-5b6758e4159e"
    assert (config.bind_addr, config.advertise_addr, config.client_addr) == ("10.0.0.5", "192.168.1.5", "0.0.0.0")
    assert (config.retry_interval, config.retry_max) == (90.0, 4)
    assert (config.datacenter, config.domain) == ("eu-west", "test.")
    assert (config.log_level, config.log_json, config.ui) == ("warn", True, True)
    assert config.ports == Ports(http=1, https=2, dns=3, grpc=4, serf_lan=5, serf_wan=6, server=7)
    assert (config.gossip_profile, config.rejoin_after_leave) == ("local", True)


# ---------------------------------------------------------------------------------------------- defaults


def test_client_defaults(data_dir: str) -> None:
    config = load(["-data-dir", data_dir], hostname=" Host-1 \n")
    assert config.node_name == "Host-1"  # trimmed, not lower-cased (Consul)
    assert (config.datacenter, config.domain, config.client_addr) == ("dc1", "consul.", "127.0.0.1")
    assert config.bind_addr == config.advertise_addr == "10.1.2.3"
    assert config.ports == Ports(http=8500, dns=8600, serf_lan=8301, serf_wan=8302, server=8300, grpc=-1, https=-1)
    assert (config.server, config.bootstrap, config.bootstrap_expect, config.dev, config.ui) == (
        False, False, 0, False, False
    )  # fmt: skip
    assert (config.leave_on_terminate, config.skip_leave_on_interrupt) == (True, False)
    assert (config.retry_interval, config.retry_max, config.reconnect_timeout) == (30.0, 0, 72 * 3600.0)
    assert (config.log_level, config.log_json, config.gossip_profile) == ("info", False, "lan")
    assert (config.start_join, config.retry_join, config.services, config.checks) == ((), (), (), ())
    assert config.node_id is None and config.rejoin_after_leave is False


def test_server_defaults_do_not_leave(data_dir: str) -> None:
    config = load(["-server", "-data-dir", data_dir])
    assert (config.leave_on_terminate, config.skip_leave_on_interrupt) == (False, True)


def test_explicit_leave_settings_win_over_the_server_defaults(tmp_path: Path, data_dir: str) -> None:
    path = write(tmp_path / "c.json", {"leave_on_terminate": True, "skip_leave_on_interrupt": False})
    config = load(["-server", "-data-dir", data_dir, "-config-file", str(path)])
    assert (config.leave_on_terminate, config.skip_leave_on_interrupt) == (True, False)


def test_direct_construction_has_client_defaults() -> None:
    config = AgentConfig(node_name="n1")
    assert config.ports.http == 8500 and config.leave_on_terminate and config.as_dict()["ports"]["dns"] == 8600


def test_gossip_profiles_match_the_protocol() -> None:
    from protocol.config import PROFILES

    assert sorted(GOSSIP_PROFILES) == sorted(PROFILES)


# ---------------------------------------------------------------------------------------------- -dev


def test_dev_mode() -> None:
    config = load(["-dev"], interfaces=[], hostname="laptop")
    assert (config.dev, config.server, config.bootstrap_expect) == (True, True, 0)
    assert config.bootstrap is False  # Consul's DevSource: a dev server bootstraps itself without the tag
    assert (config.bind_addr, config.advertise_addr, config.client_addr) == ("127.0.0.1",) * 3
    assert (config.ui, config.log_level, config.data_dir, config.node_name) == (True, "debug", None, "laptop")
    assert (config.ports.grpc, config.gossip_profile) == (8502, "local")
    assert (config.leave_on_terminate, config.skip_leave_on_interrupt) == (False, True)


def test_dev_mode_values_can_be_overridden(tmp_path: Path) -> None:
    path = write(tmp_path / "c.hcl", 'log_level = "info"\ngossip_profile = "lan"\n')
    config = load(["-dev", "-config-file", str(path), "-bind", "127.0.0.2"], interfaces=[])
    assert (config.log_level, config.gossip_profile, config.bind_addr) == ("info", "lan", "127.0.0.2")


def test_dev_mode_refuses_bootstrap_expect() -> None:
    assert error_of(["-dev", "-bootstrap-expect=3"]) == "'bootstrap_expect > 0' not allowed in dev mode"


# ---------------------------------------------------------------------------------------------- files


def test_config_dir_lexical_order_and_merge_rules(tmp_path: Path, data_dir: str) -> None:
    conf = tmp_path / "conf"
    # Byte-wise name order: "10-..." sorts before "2-...".
    write(conf / "2-late.json", {"node_name": "late", "retry_join": ["c"], "ports": {"dns": 53},
                                 "node_meta": {"rack": "r2"}})  # fmt: skip
    write(conf / "10-early.json", {"node_name": "early", "retry_join": ["a", "b"], "ports": {"http": 1},
                                   "node_meta": {"rack": "r1", "zone": "z"}, "log_level": "warn"})  # fmt: skip
    write(conf / "README.md", "not config")
    write(conf / "notes.txt", "{not config")
    (conf / "sub.json").mkdir()  # directories are not read, whatever their name
    write(conf / "sub.json" / "x.json", {"node_name": "nested"})
    write(conf / "3-empty.json", "  \n")  # an empty file is no source
    config = load(["-config-dir", str(conf), "-data-dir", data_dir])
    assert config.node_name == "late"
    assert config.retry_join == ("a", "b", "c")
    assert config.ports == Ports(http=1, dns=53)
    assert config.node_meta == {"rack": "r2", "zone": "z"}
    assert config.log_level == "warn"
    assert config.warnings == (
        f"skipping file {conf}/README.md, extension must be .hcl or .json, or config format must be set",
        f"skipping file {conf}/notes.txt, extension must be .hcl or .json, or config format must be set",
    )
    assert config.config_dirs == (str(conf),) and config.config_files == ()


def test_sources_load_in_command_line_order_and_flags_win(tmp_path: Path, data_dir: str) -> None:
    one = write(tmp_path / "one" / "a.json", {"node_name": "dir-one", "retry_join": ["d1"], "log_level": "debug"})
    two = write(tmp_path / "two" / "b.hcl", 'node_name = "dir-two"\nretry_join = ["d2"]\n')
    single = write(tmp_path / "single.json", {"node_name": "file", "retry_join": ["f"], "datacenter": "file-dc"})
    config = load(
        ["-config-dir", str(one.parent), "-config-file", str(single), "-config-dir", str(two.parent),
         "-retry-join", "flag", "-datacenter", "flag-dc", "-data-dir", data_dir]
    )  # fmt: skip
    # Lists: flag values first, then each source in command-line order; scalars: flags over files.
    assert config.retry_join == ("flag", "d1", "f", "d2")
    assert config.node_name == "dir-two"
    assert config.datacenter == "flag-dc"
    assert config.log_level == "debug"
    assert config.config_dirs == (str(one.parent), str(two.parent))
    assert config.config_files == (str(single),)


def test_services_and_checks_accumulate(tmp_path: Path, data_dir: str) -> None:
    write(tmp_path / "c" / "1.json", {"service": {"name": "a"}, "services": [{"name": "b"}, {"name": "c"}],
                                      "check": {"id": "x", "ttl": "10s"}})  # fmt: skip
    write(tmp_path / "c" / "2.hcl", 'service {\n  name = "d"\n}\nservice {\n  name = "e"\n}\n'
                                    'checks = [{ id = "y", ttl = "5s" }]\n')  # fmt: skip
    config = load(["-config-dir", str(tmp_path / "c"), "-data-dir", data_dir])
    assert [s["name"] for s in config.services] == ["b", "c", "a", "d", "e"]
    assert [c["id"] for c in config.checks] == ["x", "y"]


HCL_FULL = """
# a comment
node_name        = "web-1"
datacenter       = "dc2"
data_dir         = "/var/lib/agent"
server           = true
bootstrap_expect = 3
bind_addr        = "10.0.0.11"
client_addr      = "0.0.0.0"
retry_join       = ["10.0.0.12", "10.0.0.13"]
retry_interval   = "15s"
reconnect_timeout = "8h"
ui_config {
  enabled = true
}
ports {
  http = 8501
  dns  = -1
}
node_meta = {
  rack = "r1"
  "instance-type" = "m5"
}
recursors = ["1.1.1.1"]
dns_config {
  only_passing = true
  service_ttl = { "*" = "5s" }
}
service {
  name = "web"
  id   = "web-1"
  tags = ["v1", "primary"]
  port = 8080
  meta = { version = "1.2" }
  check {
    id       = "web-http"
    http     = "http://localhost:8080/health"
    interval = "10s"
  }
}
check {
  id  = "mem"
  ttl = "30s"
}
gossip_profile = "wan"
"""

JSON_FULL = {
    "node_name": "web-1",
    "datacenter": "dc2",
    "data_dir": "/var/lib/agent",
    "server": True,
    "bootstrap_expect": 3,
    "bind_addr": "10.0.0.11",
    "client_addr": "0.0.0.0",
    "retry_join": ["10.0.0.12", "10.0.0.13"],
    "retry_interval": "15s",
    "reconnect_timeout": "8h",
    "ui_config": {"enabled": True},
    "ports": {"http": 8501, "dns": -1},
    "node_meta": {"rack": "r1", "instance-type": "m5"},
    "recursors": ["1.1.1.1"],
    "dns_config": {"only_passing": True, "service_ttl": {"*": "5s"}},
    "service": {
        "name": "web",
        "id": "web-1",
        "tags": ["v1", "primary"],
        "port": 8080,
        "meta": {"version": "1.2"},
        "check": {"id": "web-http", "http": "http://localhost:8080/health", "interval": "10s"},
    },
    "check": {"id": "mem", "ttl": "30s"},
    "gossip_profile": "wan",
}


def test_hcl_and_json_give_equal_configs(tmp_path: Path) -> None:
    hcl = write(tmp_path / "agent.hcl", HCL_FULL)
    js = write(tmp_path / "agent.json", JSON_FULL)
    from_hcl, from_json = load(["-config-file", str(hcl)]), load(["-config-file", str(js)])
    assert attrs.evolve(from_hcl, argv=(), config_files=()) == attrs.evolve(from_json, argv=(), config_files=())
    assert from_hcl.node_name == "web-1"  # python-hcl2 8 quotes strings unless told not to
    assert from_hcl.services[0]["check"]["interval"] == "10s"
    assert from_hcl.node_meta == {"rack": "r1", "instance-type": "m5"}
    assert (from_hcl.ports.http, from_hcl.ports.dns, from_hcl.ui) == (8501, -1, True)
    assert (from_hcl.retry_interval, from_hcl.reconnect_timeout, from_hcl.gossip_profile) == (15.0, 8 * 3600.0, "wan")


def test_hcl_strings_are_unescaped(tmp_path: Path, data_dir: str) -> None:
    path = write(tmp_path / "a.hcl", 'node_meta = { note = "say \\"hi\\"\\tthere" }\n')
    assert load(["-config-file", str(path), "-data-dir", data_dir]).node_meta == {"note": 'say "hi"\tthere'}


def test_numbers_and_strings_for_durations(tmp_path: Path, data_dir: str) -> None:
    path = write(tmp_path / "a.json", {"retry_interval": 2.5, "reconnect_timeout": 36000})
    config = load(["-config-file", str(path), "-data-dir", data_dir])
    assert (config.retry_interval, config.reconnect_timeout) == (2.5, 36000.0)


def test_comma_separated_string_is_a_list(tmp_path: Path, data_dir: str) -> None:
    """Consul's StringToSliceHookFunc(",")."""
    path = write(tmp_path / "a.json", {"retry_join": "a,b"})
    assert load(["-config-file", str(path), "-data-dir", data_dir]).retry_join == ("a", "b")


def test_null_values_are_ignored(tmp_path: Path, data_dir: str) -> None:
    path = write(tmp_path / "a.json", {"node_name": None, "ports": {"http": None}})
    config = load(["-config-file", str(path), "-data-dir", data_dir])
    assert (config.node_name, config.ports.http) == ("host-1", 8500)


def test_deprecated_ui_key(tmp_path: Path, data_dir: str) -> None:
    path = write(tmp_path / "a.json", {"ui": True})
    config = load(["-config-file", str(path), "-data-dir", data_dir])
    assert config.ui is True
    assert config.warnings == ("The 'ui' field is deprecated. Use the 'ui_config.enabled' field instead.",)


def test_config_format_forces_the_parser(tmp_path: Path, data_dir: str) -> None:
    path = write(tmp_path / "agent.conf", 'node_name = "hcl-node"\n')
    config = load(["-config-format=hcl", "-config-file", str(path), "-data-dir", data_dir])
    assert config.node_name == "hcl-node"
    assert error_of(["-config-format=yaml", "-data-dir", data_dir]) == (
        "config: -config-format must be either 'hcl' or 'json'"
    )


def test_hcl_flag_applies_after_everything(tmp_path: Path, data_dir: str) -> None:
    config = load(["-node=flag", "-hcl", 'node_name = "inline"', "-data-dir", data_dir])
    assert config.node_name == "inline"


# ---------------------------------------------------------------------------------------------- file errors


def test_unknown_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", {"foo": 1, "ports": {"htp": 1}, "ui_config": {"dirs": "x"}})
    assert error_of(["-config-file", str(path)]) == (
        f"failed to parse {path}: 3 errors occurred:\n\t* invalid config key foo\n"
        "\t* invalid config key ports.htp\n\t* invalid config key ui_config.dirs"
    )
    one = write(tmp_path / "b.hcl", 'disable_keyring_files = true\n')
    assert (
        error_of(["-config-file", str(one)])
        == f"failed to parse {one}: 1 error occurred:\n\t* invalid config key disable_keyring_files"
    )


def test_wrong_types(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.json",
        {"server": "yes", "ports": {"http": "80"}, "retry_join": [1], "node_meta": {"a": True},
         "bootstrap_expect": 2.5, "start_join": {"a": 1}, "services": [{"name": "a"}, "b"], "dns_config": [1]},
    )  # fmt: skip
    assert error_of(["-config-file", str(path)]) == (
        f"failed to parse {path}: 8 error(s) decoding:\n\n"
        "* 'bootstrap_expect' expected type 'int', got unconvertible type 'float64', value: '2.5'\n"
        "* 'dns_config' expected a map, got 'slice'\n"
        "* 'node_meta[a]' expected type 'string', got unconvertible type 'bool', value: 'true'\n"
        "* 'ports.http' expected type 'int', got unconvertible type 'string', value: '80'\n"
        "* 'retry_join[0]' expected type 'string', got unconvertible type 'int', value: '1'\n"
        "* 'server' expected type 'bool', got unconvertible type 'string', value: 'yes'\n"
        "* 'services[1]' expected a map, got 'string'\n"
        "* 'start_join': source data must be an array or slice, got map"
    )


def test_type_errors_come_before_unknown_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "a.hcl", 'server = "true"\nfoo = 1\n')
    assert error_of(["-config-file", str(path)]) == (
        f"failed to parse {path}: 1 error(s) decoding:\n\n"
        "* 'server' expected type 'bool', got unconvertible type 'string', value: 'true'"
    )


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '{\n  "server": true,\n  "node_name" "x"\n}\n')
    assert error_of(["-config-file", str(path)]) == (
        f"failed to parse {path}: invalid JSON at line 3, column 15: Expecting ':' delimiter"
    )


def test_json_must_be_an_object(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", "[1, 2]")
    assert error_of(["-config-file", str(path)]) == (
        f"failed to parse {path}: json: cannot unmarshal array into Go value of type map[string]interface {{}}"
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("server = true\nports {\n  http = 1\n", "invalid HCL at line 4, column 1: unexpected end of input"),
        ('node_name = "a"\nserver = = true\n', "invalid HCL at line 2, column 10: unexpected '= true'"),
        ('node_name = "a" @\n', "invalid HCL at line 1, column 17: unexpected '@'"),
    ],
)
def test_malformed_hcl_names_the_line(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path / "a.hcl", text)
    assert error_of(["-config-file", str(path)]) == f"failed to parse {path}: {where}"


def test_missing_config_dir_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert error_of(["-config-dir", str(missing)]) == (
        f"config: Open failed on {missing}. open {missing}: no such file or directory"
    )
    assert error_of(["-config-file", str(missing / "a.json")]) == (
        f"config: Open failed on {missing}/a.json. open {missing}/a.json: no such file or directory"
    )


def test_config_file_with_unknown_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "agent.yaml", "server: true")
    assert error_of(["-config-file", str(path)]) == (
        f"file {path} has unknown extension; must be .hcl or .json, or config format must be set"
    )


def test_an_error_in_a_later_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path / "c" / "a.json", {"server": True})
    bad = write(tmp_path / "c" / "b.json", {"serverr": True})
    assert error_of(["-config-dir", str(tmp_path / "c")]) == (
        f"failed to parse {bad}: 1 error occurred:\n\t* invalid config key serverr"
    )


# ---------------------------------------------------------------------------------------------- semantic errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-bootstrap-expect=3"], "'bootstrap_expect > 0' requires 'server = true'"),
        (["-bootstrap"], "'bootstrap = true' requires 'server = true'"),
        # Consul folds bootstrap_expect = 1 into bootstrap before validating.
        (["-bootstrap-expect=1"], "'bootstrap = true' requires 'server = true'"),
        (["-server", "-bootstrap", "-bootstrap-expect=3"],
         "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive"),
        (["-server", "-bootstrap-expect=-1"], "bootstrap_expect cannot be -1. Must be greater than or equal to zero"),
        (["-http-port=70000"], "ports.http: invalid port: 70000"),
        (["-server-port=0"], "server-port must be greater than zero"),
        (["-serf-lan-port=-1"], "serf-lan-port must be greater than zero"),
        (["-datacenter=dc 1"],
         'datacenter can only contain lowercase alphanumeric, - or _ characters. received: "dc 1"'),
        (["-datacenter="], "datacenter cannot be empty"),
        (["-node=  "], "node_name cannot be empty"),
        (["-log-level=loud"], "Invalid log level: loud. Valid log levels are: [TRACE DEBUG INFO WARN ERR ERROR]"),
        (["-node-id=1234"], "specified NodeID is invalid: uuid string is wrong length"),
        (["-node-id=zdf4238a-882b-9ddc-4a9d-5b6758e4159e"],
         "specified NodeID is invalid: uuid is improperly formatted"),
        (["-profile=fast"], 'gossip_profile must be one of lan, local, wan. received: "fast"'),
        (["-retry-max=-2"], "retry_max cannot be -2. Must be greater than or equal to zero"),
        (["-retry-interval=0s"], "retry_interval must be positive, got 0s"),
        (["-bind=10.0.0.1 10.0.0.2"],
         "bind_addr cannot contain multiple addresses. Use 'addresses.{dns,http,https}' instead."),
        (["-bind="], "bind_addr cannot be empty"),
        (["-bind=eth0"], "bind_addr: invalid ip address: eth0"),
        (["-bind={{ GetPrivateIP }}"], "bind_addr: go-sockaddr templates are not supported: '{{ GetPrivateIP }}'"),
        (["-advertise=0.0.0.0"], "Advertise address cannot be 0.0.0.0, :: or [::]"),
        (["-client=127.0.0.1 localhost"], "client_addr: invalid ip address: localhost"),
        (["-dns-port=8500"], "HTTP address 127.0.0.1:8500 already configured for DNS"),
    ],
)  # fmt: skip
def test_semantic_errors(argv: list[str], message: str, data_dir: str) -> None:
    assert error_of([*argv, "-data-dir", data_dir]) == message


def test_no_data_dir_outside_dev() -> None:
    assert error_of([]) == "data_dir cannot be empty"


def test_data_dir_must_be_a_directory(tmp_path: Path) -> None:
    path = write(tmp_path / "file", "x")
    assert error_of(["-data-dir", str(path)]) == f'data_dir "{path}" is not a directory'


def test_duration_errors(tmp_path: Path, data_dir: str) -> None:
    path = write(tmp_path / "a.json", {"retry_interval": "30"})
    assert error_of(["-config-file", str(path), "-data-dir", data_dir]) == (
        'retry_interval: invalid duration: "30": time: missing unit in duration "30"'
    )
    path = write(tmp_path / "b.json", {"reconnect_timeout": "4h"})
    assert error_of(["-config-file", str(path), "-data-dir", data_dir]) == (
        "reconnect_timeout: duration '4h' cannot be less than: 8h0m0s"
    )


def test_bootstrap_expect_one_is_bootstrap(data_dir: str) -> None:
    config = load(["-server", "-bootstrap-expect=1", "-data-dir", data_dir])
    assert (config.bootstrap, config.bootstrap_expect) == (True, 0)
    assert config.warnings == ("BootstrapExpect is set to 1; this is the same as Bootstrap mode.",)


@pytest.mark.parametrize(
    ("name", "warning"),
    [
        ("web_1", 'Node name "web_1" will not be discoverable via DNS due to invalid characters. '
                  "Valid characters include all alpha-numerics and dashes."),
        ("a" * 64, f'Node name "{"a" * 64}" will not be discoverable via DNS due to it being too long. '
                   "Valid lengths are between 1 and 63 bytes."),
        ("web-1", None),
    ],
)  # fmt: skip
def test_node_names_that_dns_cannot_serve_only_warn(name: str, warning: str | None, data_dir: str) -> None:
    config = load([f"-node={name}", "-data-dir", data_dir])
    assert config.node_name == name
    assert config.warnings == ((warning,) if warning else ())


# ---------------------------------------------------------------------------------------------- bind address


def test_bind_picks_the_single_private_ipv4(data_dir: str) -> None:
    nics = [
        Interface("lo", ("127.0.0.1", "::1"), loopback=True),
        Interface("eth0", ("203.0.113.9", "fe80::1", "100.64.1.2")),
        Interface("docker0", ("172.17.0.1",), up=False),
    ]
    config = load(["-data-dir", data_dir], interfaces=nics)
    assert config.bind_addr == config.advertise_addr == "100.64.1.2"


def test_loopback_counts_only_when_nothing_else_has_an_address() -> None:
    assert default_bind_addr([Interface("lo", ("127.0.0.1",), loopback=True), Interface("eth0", ())]) == "127.0.0.1"
    with pytest.raises(ConfigError) as info:
        default_bind_addr([Interface("lo", ("127.0.0.1",), loopback=True), Interface("eth0", ("8.8.8.8",))])
    assert str(info.value) == "No private IPv4 address found"


def test_bind_errors_ask_for_bind(data_dir: str) -> None:
    several = [Interface("eth0", ("10.0.0.1",)), Interface("docker0", ("172.17.0.1",))]
    assert error_of(["-data-dir", data_dir], interfaces=several) == (
        "Multiple private IPv4 addresses found. Please configure one with 'bind' and/or 'advertise'."
    )
    assert error_of(["-data-dir", data_dir], interfaces=[]) == "No private IPv4 address found"
    # Link-local counts as private (trap 24).
    linklocal = [Interface("eth0", ("10.0.0.1", "169.254.3.4"))]
    assert error_of(["-data-dir", data_dir], interfaces=linklocal).startswith("Multiple private IPv4")


def test_explicit_addresses_need_no_detection(data_dir: str) -> None:
    no_nics: list[Interface] = []
    assert load(["-bind=10.9.9.9", "-data-dir", data_dir], interfaces=no_nics).advertise_addr == "10.9.9.9"
    config = load(["-advertise=10.8.8.8", "-data-dir", data_dir], interfaces=no_nics)
    assert (config.bind_addr, config.advertise_addr) == ("0.0.0.0", "10.8.8.8")


def test_bind_any_advertises_the_detected_address(data_dir: str) -> None:
    config = load(["-bind=0.0.0.0", "-data-dir", data_dir])
    assert (config.bind_addr, config.advertise_addr) == ("0.0.0.0", "10.1.2.3")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIOCGIFCONF is Linux's")
def test_list_interfaces_reads_the_host() -> None:
    interfaces = list_interfaces()
    assert all(isinstance(i, Interface) and i.name for i in interfaces)


# ---------------------------------------------------------------------------------------------- reload and diff


def test_reload_rereads_files_with_the_same_flags(tmp_path: Path, data_dir: str) -> None:
    conf = tmp_path / "conf"
    write(conf / "a.json", {"log_level": "info", "services": [{"name": "web"}]})
    first = load(["-config-dir", str(conf), "-data-dir", data_dir, "-node", "n1"])
    write(conf / "a.json", {"log_level": "debug", "services": [{"name": "web"}, {"name": "db"}]})
    write(conf / "b.hcl", 'check {\n  id = "mem"\n  ttl = "10s"\n}\n')
    second = reload_config(first, interfaces=ONE_NIC)
    assert second.node_name == "n1" and second.log_level == "debug"
    assert diff_config(first, second) == ["log_level", "services", "checks"]
    assert diff_config(second, reload_config(second, interfaces=ONE_NIC)) == []


def test_reload_reports_errors(tmp_path: Path, data_dir: str) -> None:
    path = write(tmp_path / "a.json", {"log_level": "info"})
    first = load(["-config-file", str(path), "-data-dir", data_dir])
    write(path, '{"log_level": ')
    with pytest.raises(ConfigError, match=r"failed to parse .*a\.json: invalid JSON at line 1, column 15"):
        reload_config(first, interfaces=ONE_NIC)


# ---------------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("1m30s", 90.0), ("250ms", 0.25), ("2h", 7200.0), ("1.5h", 5400.0), ("0", 0.0),
     ("-1s", -1.0), ("1h2m3s4ms", 3723.004), ("10us", 1e-5), ("10µs", 1e-5)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", 'time: invalid duration ""'), ("5", 'time: missing unit in duration "5"'),
     ("5x", 'time: unknown unit "x" in duration "5x"'), ("s", 'time: invalid duration "s"'),
     ("-", 'time: invalid duration "-"')],
)  # fmt: skip
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


def test_performance_raft_multiplier_as_consul(tmp_path: Path) -> None:
    """Default 5, -dev 1, a config file sets it, and Consul's error outside 1..10."""
    assert load(["-data-dir", str(tmp_path)]).raft_multiplier == 5
    assert load(["-dev"]).raft_multiplier == 1
    assert load(["-dev", "-hcl", "performance { raft_multiplier = 3 }"]).raft_multiplier == 3
    for bad in (0, 11):
        with pytest.raises(ConfigError, match=f"performance.raft_multiplier cannot be {bad}. Must be between 1 and 10"):
            load(["-data-dir", str(tmp_path), "-hcl", f"performance {{ raft_multiplier = {bad} }}"])


def test_raft_snapshot_threshold_is_acted_on_and_never_negative(tmp_path: Path) -> None:
    """0 (the default) keeps Raft's 16384; a value is taken (not named inert at start); a negative one, which
    Consul would wrap to a huge uint64, is refused."""
    base = ["-data-dir", str(tmp_path)]
    assert load(base).raft_snapshot_threshold == 0
    config = load([*base, "-hcl", "raft_snapshot_threshold = 64"])
    assert config.raft_snapshot_threshold == 64
    assert "raft_snapshot_threshold" not in config.inert_keys
    with pytest.raises(ConfigError, match="raft_snapshot_threshold cannot be negative: -1"):
        load([*base, "-hcl", "raft_snapshot_threshold = -1"])
