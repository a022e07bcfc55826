"""Service lookups (consul-compat §3.3) on the pure answer function and through the caching Responder.

Snapshots are built in-process: a MemberTable with Consul-tagged members and catalog records applied as the
replication runner applies them.  What real agents and dig show is in test_dns_services.py.
"""

from __future__ import annotations

import random
from collections import Counter

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from agent.catalog.indexed import apply_changes
from agent.catalog.record import CheckRecord, NodeCatalog, ServiceRecord
from agent.config import AgentConfig, ConfigError
from agent.dns.answer import answer, render
from agent.dns.cache import Responder
from agent.dns.settings import DnsSettings
from agent.members import Member, MemberTable, Snapshot

NOW = 1_700_000_000
BASE = DnsSettings(node_name="s1", server=True)


def tags(role: str = "node") -> dict[str, str]:
    return {"role": role, "dc": "dc1", "build": "1.20.1:abc", "id": "id", "port": "8300"}


def check(service_id: str, status: str) -> CheckRecord:
    return CheckRecord(id=f"service:{service_id}", name="c", status=status, service_id=service_id, service_name="web")


def build(records: dict[str, NodeCatalog], members: list[Member] | None = None) -> MemberTable:
    table = MemberTable()
    for m in members or [
        Member("s1", "127.0.0.10", 8301, tags("consul")),
        Member("n1", "127.0.0.11", 8301, tags()),
        Member("n2", "127.0.0.12", 8301, tags()),
        Member("n3", "127.0.0.13", 8301, tags()),
        Member("six", "fd00::6", 8301, tags()),
    ]:
        table.apply("member-join", m)
    table.apply_catalog(lambda catalog, index: apply_changes(catalog, dict(records), index))
    return table


def web(node: str, status: str = "passing", *, sid: str = "web-1", port: int = 8080,
        tags_: tuple[str, ...] = ("v1",), address: str = "", weights: tuple[int, int] = (1, 1),
        meta: dict[str, str] | None = None) -> NodeCatalog:  # fmt: skip
    service = ServiceRecord(id=sid, name="web", tags=tags_, port=port, address=address,
                            weights_passing=weights[0], weights_warning=weights[1])  # fmt: skip
    return NodeCatalog(node, 1, (service,), (check(sid, status),), meta or {})


def standard() -> Snapshot:
    return build({
        "n1": web("n1", tags_=("v1", "primary"), weights=(10, 2)),
        "n2": web("n2", "warning", tags_=("v2",), weights=(10, 2)),
        "n3": web("n3", "critical"),
        "six": web("six", port=9090),
    }).current


def ask(name: str, rdtype: str = "A", snapshot: Snapshot | None = None, s: DnsSettings = BASE,
        **kw: object) -> dns.message.Message:  # fmt: skip
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    response = answer(query, snapshot or standard(), s, now=NOW, rng=random.Random(7))
    assert response is not None
    return response


def rows(rrsets: list[dns.rrset.RRset]) -> list[tuple[str, str, int, str]]:
    return sorted((r.name.to_text(), dns.rdatatype.to_text(r.rdtype), r.ttl, rd.to_text()) for r in rrsets for rd in r)


def soa(response: dns.message.Message) -> str:
    (rrset,) = response.authority
    assert rrset.rdtype == dns.rdatatype.SOA
    return rrset[0].to_text()


# ---------------------------------------------------------------------------------------------- answers


def test_a_lists_the_healthy_instances_addresses_critical_left_out() -> None:
    r = ask("web.service.consul")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert rows(r.answer) == [("web.service.consul.", "A", 0, "127.0.0.11"),
                              ("web.service.consul.", "A", 0, "127.0.0.12")]
    assert r.additional == [] and r.authority == []


def test_aaaa_and_any() -> None:
    assert rows(ask("web.service.consul", "AAAA").answer) == [("web.service.consul.", "AAAA", 0, "fd00::6")]
    assert [row[3] for row in rows(ask("web.service.consul", "ANY").answer)] == ["127.0.0.11", "127.0.0.12", "fd00::6"]


def test_srv_targets_the_node_names_with_addresses_and_meta_in_additional() -> None:
    r = ask("web.service.consul", "SRV")
    assert rows(r.answer) == [
        ("web.service.consul.", "SRV", 0, "1 1 9090 six.node.dc1.consul."),
        ("web.service.consul.", "SRV", 0, "1 10 8080 n1.node.dc1.consul."),  # passing: Weights.Passing
        ("web.service.consul.", "SRV", 0, "1 2 8080 n2.node.dc1.consul."),  # warning: Weights.Warning
    ]
    extra = rows(r.additional)
    assert ("n1.node.dc1.consul.", "A", 0, "127.0.0.11") in extra
    assert ("six.node.dc1.consul.", "AAAA", 0, "fd00::6") in extra
    assert ("n1.node.dc1.consul.", "TXT", 0, '"consul-network-segment="') in extra
    assert ("n1.node.dc1.consul.", "TXT", 0, '"consul-version=1.20.1"') in extra
    no_meta = DnsSettings(node_name="s1", enable_additional_node_meta_txt=False)
    assert {row[1] for row in rows(ask("web.service.consul", "SRV", s=no_meta).additional)} == {"A", "AAAA"}


def test_service_address_wins_and_an_own_ip_targets_the_addr_name() -> None:
    snap = build({"n1": web("n1", address="10.1.2.3", meta={"rack": "r1"}), "n2": web("n2")}).current
    assert [row[3] for row in rows(ask("web.service.consul", snapshot=snap).answer)] == ["10.1.2.3", "127.0.0.12"]
    r = ask("web.service.consul", "SRV", snapshot=snap)
    assert [row[3] for row in rows(r.answer)] == ["1 1 8080 0a010203.addr.dc1.consul.", "1 1 8080 n2.node.dc1.consul."]
    extra = rows(r.additional)
    assert ("0a010203.addr.dc1.consul.", "A", 0, "10.1.2.3") in extra
    assert ("n1.node.dc1.consul.", "TXT", 0, '"rack=r1"') in extra  # Consul adds the node meta under the node name


def test_duplicate_addresses_collapse_and_srv_dedups_on_node_address_port() -> None:
    record = NodeCatalog("n1", 1, (ServiceRecord(id="a", name="web", port=80),
                                   ServiceRecord(id="b", name="web", port=80),
                                   ServiceRecord(id="c", name="web", port=81)))  # fmt: skip
    snap = build({"n1": record}).current
    assert len(ask("web.service.consul", snapshot=snap).answer[0]) == 1
    assert [row[3] for row in rows(ask("web.service.consul", "SRV", snapshot=snap).answer)] == [
        "1 1 80 n1.node.dc1.consul.", "1 1 81 n1.node.dc1.consul."]


@pytest.mark.parametrize("name", ["v1.web.service.consul", "_web._v1.service.consul", "V1.Web.Service.Consul",
                                  "v1.web.service.dc1.consul", "_web._v1.consul"])
def test_tag_filters_in_both_syntaxes(name: str) -> None:
    r = ask(name, "SRV")
    targets = sorted(row[3].split()[-1] for row in rows(r.answer))
    assert targets == ["n1.node.dc1.consul.", "six.node.dc1.consul."]


def test_tcp_means_no_tag_filter_udp_is_a_tag_and_dotted_tags_join() -> None:
    assert len(rows(ask("_web._tcp.service.consul", "SRV").answer)) == 3
    assert len(rows(ask("_web._tcp.consul", "SRV").answer)) == 3  # the service label is optional for SRV
    assert ask("_web._udp.service.consul", "SRV").rcode() == dns.rcode.NXDOMAIN  # Consul: "udp" is a tag
    snap = build({"n1": web("n1", tags_=("a.b",))}).current
    assert rows(ask("a.b.web.service.consul", snapshot=snap).answer)[0][3] == "127.0.0.11"


def test_warning_kept_unless_only_passing() -> None:
    s = DnsSettings.from_config(AgentConfig(node_name="s1", server=True, dns_config={"only_passing": True}))
    assert [row[3] for row in rows(ask("web.service.consul", s=s).answer)] == ["127.0.0.11"]


def test_failed_node_is_left_out() -> None:
    table = build({"n1": web("n1"), "n2": web("n2")})
    table.apply("member-failed", Member("n2", "127.0.0.12", 8301, tags(), status=4))
    assert [row[3] for row in rows(ask("web.service.consul", snapshot=table.current).answer)] == ["127.0.0.11"]


@pytest.mark.parametrize("name", ["nope.service.consul", "v9.web.service.consul", "web.service.dc2.consul",
                                  "service.consul", "_web._v9.service.consul"])
def test_unknown_service_tag_or_dc_is_nxdomain_with_soa(name: str) -> None:
    r = ask(name, "SRV")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.answer == [] and r.flags & dns.flags.AA
    assert soa(r).startswith("ns.consul. hostmaster.consul.")


def test_all_critical_is_nxdomain_and_no_record_of_the_type_is_nodata() -> None:
    snap = build({"n1": web("n1", "critical")}).current
    assert ask("web.service.consul", snapshot=snap).rcode() == dns.rcode.NXDOMAIN
    r = ask("web.service.consul", "AAAA", snapshot=build({"n1": web("n1")}).current)
    assert (r.rcode(), r.answer) == (dns.rcode.NOERROR, [])
    assert soa(r)
    assert ask("web.service.consul", "MX").rcode() == dns.rcode.NOERROR


def test_consul_service_lists_the_servers() -> None:
    r = ask("consul.service.consul", "SRV")
    assert [row[3] for row in rows(r.answer)] == ["1 1 8300 s1.node.dc1.consul."]
    assert ("s1.node.dc1.consul.", "A", 0, "127.0.0.10") in rows(r.additional)


def test_service_ttl_exact_prefix_and_wildcard() -> None:
    ttls = {"*": "5s", "we*": "7s", "web": "30s"}
    s = DnsSettings.from_config(AgentConfig(node_name="s1", server=True, dns_config={"service_ttl": ttls}))
    r = ask("web.service.consul", "SRV", s=s)
    assert {rr.ttl for rr in r.answer + r.additional} == {30}
    assert s.ttl_for_service("weave") == 7 and s.ttl_for_service("db") == 5
    assert DnsSettings().ttl_for_service("web") == 0
    with pytest.raises(ConfigError, match=r"service_ttl\.web"):
        DnsSettings.from_config(AgentConfig(dns_config={"service_ttl": {"web": "soon"}}))


def test_a_record_limit() -> None:
    s = DnsSettings.from_config(AgentConfig(node_name="s1", server=True, dns_config={"a_record_limit": 1}))
    assert len(rows(ask("web.service.consul", s=s).answer)) == 1


# ---------------------------------------------------------------------------------------------- shuffle and limits


def many(count: int) -> Snapshot:
    members = [Member("s1", "127.0.0.10", 8301, tags("consul"))]
    members += [Member(f"n{i}", f"10.0.{i // 250}.{i % 250 + 1}", 8301, tags()) for i in range(count)]
    return build({f"n{i}": web(f"n{i}") for i in range(count)}, members).current


def test_answers_are_shuffled_per_query() -> None:
    snap = many(5)
    query = dns.message.make_query("web.service.consul", "A")
    orders = Counter(tuple(rd.to_text() for rrset in answer(query, snap, BASE).answer  # type: ignore[union-attr]
                           for rd in rrset)
                     for _ in range(300))
    assert len(orders) > 60  # 120 orders possible
    firsts = Counter(order[0] for order in orders.elements())
    assert len(firsts) == 5 and min(firsts.values()) > 20


def wire_answers(query: dns.message.Message, response: dns.message.Message, *,
                 tcp: bool = False) -> dns.message.Message:
    return dns.message.from_wire(render(query, response, BASE, tcp=tcp))


def test_udp_without_edns_is_capped_at_three_answers_and_their_addresses() -> None:
    snap = many(20)
    query = dns.message.make_query("web.service.consul", "SRV")
    r = wire_answers(query, answer(query, snap, BASE))  # type: ignore[arg-type]
    assert len(rows(r.answer)) == 3 and not r.flags & dns.flags.TC
    targets = {row[3].split()[-1] for row in rows(r.answer)}
    assert {row[0] for row in rows(r.additional)} == targets
    assert {row[1] for row in rows(r.additional)} == {"A"}  # Consul keeps one extra per target when it trims
    a = dns.message.make_query("web.service.consul", "A")
    assert len(rows(wire_answers(a, answer(a, snap, BASE)).answer)) == 3  # type: ignore[arg-type]


def test_udp_with_edns_fills_the_buffer_and_tcp_takes_all() -> None:
    snap = many(100)
    query = dns.message.make_query("web.service.consul", "A", use_edns=0, payload=1232)
    wire = render(query, answer(query, snap, BASE), BASE, tcp=False)  # type: ignore[arg-type]
    assert 3 < len(rows(dns.message.from_wire(wire).answer)) < 100 and len(wire) <= 1232
    plain = dns.message.make_query("web.service.consul", "A")
    assert len(rows(wire_answers(plain, answer(plain, snap, BASE), tcp=True).answer)) == 100  # type: ignore[arg-type]


def test_enable_truncate_sets_tc() -> None:
    s = DnsSettings(node_name="s1", enable_truncate=True)
    query = dns.message.make_query("web.service.consul", "A")
    r = dns.message.from_wire(render(query, answer(query, many(5), s), s, tcp=False))  # type: ignore[arg-type]
    assert r.flags & dns.flags.TC and len(rows(r.answer)) == 3


# ---------------------------------------------------------------------------------------------- through the cache


class Table:
    def __init__(self, snapshot: Snapshot) -> None:
        self.current = snapshot


def via_responder(responder: Responder, query: dns.message.Message, *, tcp: bool = False) -> dns.message.Message:
    reply = responder.respond(query.to_wire(), tcp)
    assert isinstance(reply, bytes)
    return dns.message.from_wire(reply)


def test_cached_service_answers_are_reshuffled_on_every_hit() -> None:
    responder = Responder(Table(many(5)), BASE)
    query = dns.message.make_query("Web.Service.Consul", "A", use_edns=0, payload=1232)
    orders = Counter()
    for _ in range(300):
        r = via_responder(responder, query)
        assert r.id == query.id and r.question[0].name.to_text() == "Web.Service.Consul." and r.payload == 1232
        orders[tuple(rd.to_text() for rrset in r.answer for rd in rrset)] += 1
    assert len(orders) > 60 and all(len(order) == 5 for order in orders)
    stats = responder.statistics()
    assert (stats.misses, stats.hits) == (1, 299)


@pytest.mark.parametrize(("count", "edns", "tcp"), [(3, None, False), (20, None, False), (100, 1232, False),
                                                    (100, 4096, False), (300, None, True)])  # fmt: skip
def test_cached_replies_trim_like_render(count: int, edns: int | None, tcp: bool) -> None:
    snap = many(count)
    kw = {"use_edns": 0, "payload": edns} if edns else {}
    for rdtype in ("A", "SRV"):
        query = dns.message.make_query("web.service.consul", rdtype, **kw)  # type: ignore[arg-type]
        # one order for both (how many answers fit depends on which: the SRV targets' names differ in length)
        rendered = render(query, answer(query, snap, BASE, rng=random.Random(count)), BASE, tcp=tcp)
        expected = dns.message.from_wire(rendered)  # type: ignore[arg-type]
        got = via_responder(Responder(Table(snap), BASE, rng=random.Random(count)), query, tcp=tcp)
        limit = 65535 if tcp else max(512, edns or 0)
        assert len(got.to_wire()) <= limit
        n_got, n_expected = len(rows(got.answer)), len(rows(expected.answer))
        assert n_got == n_expected  # the same sizes: pieces are compressed as dnspython compresses
        assert rows(got.answer) == rows(expected.answer)  # the same answers, in the same order
        targets = {row[3].split()[-1] for row in rows(got.answer) if row[1] == "SRV"}
        assert {row[0] for row in rows(got.additional)} <= targets
        for row in rows(got.additional):
            assert row[1] in ("A", "TXT")


def test_srv_through_the_cache_carries_addresses_and_meta() -> None:
    responder = Responder(Table(standard()), BASE)
    r = via_responder(responder, dns.message.make_query("web.service.consul", "SRV", use_edns=0, payload=1232))
    assert len(rows(r.answer)) == 3
    extra = rows(r.additional)
    assert ("n2.node.dc1.consul.", "A", 0, "127.0.0.12") in extra
    assert ("n2.node.dc1.consul.", "TXT", 0, '"consul-network-segment="') in extra
