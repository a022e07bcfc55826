"""The pure DNS answer (agent/dns/answer.py) and its trimming, against consul-compat §3 row by row.

No sockets: queries are dnspython messages, snapshots come from a real MemberTable.  What dig sees over the wire
is in test_dns_dig.py; the servers and the cache in test_dns_server.py.
"""

from __future__ import annotations

import attrs
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.catalog.query import catalog_nodes
from agent.config import AgentConfig, ConfigError
from agent.dns.answer import answer, encode_rfc1464, render
from agent.dns.settings import DnsSettings, parse_recursor
from agent.members import Member, MemberTable, Snapshot

NOW = 1_700_000_000


def tags(role: str = "node", dc: str = "dc1", **extra: str) -> dict[str, str]:
    return {"role": role, "dc": dc, "build": "1.20.1:abc", "id": "id", **extra}


def table_of(*members: Member) -> MemberTable:
    table = MemberTable()
    for m in members:
        table.apply("member-join", m)
    return table


def cluster() -> Snapshot:
    return table_of(
        Member("hdp1", "127.0.0.11", 8301, tags("consul")),
        Member("hdp2", "127.0.0.12", 8301, tags()),
        Member("hdp3", "127.0.0.13", 8301, tags()),
        Member("six", "fd00::6", 8301, tags()),
    ).current


BASE = DnsSettings(node_name="hdp1", server=True)


def ask(name: str, rdtype: str = "A", snapshot: Snapshot | None = None, s: DnsSettings = BASE,
        **kw: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    response = answer(query, snapshot or cluster(), s, now=NOW)
    assert response is not None
    return response


def section(rrsets: list[dns.rrset.RRset]) -> list[tuple[str, str, int, str]]:
    return [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype), r.ttl, rd.to_text()) for r in rrsets for rd in r]


def soa_of(response: dns.message.Message) -> str:
    (rrset,) = response.authority
    assert rrset.rdtype == dns.rdatatype.SOA and rrset.name == dns.name.from_text("consul.")
    return rrset[0].to_text()


SOA_TEXT = f"ns.consul. hostmaster.consul. {NOW} 3600 600 86400 0"


# ---------------------------------------------------------------------------------------------- node lookups


def test_node_a_has_the_address_ttl_0_flags_qr_aa_rd_and_meta_txt_in_additional() -> None:
    r = ask("hdp3.node.consul")
    assert r.rcode() == dns.rcode.NOERROR
    wanted = dns.flags.QR | dns.flags.AA | dns.flags.RD
    assert r.flags & (wanted | dns.flags.RA) == wanted
    assert section(r.answer) == [("hdp3.node.consul.", "A", 0, "127.0.0.13")]
    assert section(r.additional) == [
        ("hdp3.node.consul.", "TXT", 0, '"consul-network-segment="'),
        ("hdp3.node.consul.", "TXT", 0, '"consul-version=1.20.1"'),
    ]
    assert r.authority == []


def test_rd_is_copied_not_set() -> None:
    query = dns.message.make_query("hdp3.node.consul", "A")
    query.flags &= ~dns.flags.RD
    r = answer(query, cluster(), BASE, now=NOW)
    assert r is not None and not r.flags & dns.flags.RD and r.flags & dns.flags.AA


@pytest.mark.parametrize("name", ["hdp3.node.dc1.consul", "HDP3.Node.DC1.Consul", "hdp3.node.dc1.dc.consul",
                                  "hDp3.NODE.consul."])
def test_dc_forms_and_any_letter_case(name: str) -> None:
    r = ask(name)
    assert r.rcode() == dns.rcode.NOERROR
    assert [rd.to_text() for rd in r.answer[0]] == ["127.0.0.13"]
    assert r.answer[0].name == dns.name.from_text(name)  # owner = the question


def test_node_ttl_from_dns_config() -> None:
    s = DnsSettings.from_config(AgentConfig(node_name="hdp1", server=True, dns_config={"node_ttl": "30s"}))
    r = ask("hdp3.node.consul", s=s)
    assert r.answer[0].ttl == 30 and r.additional[0].ttl == 30


@pytest.mark.parametrize("name", ["nobody.node.consul", "hdp3.node.dc2.consul", "hdp3.node.dc1.ap.x.consul",
                                  "hdp3.node.p.peer.consul", "consul", "hdp3.consul", "web.service.consul"])
def test_unknown_node_dc_or_name_is_nxdomain_with_the_soa(name: str) -> None:
    r = ask(name)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert r.flags & dns.flags.AA and r.answer == [] and r.additional == []
    assert soa_of(r) == SOA_TEXT


def test_known_node_other_type_is_nodata_with_the_soa() -> None:
    r = ask("hdp3.node.consul", "MX")
    assert (r.rcode(), r.answer, r.additional) == (dns.rcode.NOERROR, [], [])
    assert soa_of(r) == SOA_TEXT


def test_family_mismatch_is_nodata() -> None:
    assert ask("hdp3.node.consul", "AAAA").answer == []
    r = ask("six.node.consul", "A")
    assert (r.rcode(), r.answer) == (dns.rcode.NOERROR, [])
    assert soa_of(r) == SOA_TEXT


def test_ipv6_node_aaaa() -> None:
    r = ask("six.node.consul", "AAAA")
    assert section(r.answer) == [("six.node.consul.", "AAAA", 0, "fd00::6")]


def test_txt_and_any_put_the_meta_in_the_answer() -> None:
    txt = ask("hdp3.node.consul", "TXT")
    assert [t for _, t, _, _ in section(txt.answer)] == ["TXT", "TXT"] and txt.additional == []
    any_ = ask("hdp3.node.consul", "ANY")
    assert [(t, v) for _, t, _, v in section(any_.answer)] == [
        ("A", "127.0.0.13"), ("TXT", '"consul-network-segment="'), ("TXT", '"consul-version=1.20.1"')]
    assert any_.additional == []


def test_additional_meta_can_be_switched_off() -> None:
    s = attrs.evolve(BASE, enable_additional_node_meta_txt=False)
    r = ask("hdp3.node.consul", s=s)
    assert len(r.answer) == 1 and r.additional == []


def test_local_node_meta_and_rfc1464_escaping() -> None:
    s = attrs.evolve(BASE, node_meta={"rack": "r1", "a=b": "c`d", " sp ": "x", "rfc1035-raw": "just value"})
    texts = [v for _, _, _, v in section(ask("hdp1.node.consul", "TXT", s=s).answer)]
    assert '"rack=r1"' in texts and '"just value"' in texts
    assert '"a`=b=c``d"' in texts and '"` sp` =x"' in texts
    # Only the local node carries node_meta (other nodes' meta doesn't travel by gossip).
    assert '"rack=r1"' not in [v for _, _, _, v in section(ask("hdp2.node.consul", "TXT", s=s).answer)]


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("key", "value", "key=value"), ("k=ey", "v", "k`=ey=v"), ("  k ", "v", "` ` k` =v"), ("k`", "v`", "k``=v``"),
    ("k", "a=b", "k=a=b"),
])
def test_encode_rfc1464(key: str, value: str, expected: str) -> None:
    assert encode_rfc1464(key, value) == expected


# ---------------------------------------------------------------------------------------------- who is in the catalog


def test_left_reaped_and_foreign_members_are_nxdomain_failed_and_leaving_are_answered() -> None:
    table = table_of(
        Member("alive", "127.0.1.1", 8301, tags()),
        Member("leaving", "127.0.1.2", 8301, tags(), status=2),
        Member("left", "127.0.1.3", 8301, tags(), status=3),
        Member("failed", "127.0.1.4", 8301, tags(), status=4),
        Member("norole", "127.0.1.5", 8301, {"dc": "dc1"}),
        Member("otherdc", "127.0.1.6", 8301, tags(dc="dc2")),
        Member("server", "127.0.1.7", 8301, tags("consul")),
    )
    table.apply("member-reap", Member("failed2", "127.0.1.8", 8301, tags()))
    rcodes = {n: ask(f"{n}.node.consul", snapshot=table.current).rcode()
              for n in ("alive", "leaving", "left", "failed", "norole", "otherdc", "server")}
    assert rcodes == {"alive": 0, "leaving": 0, "left": 3, "failed": 0, "norole": 3, "otherdc": 3, "server": 0}


member_strategy = st.builds(
    Member,
    name=st.sampled_from(["a", "b", "C", "d.e", "x-y"]),
    addr=st.sampled_from(["127.0.0.1", "127.0.0.2", "fd00::1"]),
    port=st.just(8301),
    tags=st.builds(tags, role=st.sampled_from(["node", "consul", "other"]), dc=st.sampled_from(["dc1", "dc2"])),
    status=st.sampled_from([1, 2, 3, 4]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(member_strategy, max_size=6))
def test_dns_answers_exactly_the_nodes_the_http_catalog_lists(members: list[Member]) -> None:
    table = table_of(*members)
    snapshot = table.current
    listed = {n.name.lower() for n in catalog_nodes(snapshot, "dc1")}
    for name in {m.name for m in members}:
        r = ask(f"{name}.node.consul", "ANY", snapshot=snapshot)
        assert (r.rcode() == dns.rcode.NOERROR) == (name.lower() in listed), name


def test_client_agent_without_servers_is_servfail_and_stale_reads_off_need_a_leader() -> None:
    lonely = table_of(Member("c1", "127.0.0.21", 8301, tags())).current
    client = attrs.evolve(BASE, server=False, node_name="c1")
    assert ask("c1.node.consul", snapshot=lonely, s=client).rcode() == dns.rcode.SERVFAIL
    assert ask("hdp3.node.consul", s=client).rcode() == dns.rcode.NOERROR  # hdp1 is a server
    strict = attrs.evolve(BASE, allow_stale=False)
    assert ask("hdp3.node.consul", s=strict).rcode() == dns.rcode.SERVFAIL  # no leader in this snapshot


# ---------------------------------------------------------------------------------------------- SOA, NS, PTR, addr


def test_soa_answer_ns_authority_glue_additional() -> None:
    r = ask("consul", "SOA")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert section(r.answer) == [("consul.", "SOA", 0, SOA_TEXT)]
    assert section(r.authority) == [("consul.", "NS", 0, "hdp1.node.dc1.consul.")]
    assert section(r.additional) == [("hdp1.node.dc1.consul.", "A", 0, "127.0.0.11")]
    assert section(ask("hdp3.node.consul", "SOA").answer) == section(r.answer)  # any name in the domain


def test_soa_timers_from_config() -> None:
    s = DnsSettings.from_config(AgentConfig(node_name="hdp1", server=True,
                                            dns_config={"soa": {"refresh": 1, "retry": 2, "expire": 3, "min_ttl": 4}}))
    (rrset,) = ask("consul", "SOA", s=s).answer
    assert rrset.ttl == 4 and rrset[0].to_text() == f"ns.consul. hostmaster.consul. {NOW} 1 2 3 4"


def test_ns_answers_up_to_three_servers_owned_by_the_domain() -> None:
    table = table_of(*(Member(f"s{i}", f"127.0.2.{i}", 8301, tags("consul")) for i in range(1, 6)),
                     Member("down", "127.0.2.9", 8301, tags("consul"), status=4))
    r = ask("hdp3.node.consul", "NS", snapshot=table.current)
    assert section(r.answer) == [("consul.", "NS", 0, f"s{i}.node.dc1.consul.") for i in (1, 2, 3)]
    assert [v for _, _, _, v in section(r.additional)] == ["127.0.2.1", "127.0.2.2", "127.0.2.3"]


def test_ptr_names_the_node_v4_and_v6() -> None:
    r = ask("13.0.0.127.in-addr.arpa", "PTR")
    assert r.flags & dns.flags.AA
    assert section(r.answer) == [("13.0.0.127.in-addr.arpa.", "PTR", 0, "hdp3.node.dc1.consul.")]
    six = dns.reversename.from_address("fd00::6").to_text()
    assert section(ask(six, "PTR").answer) == [(six, "PTR", 0, "six.node.dc1.consul.")]


def test_ptr_unknown_is_nxdomain_without_recursors_and_forwarded_with() -> None:
    r = ask("99.0.0.127.in-addr.arpa", "PTR")
    assert r.rcode() == dns.rcode.NXDOMAIN and soa_of(r) == SOA_TEXT
    query = dns.message.make_query("99.0.0.127.in-addr.arpa", "PTR")
    assert answer(query, cluster(), attrs.evolve(BASE, recursors=(("127.0.0.1", 53),))) is None


def test_addr_lookup() -> None:
    assert section(ask("7f00000b.addr.consul").answer) == [("7f00000b.addr.consul.", "A", 0, "127.0.0.11")]
    six = "fd000000000000000000000000000006"
    assert [v for *_, v in section(ask(f"{six}.addr.dc1.consul", "AAAA").answer)] == ["fd00::6"]
    assert ask("zz.addr.consul").rcode() == dns.rcode.NXDOMAIN


# ---------------------------------------------------------------------------------------------- outside, odd queries


def test_outside_the_domain_refused_without_recursors_forwarded_with() -> None:
    r = ask("example.com")
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & (dns.flags.AA | dns.flags.RA)
    query = dns.message.make_query("example.com", "A")
    with_recursors = attrs.evolve(BASE, recursors=(("127.0.0.1", 53),))
    assert answer(query, cluster(), with_recursors) is None
    inside = answer(dns.message.make_query("hdp3.node.consul", "A"), cluster(), with_recursors)
    assert inside is not None and inside.flags & dns.flags.RA and inside.flags & dns.flags.AA


def test_odd_queries_get_the_right_rcode() -> None:
    notify = dns.message.make_query("consul", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert answer(notify, cluster(), BASE).rcode() == dns.rcode.NOTIMP  # type: ignore[union-attr]
    two = dns.message.make_query("hdp3.node.consul", "A")
    two.question.append(dns.rrset.RRset(dns.name.from_text("hdp2.node.consul"), dns.rdataclass.IN, dns.rdatatype.A))
    assert answer(two, cluster(), BASE).rcode() == dns.rcode.FORMERR  # type: ignore[union-attr]
    none = dns.message.Message()
    assert answer(none, cluster(), BASE).rcode() == dns.rcode.FORMERR  # type: ignore[union-attr]
    chaos = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    assert answer(chaos, cluster(), BASE).rcode() == dns.rcode.REFUSED  # type: ignore[union-attr]
    assert ask("consul", "AXFR").rcode() == dns.rcode.NOTIMP
    v1 = dns.message.make_query("hdp3.node.consul", "A", use_edns=1)
    r = answer(v1, cluster(), BASE)
    assert r is not None and r.rcode() == dns.rcode.BADVERS
    wire = render(v1, r, BASE, tcp=False)
    assert dns.message.from_wire(wire).rcode() == dns.rcode.BADVERS


# ---------------------------------------------------------------------------------------------- size limits


def meta_node(count: int, value: str = "v") -> tuple[Snapshot, DnsSettings]:
    snapshot = table_of(Member("big", "127.0.3.1", 8301, tags("consul"))).current
    return snapshot, attrs.evolve(BASE, node_name="big", node_meta={f"a{i:03d}": value for i in range(count)})


def wire_answer(name: str, rdtype: str, snapshot: Snapshot, s: DnsSettings, *, tcp: bool = False,
                **kw: object) -> tuple[dns.message.Message, int]:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    response = answer(query, snapshot, s, now=NOW)
    assert response is not None
    wire = render(query, response, s, tcp=tcp)
    return dns.message.from_wire(wire), len(wire)


def test_udp_without_edns_is_cut_to_udp_answer_limit_without_tc() -> None:
    snapshot, s = meta_node(20)
    msg, size = wire_answer("big.node.consul", "TXT", snapshot, s)
    assert sum(len(r) for r in msg.answer) == 3 and size <= 512
    assert not msg.flags & dns.flags.TC and msg.edns < 0


def test_enable_truncate_sets_tc_and_the_limit_is_configurable() -> None:
    snapshot, s = meta_node(20)
    s = attrs.evolve(s, enable_truncate=True, udp_answer_limit=5)
    msg, _ = wire_answer("big.node.consul", "TXT", snapshot, s)
    assert sum(len(r) for r in msg.answer) == 5 and msg.flags & dns.flags.TC
    full, _ = wire_answer("big.node.consul", "TXT", snapshot, s, tcp=True)
    assert sum(len(r) for r in full.answer) == 22 and not full.flags & dns.flags.TC


def test_udp_answer_limit_is_capped_at_8() -> None:
    snapshot, s = meta_node(20)
    msg, _ = wire_answer("big.node.consul", "TXT", snapshot, attrs.evolve(s, udp_answer_limit=50))
    assert sum(len(r) for r in msg.answer) == 8


def test_512_bytes_cut_further_when_records_are_big() -> None:
    snapshot, s = meta_node(10, "x" * 150)
    s = attrs.evolve(s, enable_truncate=True)
    msg, size = wire_answer("big.node.consul", "TXT", snapshot, s)
    assert size <= 512 and 1 <= sum(len(r) for r in msg.answer) < 3 and msg.flags & dns.flags.TC


def test_edns_has_no_answer_cap_honours_the_buffer_and_echoes_opt() -> None:
    snapshot, s = meta_node(20)
    msg, _ = wire_answer("big.node.consul", "TXT", snapshot, s, use_edns=0, payload=4096)
    assert sum(len(r) for r in msg.answer) == 22 and msg.edns == 0 and msg.payload == 4096
    big, small_s = meta_node(40, "y" * 60)
    msg, size = wire_answer("big.node.consul", "TXT", big, attrs.evolve(small_s, enable_truncate=True),
                            use_edns=0, payload=1232)
    assert size <= 1232 and 3 < sum(len(r) for r in msg.answer) < 42 and msg.flags & dns.flags.TC
    assert msg.payload == 1232


def test_edns_small_buffer_behaves_as_no_edns_but_still_echoes_opt() -> None:
    snapshot, s = meta_node(20)
    msg, _ = wire_answer("big.node.consul", "TXT", snapshot, s, use_edns=0, payload=512)
    assert sum(len(r) for r in msg.answer) == 3 and msg.edns == 0 and msg.payload == 512


def test_ecs_option_is_echoed_with_scope_0() -> None:
    ecs = dns.edns.ECSOption("192.0.2.0", 24)
    msg, _ = wire_answer("hdp3.node.consul", "A", cluster(), BASE, use_edns=0, options=[ecs])
    (option,) = msg.options
    assert isinstance(option, dns.edns.ECSOption) and option.srclen == 24 and option.scopelen == 0


def test_an_a_query_with_a_huge_additional_section_still_fits_512() -> None:
    snapshot, s = meta_node(30, "z" * 100)
    msg, size = wire_answer("big.node.consul", "A", snapshot, s)
    assert size <= 512 and section(msg.answer) == [("big.node.consul.", "A", 0, "127.0.3.1")]


# ---------------------------------------------------------------------------------------------- settings


def test_settings_defaults_and_parsing() -> None:
    s = DnsSettings.from_config(AgentConfig(domain="Example.", recursors=("1.1.1.1", "[::1]:5353", "9.9.9.9:54")))
    assert s.domain == dns.name.from_text("example.") and s.node_ttl == 0 and s.udp_answer_limit == 3
    assert s.enable_additional_node_meta_txt and s.allow_stale and not s.enable_truncate
    assert s.recursors == (("1.1.1.1", 53), ("::1", 5353), ("9.9.9.9", 54)) and s.recursor_timeout == 2.0
    assert parse_recursor("fd00::1") == ("fd00::1", 53)


@pytest.mark.parametrize(("dns_config", "message"), [
    ({"node_ttl": "soon"}, "dns_config.node_ttl"),
    ({"udp_answer_limit": -1}, "dns_config.udp_answer_limit"),
    ({"enable_truncate": "yes"}, "dns_config.enable_truncate"),
    ({"recursor_strategy": "fastest"}, "dns_config.recursor_strategy"),
    ({"soa": {"retry": "x"}}, "dns_config.soa.retry"),
])
def test_bad_dns_config_names_the_key(dns_config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DnsSettings.from_config(AgentConfig(dns_config=dns_config))
