"""The DNS answer as a pure function: a parsed query and a member snapshot in, a response message out.

No sockets, no I/O: the servers (server.py) and the per-snapshot cache (cache.py) wrap it, and tests call it
directly.  Two steps, as Consul's handler has them (consul-compat §3):

- ``answer(query, snapshot, settings)`` decides *what* to say: RCODE, flags and the records (or ``None``: the name
  is not ours and recursors are configured, so the caller forwards the query);
- ``render(query, response, settings, tcp=...)`` decides *how much* fits: Consul's trimming rules for UDP (3 answers
  and 512 bytes without EDNS0, the client's buffer with it) and TCP (64 KiB), the TC bit when ``enable_truncate``,
  the OPT record echoing the client's size.  Wire bytes out.

Which nodes exist is the catalog's rule, shared with the HTTP API (``agent.catalog.query``): alive, leaving and
failed Consul nodes of our datacenter (left and reaped members are gone), and the nodes registered through
``/v1/catalog/register`` that no agent node shadows.  So DNS and HTTP agree on every snapshot.
Service lookups (``services.py``) read the same catalog through ``agent.catalog.query``; ``prepare`` returns their
record set unordered so that the cache can shuffle it per query (``shuffled.py``), ``answer`` orders it at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import re
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from agent.catalog import query as catalog_query
from agent.dns.services import ServiceAnswer, parse_service
from agent.dns.services import lookup as lookup_service
from agent.dns.settings import DnsSettings
from agent.dns.trim import trim
from agent.dns.txt import encode_rfc1464, meta_txt
from agent.snapshot_memo import SnapshotMemo

if TYPE_CHECKING:
    from agent.acl.authorizer import Authorizer as Reader
    from agent.catalog.query import NodeView
    from agent.members import Member, Snapshot

__all__ = ["CatalogView", "answer", "catalog_view", "encode_rfc1464", "prepare", "render"]

IN = dns.rdataclass.IN
ANY_CLASS = dns.rdataclass.ANY
T_A, T_AAAA, T_ANY, T_TXT = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY, dns.rdatatype.TXT
T_SOA, T_NS, T_PTR, T_SRV = dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.PTR, dns.rdatatype.SRV
NODE_TYPES = frozenset({T_A, T_AAAA, T_ANY, T_TXT})
ZONE_TRANSFERS = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
ARPA = dns.name.from_text("arpa.")
# Labels that end the name part of a query, read right to left (Consul's dispatch).
KINDS = frozenset({"service", "connect", "virtual", "ingress", "node", "query", "addr"})
INVALID_DNS_LABEL = re.compile(r"[^A-Za-z0-9\-]+")



# ---------------------------------------------------------------------------------------------- the catalog view


@attrs.frozen
class CatalogView:
    """One snapshot indexed for DNS: catalog nodes (agents' and registered ones) by lower-cased name and by
    reverse name, the alive servers.

    Built once per snapshot (a dict per index, not a scan per query): a cache miss for a random name must not
    cost O(members).
    """

    by_name: Mapping[str, NodeView]
    by_reverse: Mapping[dns.name.Name, NodeView]
    servers: tuple[Member, ...]


#: The view of the last snapshot (the responder asks about the same snapshot in bursts).
_VIEWS = SnapshotMemo(max_sources=1)


def catalog_view(snapshot: Snapshot, datacenter: str) -> CatalogView:
    """The view of ``snapshot``, built once per snapshot and datacenter."""
    return _VIEWS.get((snapshot,), datacenter, lambda: _build_view(snapshot, datacenter))


def _build_view(snapshot: Snapshot, datacenter: str) -> CatalogView:
    nodes = catalog_query.catalog_nodes(snapshot, datacenter)  # the HTTP catalog's rule and order
    by_name: dict[str, NodeView] = {}
    by_reverse: dict[dns.name.Name, NodeView] = {}
    for node in nodes:
        by_name.setdefault(node.name.lower(), node)
        with contextlib.suppress(ValueError, dns.exception.DNSException):
            by_reverse.setdefault(dns.reversename.from_address(node.address), node)
    members = [n.member for n in nodes if n.member is not None]
    return CatalogView(by_name, by_reverse, tuple(catalog_query.known_servers(members, datacenter)))


# ---------------------------------------------------------------------------------------------- answer


def answer(
    query: dns.message.Message,
    snapshot: Snapshot,
    settings: DnsSettings,
    *,
    now: float | None = None,
    rng: random.Random | None = None,
    acl: Reader | None = None,
) -> dns.message.Message | None:
    """The response to ``query`` from ``snapshot``; None when it should go to the recursors instead.

    ``now`` (Unix time) is the SOA serial; tests pin it.  Service answers come in a fresh random order from ``rng``
    (Consul shuffles every query).  Trimming and EDNS are ``render``'s business.
    """
    result = prepare(query, snapshot, settings, now=now, acl=acl)
    if isinstance(result, ServiceAnswer):
        return result.materialize(result.order(rng))
    return result


def prepare(
    query: dns.message.Message, snapshot: Snapshot, settings: DnsSettings, *, now: float | None = None,
    acl: Reader | None = None,
) -> dns.message.Message | ServiceAnswer | None:
    """``answer`` before the shuffle: a positive service answer stays a record set, so that the cache can keep it
    per snapshot and only reorder it per query.  ``acl`` is the DNS token's view (None: ACLs off): a node or a
    service it may not read is not there (NXDOMAIN), as Consul's filtered catalog reads leave it."""
    response = _skeleton(query, settings)
    if query.opcode() != dns.opcode.QUERY:
        return _rcode(response, dns.rcode.NOTIMP)
    if len(query.question) != 1:
        return _rcode(response, dns.rcode.FORMERR)
    if query.edns > 0:
        return _rcode(response, dns.rcode.BADVERS)
    question = query.question[0]
    if question.rdclass not in (IN, ANY_CLASS):
        return _rcode(response, dns.rcode.REFUSED)
    serial = int(time.time() if now is None else now) & 0xFFFFFFFF
    ctx = _Ctx(response, question.name, question.rdtype, snapshot, settings, serial, acl)
    if question.name.is_subdomain(settings.domain):
        response.flags |= dns.flags.AA
        _in_domain(ctx)
        return ctx.service or response
    if question.name.is_subdomain(ARPA):
        return _reverse(ctx)
    if settings.recursors:
        return None
    return _rcode(response, dns.rcode.REFUSED)


def _skeleton(query: dns.message.Message, settings: DnsSettings) -> dns.message.Message:
    """Consul's SetReply: QR, the opcode, RD and CD copied; RA only when recursors are configured."""
    response = dns.message.Message(id=query.id)
    response.flags = dns.flags.QR | (query.flags & (dns.flags.RD | dns.flags.CD))
    if settings.recursors:
        response.flags |= dns.flags.RA
    response.set_opcode(query.opcode())
    if len(query.question) == 1:
        response.question = list(query.question)
    return response


def _rcode(response: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
    if rcode > 15:
        response.use_edns(0)  # the upper bits of an extended RCODE live in the OPT record
    response.set_rcode(rcode)
    return response


@attrs.define
class _Ctx:
    response: dns.message.Message
    qname: dns.name.Name
    qtype: int
    snapshot: Snapshot
    settings: DnsSettings
    serial: int
    acl: Reader | None = None  # the DNS token's view; None: ACLs off
    service: ServiceAnswer | None = None  # a positive service lookup, still to be ordered

    def readable(self, resource: str, name: str) -> bool:
        return self.acl is None or self.acl.allowed(resource, name, "read")

    @property
    def view(self) -> CatalogView:
        return catalog_view(self.snapshot, self.settings.datacenter)

    def soa(self) -> dns.rrset.RRset:
        s = self.settings
        domain = s.domain
        rdata = SOA(IN, T_SOA, dns.name.Name(("ns", *domain.labels)), dns.name.Name(("hostmaster", *domain.labels)),
                    self.serial, s.soa.refresh, s.soa.retry, s.soa.expire, s.soa.min_ttl)
        return dns.rrset.from_rdata(domain, s.soa.min_ttl, rdata)

    def negative(self, rcode: dns.rcode.Rcode) -> None:
        """NXDOMAIN or NODATA (NOERROR): nothing answered, the SOA in the authority section."""
        response = self.response
        response.answer = []
        response.additional = []
        response.authority = [self.soa()]
        response.set_rcode(rcode)

    def catalog_unavailable(self) -> bool:
        """Consul's read errors map to SERVFAIL: a client with no known server, or no leader when stale reads are
        off (``allow_stale=false``)."""
        s = self.settings
        if not s.server and not self.view.servers:
            return True
        return not s.allow_stale and not self.snapshot.leader


def _in_domain(ctx: _Ctx) -> None:
    qtype = ctx.qtype
    if qtype == T_SOA:
        ns, glue = _nameservers(ctx)
        ctx.response.answer = [ctx.soa()]
        ctx.response.authority = ns
        ctx.response.additional = glue
        return
    if qtype == T_NS:
        ns, glue = _nameservers(ctx)
        if not ns:
            ctx.negative(dns.rcode.NOERROR)
            return
        # Consul answers NS for any name in the domain with the domain's own NS set.
        ctx.response.answer = ns
        ctx.response.additional = glue
        return
    if qtype in ZONE_TRANSFERS:
        ctx.response.set_rcode(dns.rcode.NOTIMP)
        return
    labels = [label.decode("utf-8", "replace").lower() for label in ctx.qname.relativize(ctx.settings.domain).labels]
    kind, parts, suffixes = _split(labels, qtype)
    if kind == "node" and parts:
        _node(ctx, ".".join(parts), suffixes)
    elif kind == "addr" and len(parts) == 1:
        _addr(ctx, parts[0])
    elif kind == "service":
        _service(ctx, parts, suffixes)
    else:
        # Prepared-query and mesh lookups have nothing behind them in this catalog, and anything without a
        # keyword is an invalid name: both are NXDOMAIN in Consul.
        ctx.negative(dns.rcode.NXDOMAIN)


def _split(labels: list[str], qtype: int) -> tuple[str, list[str], list[str]]:
    """Consul's dispatch: the rightmost keyword label splits the name into parts (left) and suffixes (right)."""
    for i in range(len(labels) - 1, -1, -1):
        label = labels[i]
        if label in KINDS:
            return label, labels[:i], labels[i + 1:]
        if qtype == T_SRV and label.startswith("_"):
            return "service", labels[: i + 1], labels[i + 1:]
    return "", [], []


def _datacenter(suffixes: list[str], default: str) -> str | None:
    """Consul's parseLocality for nodes: ``[dc]``, ``[dc.dc]`` or ``[peer.peer]``; None for an invalid locality.

    A peer is returned as ``"peer:<name>"``: there are no peerings here, so it never matches our datacenter.
    """
    if not suffixes:
        return default
    if len(suffixes) == 1:
        return suffixes[0]
    if len(suffixes) == 2:
        if suffixes[1] == "dc":
            return suffixes[0]
        if suffixes[1] == "peer":
            return "peer:" + suffixes[0]
    return None


def _node(ctx: _Ctx, name: str, suffixes: list[str]) -> None:
    dc = _datacenter(suffixes, ctx.settings.datacenter)
    if dc != ctx.settings.datacenter:
        # Invalid locality, an unknown datacenter ("No path to datacenter") or a peer: all NXDOMAIN.
        ctx.negative(dns.rcode.NXDOMAIN)
        return
    if ctx.catalog_unavailable():
        ctx.response.set_rcode(dns.rcode.SERVFAIL)
        return
    node = ctx.view.by_name.get(name)
    if node is None or not ctx.readable("node", node.name):
        ctx.negative(dns.rcode.NXDOMAIN)
        return
    qtype = ctx.qtype
    if qtype not in NODE_TYPES:
        ctx.negative(dns.rcode.NOERROR)
        return
    settings = ctx.settings
    response = ctx.response
    if qtype != T_TXT:
        record = _address(ctx.qname, node.address, settings.node_ttl, qtype)
        if record is not None:
            response.answer.append(record)
    if qtype in (T_TXT, T_ANY):
        response.answer.extend(_meta_txt(ctx.qname, node, settings))
    elif settings.enable_additional_node_meta_txt and response.answer:
        response.additional.extend(_meta_txt(ctx.qname, node, settings))
    if not response.answer:
        ctx.negative(dns.rcode.NOERROR)  # e.g. AAAA for an IPv4-only node


def _service(ctx: _Ctx, parts: list[str], suffixes: list[str]) -> None:
    """``[tag.]name.service[.dc]`` and ``_name._tag.service[.dc]``: no healthy instance is NXDOMAIN, instances
    without a record of the qtype NODATA; otherwise the record set goes to ``ctx.service``."""
    parsed = parse_service(parts)
    dc = _datacenter(suffixes, ctx.settings.datacenter)
    if parsed is None or dc != ctx.settings.datacenter:
        ctx.negative(dns.rcode.NXDOMAIN)
        return
    if ctx.catalog_unavailable():
        ctx.response.set_rcode(dns.rcode.SERVFAIL)
        return
    name, tag = parsed
    if not ctx.readable("service", name):
        ctx.negative(dns.rcode.NXDOMAIN)
        return
    node_ok = None if ctx.acl is None else (lambda node: ctx.readable("node", node))
    found = lookup_service(ctx.response, ctx.qname, ctx.qtype, ctx.snapshot, ctx.settings, name, tag, node_ok)
    if isinstance(found, ServiceAnswer):
        ctx.service = found
    else:
        ctx.negative(dns.rcode.NOERROR if found else dns.rcode.NXDOMAIN)


def _addr(ctx: _Ctx, text: str) -> None:
    """``<hex-ip>.addr[.dc].<domain>``: 8 hex digits are an IPv4 address, 32 an IPv6 one (Consul ignores the DC)."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) not in (4, 16) or len(text) != 2 * len(raw):
        ctx.negative(dns.rcode.NXDOMAIN)
        return
    address = str(ipaddress.ip_address(raw))
    record = _address(ctx.qname, address, ctx.settings.node_ttl, ctx.qtype)
    if record is None:
        ctx.negative(dns.rcode.NOERROR)
        return
    ctx.response.answer.append(record)


def _address(owner: dns.name.Name, addr: str, ttl: int, qtype: int) -> dns.rrset.RRset | None:
    """The A or AAAA record for ``addr`` when ``qtype`` asks for that family (ANY asks for both)."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None  # gossip addresses are always IPs; Consul would CNAME a hostname
    if ip.version == 4 and qtype in (T_A, T_ANY):
        return dns.rrset.from_rdata(owner, ttl, A(IN, T_A, str(ip)))
    if ip.version == 6 and qtype in (T_AAAA, T_ANY):
        return dns.rrset.from_rdata(owner, ttl, AAAA(IN, T_AAAA, str(ip)))
    return None


def _meta_txt(owner: dns.name.Name, node: NodeView, settings: DnsSettings) -> list[dns.rrset.RRset]:
    """One TXT record per node-meta pair; ``rfc1035-`` keys give the bare value.  Same TTL as the node.  This
    agent's node shows its configured meta; others their published (agents) or registered meta."""
    member = node.member
    if member is not None and member.name == settings.node_name:
        meta = catalog_query.agent_node_meta(member, settings.node_meta)
    else:
        meta = {k: node.meta[k] for k in sorted(node.meta)}
    rdatas = meta_txt(meta)
    if not rdatas:
        return []
    return [dns.rrset.from_rdata_list(owner, settings.node_ttl, rdatas)]


def _node_fqdn(node: NodeView, settings: DnsSettings) -> dns.name.Name | None:
    try:
        return dns.name.from_text(f"{node.name}.node.{settings.datacenter}", origin=settings.domain)
    except dns.exception.DNSException:
        return None


def _nameservers(ctx: _Ctx) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]:
    """Up to three alive servers as NS records of the domain, with their addresses as glue.

    Consul picks three at random per query; answers here are cached per snapshot, so take the first three by name
    (stable, and every server is still named when there are three or fewer).
    """
    settings = ctx.settings
    ns_rdatas: list[dns.rdata.Rdata] = []
    glue: list[dns.rrset.RRset] = []
    for member in ctx.view.servers:
        if INVALID_DNS_LABEL.search(member.name):
            continue
        target = dns.name.from_text(f"{member.name.lower()}.node.{settings.datacenter}", origin=settings.domain)
        record = _address(target, member.addr, settings.node_ttl, T_ANY)
        ns_rdatas.append(NS(IN, T_NS, target))
        if record is not None:
            glue.append(record)
        if len(ns_rdatas) >= 3:
            break
    if not ns_rdatas:
        return [], []
    return [dns.rrset.from_rdata_list(settings.domain, settings.node_ttl, ns_rdatas)], glue


def _reverse(ctx: _Ctx) -> dns.message.Message | None:
    """``d.c.b.a.in-addr.arpa`` / ``ip6.arpa`` PTR: the catalog node with that address; else the recursors, else
    NXDOMAIN with the SOA (Consul >= 1.19 answers from its own data)."""
    response = ctx.response
    response.flags |= dns.flags.AA
    if ctx.catalog_unavailable():
        response.set_rcode(dns.rcode.SERVFAIL)
        return response
    node = ctx.view.by_reverse.get(ctx.qname)
    if node is not None and not ctx.readable("node", node.name):
        node = None
    if node is None:
        if ctx.settings.recursors:
            return None
        ctx.negative(dns.rcode.NXDOMAIN)
        return response
    target = _node_fqdn(node, ctx.settings)
    if ctx.qtype not in (T_PTR, T_ANY) or target is None:
        ctx.negative(dns.rcode.NOERROR)
        return response
    response.answer.append(dns.rrset.from_rdata(ctx.qname, 0, PTR(IN, T_PTR, target)))
    return response


# ---------------------------------------------------------------------------------------------- render


@attrs.frozen
class _Record:
    """One resource record with its uncompressed wire size (Consul measures the 512-byte cut uncompressed)."""

    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata
    size: int


def _records(rrsets: Iterable[dns.rrset.RRset]) -> list[_Record]:
    out = []
    for rrset in rrsets:
        name_size = len(rrset.name.to_wire())
        for rdata in rrset:
            out.append(_Record(rrset.name, rrset.ttl, rdata, name_size + 10 + len(rdata.to_wire())))
    return out


def _rrsets(records: Iterable[_Record]) -> list[dns.rrset.RRset]:
    """Records back into RRsets, keeping their order (consecutive records of one name and type share a set)."""
    out: list[dns.rrset.RRset] = []
    for record in records:
        last = out[-1] if out else None
        if last is not None and last.name == record.name and last.rdtype == record.rdata.rdtype:
            last.add(record.rdata)
        else:
            out.append(dns.rrset.from_rdata(record.name, record.ttl, record.rdata))
    return out


def _srv_targets(answers: list[_Record]) -> set[dns.name.Name]:
    return {r.rdata.target for r in answers if r.rdata.rdtype == T_SRV}  # type: ignore[attr-defined]


class _Trimmer:
    """Consul's trimUDPResponse/trimTCPResponse on a record list: cut answers, drop the additional records no
    remaining SRV answer refers to (for non-SRV answers, all of them), measure, repeat."""

    def __init__(self, response: dns.message.Message) -> None:
        self.response = response
        self.answers = _records(response.answer)
        self.extra = _records(response.additional)
        self.all_extra = list(self.extra)
        self.authority = list(response.authority)
        self.fixed = 12 + sum(len(q.name.to_wire()) + 4 for q in response.question)
        if response.opt is not None:
            self.fixed += 11 + len(response.opt[0].to_wire())

    def cut(self, n: int) -> None:
        """Keep ``n`` answers and, as Consul's syncExtra does, only the first additional record of each remaining
        SRV target (its address: node-meta TXT records go)."""
        self.answers = self.answers[:n]
        targets = _srv_targets(self.answers)
        extra: list[_Record] = []
        for record in self.all_extra:
            if record.name in targets:
                targets.discard(record.name)
                extra.append(record)
        self.extra = extra

    def count(self) -> int:
        return len(self.answers)

    def drop_authority(self) -> None:
        self.authority = []

    def save(self) -> object:
        return self.answers, self.extra

    def restore(self, saved: object) -> None:
        self.answers, self.extra = saved  # type: ignore[misc]

    def size(self, compressed: bool) -> int:
        if not compressed:
            return (self.fixed + sum(r.size for r in self.answers) + sum(r.size for r in self.extra)
                    + sum(r.size for r in _records(self.authority)))
        self.apply()
        return len(self.response.to_wire(max_size=65535, want_shuffle=False))

    def apply(self) -> None:
        self.response.answer = _rrsets(self.answers)
        self.response.additional = _rrsets(self.extra)
        self.response.authority = self.authority


def _client_payload(query: dns.message.Message) -> int:
    return query.payload if query.edns >= 0 else 0


def render(query: dns.message.Message, response: dns.message.Message, settings: DnsSettings, *, tcp: bool) -> bytes:
    """Wire bytes of ``response``, trimmed as Consul trims for the transport, with the OPT echo when asked.

    Mutates ``response`` (it is the caller's fresh message from ``answer``).
    """
    rcode = response.rcode()
    if query.edns >= 0:
        options = [
            dns.edns.ECSOption(o.address, o.srclen, 0) for o in query.options if isinstance(o, dns.edns.ECSOption)
        ]
        response.use_edns(0, 0, payload=query.payload, options=options)
    else:
        response.use_edns(None)
    response.set_rcode(rcode)
    trimmer = _Trimmer(response)
    srv = bool(query.question) and query.question[0].rdtype == T_SRV
    limit, trimmed = trim(trimmer, tcp=tcp, payload=_client_payload(query),
                          udp_answer_limit=settings.udp_answer_limit, srv=srv)
    trimmer.apply()
    if trimmed and settings.enable_truncate:
        response.flags |= dns.flags.TC
    wire = response.to_wire(max_size=65535, want_shuffle=False)
    if len(wire) > limit:
        # A single huge answer or a long additional section (Consul would send it anyway): never send more than
        # the client can take.  Additional records go first, then dnspython truncates and sets TC.
        response.additional = []
        wire = response.to_wire(max_size=65535, want_shuffle=False)
        if len(wire) > limit:
            wire = response.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False)
    return wire
