"""`python -m agent acl ...` (agent/cli_acl.py): the real CLI in a subprocess against a real agent with ACLs on,
Consul's flags, output (command/acl/*/formatter.go) and texts; the token from -token, -token-file,
CONSUL_HTTP_TOKEN and CONSUL_HTTP_TOKEN_FILE.  The formatters' edge cases are checked in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from consul_agents import ENV, Cluster, needs_acl_agents
from procs import wait_for

from agent.cli_acl import format_policy, format_role, format_token, go_time_v

ROOT = "5b7c2f0e-9d8a-4c1b-8e6f-2a4d6c8e0f13"


def test_go_time_v_is_gos_default_time_format() -> None:
    assert go_time_v("2026-12-02T16:03:22.473039218Z") == "2026-12-02 16:03:22.473039218 +0000 UTC"
    assert go_time_v("2026-12-02T16:03:22.4700Z") == "2026-12-02 16:03:22.47 +0000 UTC"
    assert go_time_v("2026-12-02T16:03:22Z") == "2026-12-02 16:03:22 +0000 UTC"
    assert go_time_v("2026-12-02T17:03:22+01:00") == "2026-12-02 17:03:22 +0100 +0100"


def test_formatters_match_consuls_layout() -> None:
    token = {"AccessorID": "a", "SecretID": "s", "Description": "d", "Local": True,
             "CreateTime": "2026-01-02T03:04:05Z", "ExpirationTime": "2026-01-03T03:04:05Z", "Hash": "AQI=",
             "CreateIndex": 5, "ModifyIndex": 6, "Policies": [{"ID": "p1", "Name": "one"}],
             "Roles": [{"ID": "r1", "Name": "rone"}], "ServiceIdentities": [{"ServiceName": "web"}],
             "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}]}  # fmt: skip
    assert format_token(token, True) == (
        "AccessorID:       a\nSecretID:         s\nDescription:      d\nLocal:            true\n"
        "Create Time:      2026-01-02 03:04:05 +0000 UTC\nExpiration Time:  2026-01-03 03:04:05 +0000 UTC\n"
        "Hash:             0102\nCreate Index:     5\nModify Index:     6\n"
        "Policies:\n   p1 - one\nRoles:\n   r1 - rone\nService Identities:\n   web (Datacenters: all)\n"
        "Node Identities:\n   n1 (Datacenter: dc1)\n")  # fmt: skip
    policy = {"ID": "i", "Name": "n", "Description": "", "Datacenters": ["dc1", "dc2"], "Rules": 'key "" {}'}
    assert format_policy(policy, False) == ("ID:           i\nName:         n\nDescription:  \n"
                                            "Datacenters:  dc1, dc2\nRules:\nkey \"\" {}")  # fmt: skip
    role = {"ID": "i", "Name": "n", "Description": "x", "ServiceIdentities": [{"ServiceName": "api",
                                                                               "Datacenters": ["a", "b"]}]}
    assert format_role(role, False) == ("ID:           i\nName:         n\nDescription:  x\n"
                                        "Service Identities:\n   api (Datacenters: a, b)\n")  # fmt: skip


# ------------------------------------------------------------------ against a real agent


@pytest.fixture(scope="module")
def agent_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("cli-acl")
    cluster = Cluster(tmp)
    try:
        server = cluster.start("s1", server=True, token=ROOT, extra={"acl": {
            "enabled": True, "default_policy": "deny", "tokens": {"initial_management": ROOT}}})
        addr = server.http_addr
        wait_for(lambda: requests.get(f"http://{addr}/v1/acl/token/self", headers={"X-Consul-Token": ROOT},
                                      timeout=5).status_code == 200,
                 timeout=60, what="the initial management token", diagnostics=cluster.diagnostics)
        yield addr
    finally:
        cluster.close()


def acl(addr: str, *args: str, token: str | None = ROOT, env: dict[str, str] | None = None,
        stdin: str = "") -> tuple[int, str, str]:  # fmt: skip
    """Run ``python -m agent acl ARGS`` against ``addr``; (exit code, stdout, stderr)."""
    environ = {k: v for k, v in ENV.items() if not k.startswith("CONSUL_")}
    environ["CONSUL_HTTP_ADDR"] = addr
    environ.update(env or {})
    words = 1 if args[0] == "bootstrap" else 2  # flags go after the subcommand's words
    flag = ["-token", token] if token is not None else []
    argv = [sys.executable, "-m", "agent", "acl", *args[:words], *flag, *args[words:]]
    done = subprocess.run(argv, env=environ, input=stdin, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def field(out: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith(f"{name}:"))


@needs_acl_agents
def test_tokens_policies_and_roles_through_the_cli(agent_addr: str, tmp_path: Path) -> None:
    addr = agent_addr
    rc, out, err = acl(addr, "bootstrap")
    assert rc == 1 and err.startswith("Failed ACL bootstrapping: Unexpected response code: 403 (Permission "
                                      "denied: ACL bootstrap no longer allowed (reset index: ")  # fmt: skip
    rules = tmp_path / "web.hcl"
    rules.write_text('service_prefix "web" {\n  policy = "write"\n}\n')
    rc, out, err = acl(addr, "policy", "create", "-name", "web", "-description", "web writers",
                       "-rules", f"@{rules}")  # fmt: skip
    assert rc == 0, err
    policy_id = field(out, "ID")
    assert out.endswith('Rules:\nservice_prefix "web" {\n  policy = "write"\n}\n\n')
    rc, out, err = acl(addr, "policy", "create", "-name", "bad", "-rules", "@/nonexistent/x.hcl")
    assert (rc, err.strip()) == (1, "Error loading rules: Failed to read file: open /nonexistent/x.hcl: "
                                    "no such file or directory")  # fmt: skip
    rc, out, err = acl(addr, "policy", "create", "-name", "broken", "-rules", "service_prefix {")
    assert rc == 1 and err.startswith("Failed to create new policy: Unexpected response code: 500 (")
    rc, out, err = acl(addr, "policy", "read", "-id", policy_id[:8], "-format", "json")
    assert rc == 0, err
    as_json = json.loads(out)
    assert list(as_json)[:5] == ["ID", "Name", "Description", "Rules", "Datacenters"]
    assert as_json["ID"] == policy_id and out.startswith('{\n    "ID": ')
    # a token linked by name; its secret then reads itself through CONSUL_HTTP_TOKEN
    rc, out, err = acl(addr, "token", "create", "-description", "web token", "-policy-name", "web")
    assert rc == 0, err
    accessor, secret = field(out, "AccessorID"), field(out, "SecretID")
    assert f"Policies:\n   {policy_id} - web\n" in out
    rc, out, err = acl(addr, "token", "read", "-self", token=None, env={"CONSUL_HTTP_TOKEN": secret})
    assert rc == 0 and field(out, "AccessorID") == accessor
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    rc, out, _ = acl(addr, "token", "read", "-self", token=None, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)})
    assert rc == 0 and field(out, "AccessorID") == accessor
    rc, out, _ = acl(addr, "token", "read", "-self", "-token-file", str(token_file), token=None)
    assert rc == 0 and field(out, "AccessorID") == accessor
    # without acl:read, the web token cannot list tokens
    rc, out, err = acl(addr, "token", "list", token=secret)
    assert rc == 1 and err.startswith("Failed to retrieve the token list: Unexpected response code: 403 "
                                      "(Permission denied: token with AccessorID ")  # fmt: skip
    rc, out, err = acl(addr, "token", "list")
    assert rc == 0 and out.count("AccessorID:") == 3 and "Legacy:           false" in out
    # a role, a token with it, an update that appends, a clone, deletes
    rc, out, err = acl(addr, "role", "create", "-name", "webrole", "-policy-id", policy_id[:8],
                       "-service-identity", "api:dc1,dc2")  # fmt: skip
    assert rc == 0, err
    role_id = field(out, "ID")
    assert "Service Identities:\n   api (Datacenters: dc1, dc2)\n" in out
    rc, out, err = acl(addr, "role", "read", "-name", "webrole")
    assert rc == 0 and field(out, "ID") == role_id
    rc, out, err = acl(addr, "token", "update", "-accessor-id", accessor[:10], "-append-role-name", "webrole",
                       "-description", "now with a role")  # fmt: skip
    assert rc == 0, err
    assert field(out, "Description") == "now with a role" and f"Roles:\n   {role_id} - webrole\n" in out
    assert f"Policies:\n   {policy_id} - web\n" in out  # kept
    rc, out, err = acl(addr, "token", "clone", "-accessor-id", accessor, "-description", "the copy")
    assert rc == 0 and field(out, "Description") == "the copy" and field(out, "AccessorID") != accessor
    clone = field(out, "AccessorID")
    rc, out, err = acl(addr, "role", "update", "-id", role_id, "-description", "updated")
    assert rc == 0 and field(out, "Description") == "updated" and f"   {policy_id} - web" in out
    for accessor_id in (accessor, clone):
        rc, out, err = acl(addr, "token", "delete", "-accessor-id", accessor_id)
        assert (rc, out) == (0, f'Token "{accessor_id}" deleted successfully\n'), err
    rc, out, err = acl(addr, "token", "read", "-self", token=None, env={"CONSUL_HTTP_TOKEN": secret})
    assert rc == 1 and err.strip() == "Error reading token: Unexpected response code: 403 (ACL not found)"
    rc, out, err = acl(addr, "role", "delete", "-id", role_id)
    assert (rc, out) == (0, f'Role "{role_id}" deleted successfully\n')
    rc, out, err = acl(addr, "policy", "update", "-id", policy_id, "-name", "web-renamed")
    assert rc == 0 and field(out, "Name") == "web-renamed" and 'service_prefix "web"' in out  # rules merged
    rc, out, err = acl(addr, "policy", "delete", "-name", "web-renamed")
    assert (rc, out) == (0, f'Policy "{policy_id}" deleted successfully\n')
    rc, out, err = acl(addr, "policy", "list")
    assert rc == 0 and "web-renamed" not in out and out.startswith("global-management:\n")


@needs_acl_agents
def test_cli_errors_before_and_after_reaching_the_agent(agent_addr: str) -> None:
    addr = agent_addr
    cases: list[tuple[tuple[str, ...], str]] = [
        (("token", "create", "-description", "x"), "Cannot create a token without specifying -policy-name, "
         "-policy-id, -role-name, -role-id, -service-identity, or -node-identity at least once"),
        (("token", "read"), "Must specify the -id parameter"),
        (("token", "delete"), "Must specify the -accessor-id parameter"),
        (("policy", "read"), "Must specify either the -id or -name parameters"),
        (("policy", "create"), "Missing require '-name' flag"),
        (("role", "create", "-name", "r"), "Cannot create a role without specifying -policy-name, -policy-id, "
         "-service-identity, or -node-identity at least once"),
        (("token", "read", "-id", "ffff"), "Error determining token ID: No such token ID with prefix: ffff"),
        (("policy", "read", "-name", "nope"), "Error determining policy ID: No such policy with name nope"),
        (("token", "create", "-policy-name", "x", "-node-identity", "justname"),
         'Malformed -node-identity argument: "justname"'),
        (("policy", "list", "-format", "yaml"), "Unknown format: yaml"),
    ]  # fmt: skip
    for args, text in cases:
        rc, out, err = acl(addr, *args)
        assert (rc, err.strip()) == (1, text), (args, out, err)
    rc, _, err = acl(addr, "token", "list", token=None, env={"CONSUL_HTTP_TOKEN_FILE": "/nonexistent/token"})
    assert rc == 1 and err.strip() == ("Error connecting to Consul agent: Error loading token file: open "
                                       "/nonexistent/token: no such file or directory")  # fmt: skip


def test_acl_group_help_lists_its_subcommands() -> None:
    done = subprocess.run([sys.executable, "-m", "agent", "acl", "token"], env=ENV, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 1
    for sub in ("clone", "create", "delete", "list", "read", "update"):
        assert f"    {sub}" in done.stdout
