"""``/v1/catalog/register`` and ``/deregister`` bodies into commands: Consul's endpoint defaults and texts
(hashicorp/consul agent/consul/catalog_endpoint.go Register/Deregister, checkPreApply; go-uuid ParseUUID)."""

from __future__ import annotations

import pytest
from state_helpers import Driven

from agent.server.state import reads
from agent.server.state.leader import RequestError
from agent.server.state.registration import parse_deregister, parse_register


def test_defaults_service_id_check_id_status_and_case_insensitive_keys() -> None:
    cmd = parse_register({
        "node": "ext", "address": "10.1.1.1", "NodeMeta": {"k": "v"},
        "Service": {"Service": "redis", "Port": 6379, "Tags": ["a"]},
        "Check": {"Name": "redis alive", "ServiceID": "redis"},
        "Checks": [{"CheckID": "disk", "Name": "Disk", "Status": "passing"}],
    })  # fmt: skip
    assert cmd.service is not None and (cmd.service.id, cmd.service.name, cmd.service.port) == ("redis", "redis", 6379)
    assert [(c.id, c.status) for c in cmd.checks] == [("disk", "passing"), ("redis alive", "critical")]
    d = Driven()
    assert d.run(cmd) is True
    node = reads.catalog_node(d.state, "ext").value
    assert node["checks"][1].check.service_name == "redis" and dict(node["node"].meta) == {"k": "v"}


@pytest.mark.parametrize(
    ("body", "message", "status"),
    [({"Address": "1.2.3.4"}, "Must provide node", 500),
     ({"Node": "n"}, "Must provide address if SkipNodeUpdate is not set", 500),
     ({"Node": "n", "Address": "a", "ID": "abc"}, "Bad node ID: uuid string is wrong length", 500),
     ({"Node": "n", "Address": "a", "ID": "0123456789abcdef0123456789abcdef0123"},
      "Bad node ID: uuid is improperly formatted", 500),
     ({"Node": "n", "Address": "a", "Service": {"ID": "x"}}, "Must provide service name with ID", 500),
     ({"Node": "n", "Address": "a", "Service": {"Service": "x", "Address": "0.0.0.0"}}, "Invalid service address", 500),
     ({"Node": "n", "Address": "a", "Service": {"Service": "x", "Port": "80"}}, "Service.Port: expected an integer",
      400),
     ({"Node": "n", "Address": "a", "Check": {"Node": "other", "Name": "c"}}, "is not the registered node", 500)],
)  # fmt: skip
def test_register_errors(body: dict[str, object], message: str, status: int) -> None:
    with pytest.raises(RequestError, match=message) as info:
        parse_register(body)
    assert info.value.status == status


def test_skip_node_update_needs_no_address() -> None:
    assert parse_register({"Node": "n", "SkipNodeUpdate": True}).skip_node_update is True


def test_deregister() -> None:
    cmd = parse_deregister({"node": "n", "ServiceID": "web"})
    assert (cmd.node, cmd.service_id, cmd.check_id) == ("n", "web", "")
    with pytest.raises(RequestError, match="Must provide node"):
        parse_deregister({})
