"""agent.config: the ``acl`` block and ``primary_datacenter`` (issue 13), with Consul's deprecated ACL keys
(hashicorp/consul agent/config/deprecated.go) and its texts (agent/consul/acl.go ``NewACLResolver``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import ACLConfig, ACLTokens, AgentConfig, ConfigError, Interface, load_config

ONE_NIC = [Interface("lo", ("127.0.0.1",), loopback=True), Interface("eth0", ("10.1.2.3",))]


def load(tmp_path: Path, name: str, content: str | dict) -> AgentConfig:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return load_config(["-data-dir", str(tmp_path / "data"), "-config-file", str(path)], interfaces=ONE_NIC,
                       hostname="host-1")  # fmt: skip


def error_of(tmp_path: Path, name: str, content: str | dict) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, name, content)
    return str(info.value)


ACL_HCL = """
primary_datacenter = "DC1"
acl {
  enabled = true
  default_policy = "deny"
  down_policy = "async-cache"
  enable_token_persistence = true
  token_ttl = "45s"
  tokens {
    initial_management = "root-secret"
    agent = "agent-secret"
    default = "default-secret"
    agent_recovery = "recovery-secret"
    dns = "dns-secret"
  }
}
"""


def test_the_acl_block_in_hcl_and_json(tmp_path: Path) -> None:
    hcl = load(tmp_path, "a.hcl", ACL_HCL)
    js = load(tmp_path, "a.json", {
        "primary_datacenter": "dc1",
        "acl": {"enabled": True, "default_policy": "deny", "down_policy": "async-cache",
                "enable_token_persistence": True, "token_ttl": "45s",
                "tokens": {"initial_management": "root-secret", "agent": "agent-secret", "default": "default-secret",
                           "agent_recovery": "recovery-secret", "dns": "dns-secret"}},
    })  # fmt: skip
    assert hcl.acl == js.acl
    assert hcl.primary_datacenter == "dc1"
    assert hcl.acl == ACLConfig(
        enabled=True, default_policy="deny", down_policy="async-cache", enable_token_persistence=True,
        token_ttl=45.0, tokens=ACLTokens("root-secret", "agent-secret", "default-secret", "recovery-secret",
                                         "dns-secret"),
    )  # fmt: skip


def test_defaults_are_consuls(tmp_path: Path) -> None:
    c = load(tmp_path, "a.hcl", 'datacenter = "east"')
    assert c.acl == ACLConfig() and not c.acl.enabled
    assert (c.acl.default_policy, c.acl.down_policy, c.acl.token_ttl) == ("allow", "extend-cache", 30.0)
    assert c.primary_datacenter == "east"  # unset: this datacenter


def test_no_token_appears_in_a_repr(tmp_path: Path) -> None:
    # the agent logs its configuration; a secret must never be in a log line
    c = load(tmp_path, "a.hcl", ACL_HCL)
    shown = repr(c)
    for secret in ("root-secret", "agent-secret", "default-secret", "recovery-secret", "dns-secret"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('acl { default_policy = "maybe" }', 'invalid ACL default policy "maybe"'),
        ('acl { down_policy = "sometimes" }', 'invalid ACL down policy "sometimes"'),
        ('acl { enabled = "yes" }', "'acl.enabled' expected type 'bool'"),
        ('acl { token_ttl = "soon" }', 'acl.token_ttl: invalid duration: "soon"'),
        ('acl { tokens { agent = 5 } }', "'acl.tokens.agent' expected type 'string'"),
        ('acl { tokens { bogus = "x" } }', "invalid config key acl.tokens.bogus"),
        ('acl { enable = true }', "invalid config key acl.enable"),
        ('primary_datacenter = "d c"', "primary_datacenter can only contain lowercase alphanumeric"),
    ],
)
def test_bad_acl_config_is_refused_with_a_precise_message(tmp_path: Path, content: str, message: str) -> None:
    assert message in error_of(tmp_path, "a.hcl", content)


def test_deprecated_keys_map_onto_the_block_with_consuls_warnings(tmp_path: Path) -> None:
    c = load(tmp_path, "a.json", {
        "acl_datacenter": "dc9", "acl_default_policy": "deny", "acl_down_policy": "deny", "acl_ttl": "10s",
        "acl_master_token": "m", "acl_agent_master_token": "am", "acl_agent_token": "a", "acl_token": "d",
    })  # fmt: skip
    assert c.primary_datacenter == "dc9"
    assert c.acl.enabled  # acl_datacenter implicitly enables ACLs
    assert (c.acl.default_policy, c.acl.down_policy, c.acl.token_ttl) == ("deny", "deny", 10.0)
    assert c.acl.tokens == ACLTokens(initial_management="m", agent_recovery="am", agent="a", default="d")
    assert "The 'acl_master_token' field is deprecated. Use the 'acl.tokens.initial_management' field instead." in (
        c.warnings
    )
    assert "The 'acl_datacenter' field is deprecated. Use the 'primary_datacenter' field instead." in c.warnings


def test_new_keys_win_over_deprecated_ones(tmp_path: Path) -> None:
    c = load(tmp_path, "a.hcl", 'acl_token = "old"\nacl { tokens { default = "new"\n master = "m" } }')
    assert c.acl.tokens.default == "new" and c.acl.tokens.initial_management == "m"
    assert "The 'acl.tokens.master' field is deprecated. Use the 'acl.tokens.initial_management' field instead." in (
        c.warnings
    )


def test_a_server_with_acls_on_advertises_acls_1(tmp_path: Path) -> None:
    # Consul's server sets the Serf tag acls=1 (structs.ACLModeEnabled) when ACLs are on, 0 otherwise
    from agent.consul import lan_tags

    on = load(tmp_path, "on.hcl", 'server = true\nacl { enabled = true }')
    off = load(tmp_path, "off.hcl", "server = true")
    assert lan_tags(on, "40e4a748-2192-161a-0510-9bf59fe950b5")["acls"] == "1"
    assert lan_tags(off, "40e4a748-2192-161a-0510-9bf59fe950b5")["acls"] == "0"


def test_an_agent_with_acls_on_starts_and_enforces(cluster: Any) -> None:
    # issue 13: until every endpoint checked tokens, acl.enabled stopped the agent (exit 1); now it starts and
    # enforces: anonymous is refused under default_policy deny, the agent recovery token reads this agent.
    import requests

    recovery = "9d1c2b7e-0000-4000-8000-0000000000aa"
    a = cluster.start("acl1", server=True, token=recovery, extra={
        "acl": {"enabled": True, "default_policy": "deny", "tokens": {"agent_recovery": recovery}}})
    anonymous = requests.get(f"http://{a.http_addr}/v1/agent/self", timeout=5)
    assert anonymous.status_code == 403
    assert anonymous.text.startswith("Permission denied: anonymous token lacks permission 'agent:read' on ")
    assert anonymous.headers["X-Consul-Default-Acl-Policy"] == "deny"
    mine = requests.get(f"http://{a.http_addr}/v1/agent/self", headers={"X-Consul-Token": recovery}, timeout=5)
    assert mine.status_code == 200 and mine.json()["Config"]["NodeName"] == "acl1"
