"""Service and check definitions (agent.services.definitions): Consul's two dialects, defaults and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.services.definitions import DefinitionError, parse_check, parse_service


def test_api_keys_are_case_insensitive_with_consuls_aliases() -> None:
    service = parse_service(
        {"name": "web", "id": "web-1", "port": 80, "tags": ["a"], "enabletagoverride": True,
         "enable_tag_override": True, "Meta": {"v": "1"}, "checks": [{"ttl": "5s"}, {"TCP": "h:1", "interval": "1s"}]},
        api=True,
    )  # fmt: skip
    assert (service.id, service.port, service.enable_tag_override, service.meta) == ("web-1", 80, True, (("v", "1"),))
    assert [(c.id, c.name, c.kind, c.status) for c in service.checks] == [
        ("service:web-1:1", "Service 'web' check", "ttl", "critical"),
        ("service:web-1:2", "Service 'web' check", "tcp", "critical"),
    ]
    single = parse_service({"Name": "db", "Check": {"TTL": "1m"}}, api=True)
    assert single.checks[0].id == "service:db" and single.checks[0].ttl == 60.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "web", "bogus": 1}, 'Request decode failed: json: unknown field "bogus"'),
        ({"port": 1}, "Missing service name"),
        ({"name": "w", "address": "0.0.0.0"}, "Invalid service address"),
        ({"name": "w", "meta": {"consul-x": "1"}}, 'Invalid Service Meta: Key prefix "consul-" is reserved'),
        ({"name": "w", "weights": {"passing": 0}}, "Invalid Weights: Passing must be greater than 0"),
        ({"name": "w", "check": {"ttl": "1s", "interval": "1s"}}, "Invalid check: Interval and TTL cannot both"),
        ({"name": "w", "check": {"http": "http://x/"}}, "Invalid check: Interval must be > 0 for Script, HTTP"),
        ({"name": "w", "check": {}}, "Invalid check: TTL must be > 0 for TTL checks"),
        ({"name": "w", "check": {"ttl": "1s", "status": "ok"}}, "Status for checks must 'passing', 'warning'"),
        ({"name": "w", "check": {"script": "x", "interval": "1s"}},
         'Request decode failed: json: unknown field "script"'),
    ],
)
def test_api_refusals_use_consuls_words(body: dict, message: str) -> None:
    with pytest.raises(DefinitionError) as err:
        parse_service(body, api=True)
    assert err.value.message.startswith(message) and err.value.status == 400


def test_top_level_checks_need_a_name_in_the_api_and_take_it_as_id() -> None:
    with pytest.raises(DefinitionError, match="Missing check name"):
        parse_check({"ttl": "5s"}, api=True)
    check = parse_check({"name": "mem", "ttl": "5s", "serviceid": "web", "notes": "n"}, api=True)
    assert (check.id, check.service_id, check.notes) == ("mem", "web", "n")
    assert parse_check({"name": "x", "DeregisterCriticalServiceAfter": 90_000_000_000, "ttl": "1s"},
                       api=True).deregister_critical_service_after == 90.0  # fmt: skip


def test_config_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "c"
    conf.mkdir()
    (conf / "web.json").write_text(json.dumps({"service": {"name": "web", "check": {"tcp": "h:1", "intervl": "1s"}}}))
    with pytest.raises(ConfigError) as err:
        load_config(["-config-dir", str(conf), "-data-dir", str(tmp_path / "d"), "-bind", "127.0.0.1"])
    assert str(err.value) == (f'failed to parse {conf / "web.json"}: service "web": invalid config key '
                              "services[0].check.intervl")  # fmt: skip
    (conf / "web.json").write_text(json.dumps({"checks": [{"id": "x", "ttl": "soon"}]}))
    with pytest.raises(ConfigError, match=r'web.json: checks\[0\].ttl: time: invalid duration "soon"'):
        load_config(["-config-dir", str(conf), "-data-dir", str(tmp_path / "d"), "-bind", "127.0.0.1"])


def test_config_accepts_snake_case_and_hcl(tmp_path: Path) -> None:
    conf = tmp_path / "c"
    conf.mkdir()
    (conf / "web.hcl").write_text(
        'service {\n  name = "web"\n  port = 8080\n  enable_tag_override = true\n'
        '  check {\n    id = "h"\n    http = "http://localhost:8080/"\n    interval = "10s"\n'
        '    header = { X-A = ["1"] }\n  }\n}\nenable_local_script_checks = true\n'
    )
    config = load_config(["-config-dir", str(conf), "-data-dir", str(tmp_path / "d"), "-bind", "127.0.0.1"])
    service = parse_service(config.services[0], api=False)
    assert service.enable_tag_override and service.checks[0].header == (("X-A", ("1",)),)
    assert config.enable_local_script_checks and not config.enable_script_checks
