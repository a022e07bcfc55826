"""The merged catalog (docs/state.md, "Catalog registrations and agent-owned records"): agents' nodes from the
member table and registered (external) nodes from the servers' store, read through the same pure functions by
HTTP and DNS.

Snapshots are built in-process: a MemberTable with Consul-tagged members, agents' records applied as the
replication runner applies them, and registered nodes published as the mirror publishes them
(``set_registered``).  Every rule is checked against both sources; each case fails if the merge is dropped.
"""

from __future__ import annotations

import random
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from agent.catalog import query
from agent.catalog.indexed import apply_changes
from agent.catalog.record import CheckRecord, NodeCatalog, RecordError, ServiceRecord
from agent.catalog.registered import (
    Registered,
    RegisteredNode,
    WireDecoder,
    registered_from_wire,
    registered_to_wire,
)
from agent.dns.answer import answer
from agent.dns.settings import DnsSettings
from agent.http.catalog_services import service_node_json
from agent.http.views import node_view_json
from agent.members import STATUS_FAILED, STATUS_LEFT, Member, MemberTable, Snapshot

DC = "dc1"


def tags(role: str = "node") -> dict[str, str]:
    return {"role": role, "dc": DC, "build": "1.20.1:abc", "id": f"id-{role}", "port": "8300"}


def web(sid: str = "web", port: int = 80, tags_: tuple[str, ...] = ("v1",), address: str = "") -> ServiceRecord:
    return ServiceRecord(id=sid, name="web", tags=tags_, port=port, address=address)


def check(cid: str, status: str, service_id: str = "") -> CheckRecord:
    return CheckRecord(id=cid, name=cid, status=status, service_id=service_id,
                       service_name="web" if service_id else "")  # fmt: skip


def ext(name: str, address: str, *, services: tuple[ServiceRecord, ...] = (), checks: tuple[CheckRecord, ...] = (),
        meta: dict[str, str] | None = None, index: int = 100) -> RegisteredNode:  # fmt: skip
    return RegisteredNode(
        name, address, id=f"uuid-{name}", datacenter=DC, tagged_addresses={"lan": address}, meta=meta or {},
        create_index=index, modify_index=index + 1,
        services=tuple((s, index, index + 2) for s in services), checks=tuple((c, index, index + 3) for c in checks),
    )  # fmt: skip


def build(registered: list[RegisteredNode], *, members: list[Member] | None = None,
          records: dict[str, NodeCatalog] | None = None) -> MemberTable:  # fmt: skip
    table = MemberTable()
    for m in members if members is not None else [
        Member("s1", "127.0.0.10", 8301, tags("consul")),
        Member("n1", "127.0.0.11", 8301, tags()),
        Member("gone", "127.0.0.12", 8301, tags(), status=STATUS_LEFT),
    ]:
        table.apply("member-join", m)
    if records is None:
        records = {"n1": NodeCatalog("n1", 1, (web("web-n1"),), (check("service:web-n1", "passing", "web-n1"),),
                                     {"rack": "r1"})}  # fmt: skip
    table.apply_catalog(lambda catalog, index: apply_changes(catalog, records, index))
    table.set_registered(Registered.of(500, registered))
    return table


def standard() -> Snapshot:
    return build([
        ext("ext-ok", "10.0.0.1", services=(web("web-ext", 8080, ("v2",)),),
            checks=(check("svc", "passing", "web-ext"),), meta={"external-node": "true"}),
        ext("ext-warn", "10.0.0.2", services=(web("web-w", 8081),), checks=(check("node-probe", "warning"),)),
        ext("ext-dead", "10.0.0.3", services=(web("web-d", 8082),), checks=(check("node-probe", "critical"),)),
        ext("N1", "10.9.9.9", services=(web("shadow", 9999),)),  # the agent n1 shadows it
        ext("gone", "10.0.0.4"),  # the agent left: the registration shows
        ext("bare", "10.0.0.5"),  # a node with no service
    ]).current


# ------------------------------------------------------------------ which nodes, and what each has


def test_catalog_nodes_merge_agents_and_registrations_by_name_and_an_agent_shadows_its_name() -> None:
    snapshot = standard()
    views = query.catalog_nodes(snapshot, DC)
    assert [(v.name, v.member is not None) for v in views] == [
        ("bare", False), ("ext-dead", False), ("ext-ok", False), ("ext-warn", False), ("gone", False),
        ("n1", True), ("s1", True),
    ]
    # the shadowed registration's address and service are nowhere
    assert query.find_node(snapshot, "N1", DC).address == "127.0.0.11"  # type: ignore[union-attr]
    assert all(i.node.member is not None for i in query.service_instances(snapshot, "web") if i.node.name == "n1")
    assert 9999 not in {i.service.port for i in query.service_instances(snapshot, "web")}


@pytest.mark.parametrize(
    ("name", "kind", "address", "checks", "services"),
    [
        ("ext-ok", "registered", "10.0.0.1", ["svc"], ["web-ext"]),
        ("EXT-OK", "registered", "10.0.0.1", ["svc"], ["web-ext"]),  # names ignore case
        ("ext-dead", "registered", "10.0.0.3", ["node-probe"], ["web-d"]),
        ("gone", "registered", "10.0.0.4", [], []),
        ("n1", "agent", "127.0.0.11", ["serfHealth", "service:web-n1"], ["web-n1"]),
        ("N1", "agent", "127.0.0.11", ["serfHealth", "service:web-n1"], ["web-n1"]),
        ("s1", "agent", "127.0.0.10", ["serfHealth"], ["consul"]),
        ("nobody", None, None, None, None),
    ],
)
def test_find_node_and_its_services_and_checks(name: str, kind: str | None, address: str | None,
                                               checks: list[str] | None, services: list[str] | None) -> None:
    snapshot = standard()
    view = query.find_node(snapshot, name, DC)
    if kind is None:
        assert view is None
        return
    assert view is not None
    assert ("agent" if view.member is not None else "registered", view.address) == (kind, address)
    assert [c.check.id for c in query.node_checks(snapshot, view)] == checks  # no serfHealth on external nodes
    assert [s.id for s, _, _ in query.node_services(snapshot, view)] == services


def test_registered_objects_keep_the_stores_indexes() -> None:
    view = query.find_node(standard(), "ext-ok", DC)
    assert view is not None and (view.create_index, view.modify_index) == (100, 101)
    [(_, create, modify)] = query.node_services(standard(), view)
    assert (create, modify) == (100, 102)
    [c] = query.node_checks(standard(), view)
    assert (c.node, c.create_index, c.modify_index) == ("ext-ok", 100, 103)


# ------------------------------------------------------------------ services, health and DNS's filter


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda s: [(i.node.name, i.service.id, i.status) for i in query.service_instances(s, "WEB")],
         [("ext-dead", "web-d", "critical"), ("ext-ok", "web-ext", "passing"), ("ext-warn", "web-w", "warning"),
          ("n1", "web-n1", "passing")]),
        (lambda s: [i.node.name for i in query.service_instances(s, "web", tags=["V2"])], ["ext-ok"]),
        (lambda s: [i.node.name for i in query.service_instances(s, "web", node_meta={"external-node": "true"})],
         ["ext-ok"]),
        (lambda s: [i.node.name for i in query.service_instances(s, "web", node_meta={"rack": "r1"})], ["n1"]),
        # DNS: any critical check hides an instance (a node-level one included); passing_only hides warnings
        (lambda s: [i.node.name for i in query.service_instances(s, "web") if query.dns_answerable(i, False)],
         ["ext-ok", "ext-warn", "n1"]),
        (lambda s: [i.node.name for i in query.service_instances(s, "web") if query.dns_answerable(i, True)],
         ["ext-ok", "n1"]),
        (lambda s: query.service_tags(s), {"consul": [], "web": ["v1", "v2"]}),
        (lambda s: query.service_tags(s, node_meta={"external-node": "true"}), {"web": ["v2"]}),
        (lambda s: [(c.node, c.check.id) for c in query.service_checks(s, "web")],
         [("ext-ok", "svc"), ("n1", "service:web-n1")]),  # service checks only
        (lambda s: [(c.node, c.check.id) for c in query.all_checks(s, state="critical")],
         [("ext-dead", "node-probe")]),
        (lambda s: [(c.node, c.check.id) for c in query.all_checks(s, state="warning")],
         [("ext-warn", "node-probe")]),
        (lambda s: [c.node for c in query.all_checks(s, node_meta={"external-node": "true"})], ["ext-ok"]),
    ],
)
def test_merged_service_and_health_reads(call: Any, expected: Any) -> None:
    assert call(standard()) == expected


def test_an_instance_carries_its_registered_nodes_checks_and_address() -> None:
    [instance] = [i for i in query.service_instances(standard(), "web") if i.node.name == "ext-warn"]
    assert [c.check.id for c in instance.checks] == ["node-probe"]  # the node-level check applies
    assert instance.address == "10.0.0.2"
    own = ext("own", "10.0.0.7", services=(web("w", 1, address="10.1.1.1"),))
    [instance] = query.service_instances(build([own], members=[]).current, "web")
    assert instance.address == "10.1.1.1"


def test_a_registration_shadowed_by_a_failed_agent_stays_hidden_and_one_of_a_left_agent_shows() -> None:
    members = [Member("a", "127.0.0.21", 8301, tags(), status=STATUS_FAILED),
               Member("b", "127.0.0.22", 8301, tags(), status=STATUS_LEFT),
               Member("other-dc", "127.0.0.23", 8301, {**tags(), "dc": "dc2"})]  # fmt: skip
    snapshot = build([ext("a", "10.0.1.1"), ext("b", "10.0.1.2"), ext("other-dc", "10.0.1.3")],
                     members=members, records={}).current  # fmt: skip
    views = {v.name: (v.address, v.member is not None) for v in query.catalog_nodes(snapshot, DC)}
    assert views == {"a": ("127.0.0.21", True), "b": ("10.0.1.2", False), "other-dc": ("10.0.1.3", False)}
    assert query.registered_nodes(snapshot, DC) == [snapshot.registered.nodes["b"],
                                                    snapshot.registered.nodes["other-dc"]]  # fmt: skip


def test_no_registered_copy_yet_is_the_agents_catalog() -> None:
    table = MemberTable()
    table.apply("member-join", Member("n1", "127.0.0.11", 8301, tags()))
    assert table.current.registered is None
    assert [v.name for v in query.catalog_nodes(table.current, DC)] == ["n1"]
    assert query.find_node(table.current, "ext", DC) is None


# ------------------------------------------------------------------ HTTP shapes


def test_a_registered_node_as_consul_shows_it() -> None:
    snapshot = standard()
    view = query.find_node(snapshot, "ext-ok", DC)
    assert view is not None
    assert node_view_json(view) == {
        "ID": "uuid-ext-ok", "Node": "ext-ok", "Address": "10.0.0.1", "Datacenter": DC,
        "TaggedAddresses": {"lan": "10.0.0.1"}, "Meta": {"external-node": "true"},
        "CreateIndex": 100, "ModifyIndex": 101,
    }  # fmt: skip
    [instance] = [i for i in query.service_instances(snapshot, "web") if i.node.name == "ext-ok"]
    flat = service_node_json(instance, DC)
    assert {k: flat[k] for k in ("ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta",
                                 "ServiceID", "ServicePort", "ServiceTags", "CreateIndex", "ModifyIndex")} == {
        "ID": "uuid-ext-ok", "Node": "ext-ok", "Address": "10.0.0.1", "Datacenter": DC,
        "TaggedAddresses": {"lan": "10.0.0.1"}, "NodeMeta": {"external-node": "true"}, "ServiceID": "web-ext",
        "ServicePort": 8080, "ServiceTags": ["v2"], "CreateIndex": 100, "ModifyIndex": 102,
    }  # fmt: skip
    # an agent node is unchanged: its meta includes the segment and version
    agent = query.find_node(snapshot, "n1", DC)
    assert agent is not None
    assert node_view_json(agent)["Meta"] == {"consul-network-segment": "", "consul-version": "1.20.1", "rack": "r1"}


# ------------------------------------------------------------------ DNS


SETTINGS = DnsSettings(node_name="s1", server=True)


def ask(name: str, rdtype: str, snapshot: Snapshot) -> dns.message.Message:
    response = answer(dns.message.make_query(name, rdtype), snapshot, SETTINGS, now=1_700_000_000,
                      rng=random.Random(3))  # fmt: skip
    assert response is not None
    return response


def values(response: dns.message.Message, rdtype: str) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype)
                  for rd in rrset)  # fmt: skip


@pytest.mark.parametrize(
    ("qname", "rdtype", "rcode", "expected"),
    [
        ("ext-ok.node.consul", "A", dns.rcode.NOERROR, ["10.0.0.1"]),
        ("EXT-DEAD.node.consul", "A", dns.rcode.NOERROR, ["10.0.0.3"]),  # a node answers whatever its health
        ("n1.node.consul", "A", dns.rcode.NOERROR, ["127.0.0.11"]),  # the agent, not the shadowed registration
        ("gone.node.dc1.consul", "A", dns.rcode.NOERROR, ["10.0.0.4"]),
        ("ext-ok.node.consul", "TXT", dns.rcode.NOERROR, ['"external-node=true"']),
        ("nobody.node.consul", "A", dns.rcode.NXDOMAIN, []),
        ("web.service.consul", "A", dns.rcode.NOERROR, ["10.0.0.1", "10.0.0.2", "127.0.0.11"]),
        ("v2.web.service.consul", "A", dns.rcode.NOERROR, ["10.0.0.1"]),
        ("1.0.0.10.in-addr.arpa", "PTR", dns.rcode.NOERROR, ["ext-ok.node.dc1.consul."]),
    ],
)
def test_dns_answers_registered_nodes_and_services(qname: str, rdtype: str, rcode: int,
                                                   expected: list[str]) -> None:
    response = ask(qname, rdtype, standard())
    assert response.rcode() == rcode
    assert values(response, rdtype) == expected


def test_dns_srv_of_a_registered_instance_targets_its_node() -> None:
    response = ask("_web._tcp.service.consul", "SRV", standard())
    srv = sorted(rd.to_text() for rrset in response.answer for rd in rrset)
    assert "1 1 8080 ext-ok.node.dc1.consul." in srv and not any(" 8082 " in s for s in srv)
    glue = {(rrset.name.to_text(), rd.to_text()) for rrset in response.additional for rd in rrset
            if rrset.rdtype == dns.rdatatype.A}  # fmt: skip
    assert ("ext-ok.node.dc1.consul.", "10.0.0.1") in glue


# ------------------------------------------------------------------ the snapshot's index and the wire form


def test_publishing_registrations_moves_the_index_once_and_only_on_a_change() -> None:
    table = build([ext("a", "10.0.0.1")])
    before = table.current.index
    table.set_registered(Registered.of(500, [ext("a", "10.0.0.1")]))  # the same answer again
    assert table.current.index == before
    table.set_registered(Registered.of(501, [ext("a", "10.0.0.9")]))
    assert table.current.index == before + 1
    assert query.find_node(table.current, "a", DC).address == "10.0.0.9"  # type: ignore[union-attr]
    # the gossip side moves the same counter: the merged read's index only grows, whichever source changes
    table.apply("member-join", Member("n9", "127.0.0.99", 8301, tags()))
    assert table.current.index == before + 2


def test_the_wire_form_round_trips_and_names_a_bad_field() -> None:
    nodes = [ext("ext-ok", "10.0.0.1", services=(web("w", 8080),), checks=(check("c", "warning", "w"),),
                 meta={"k": "v"}), ext("bare", "10.0.0.5")]  # fmt: skip
    assert registered_from_wire(7, registered_to_wire(nodes)) == Registered.of(7, nodes)
    wire = registered_to_wire(nodes)
    wire[0][9][0][0]["s"] = "sideways"
    with pytest.raises(RecordError, match="registered node ext-ok: check c: bad status 'sideways'"):
        registered_from_wire(7, wire)
    wire = registered_to_wire(nodes)
    wire[1][6] = -1
    with pytest.raises(RecordError, match=r"registered node bare.create_index: -1 is out of range"):
        registered_from_wire(7, wire)
    with pytest.raises(RecordError, match="registered node 0: expected 10 fields, got 2"):
        registered_from_wire(7, [["x", "y"]])
    with pytest.raises(RecordError, match="registered nodes: expected a list"):
        registered_from_wire(7, {"x": 1})


def test_the_mirrors_decoder_reuses_unchanged_nodes_and_forgets_nothing_on_a_bad_answer() -> None:
    decoder = WireDecoder()
    a, b = ext("a", "10.0.0.1", services=(web(),)), ext("b", "10.0.0.2")
    first = decoder.decode(5, registered_to_wire([a, b]))
    b2 = ext("b", "10.0.0.22", index=200)
    second = decoder.decode(6, registered_to_wire([a, b2]))
    assert second == Registered.of(6, [a, b2])
    assert second.nodes["a"] is first.nodes["a"]  # the unchanged row was not decoded again
    assert second.nodes["b"] is not first.nodes["b"]
    bad = registered_to_wire([a, b2])
    bad[1][1] = 7  # an address that is not a string
    with pytest.raises(RecordError, match=r"registered node b\.address: expected a string"):
        decoder.decode(7, bad)
    assert decoder.decode(8, registered_to_wire([a, b2])).nodes["b"] is second.nodes["b"]
