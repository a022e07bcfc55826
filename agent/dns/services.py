"""Service lookups (consul-compat §3.3): ``[tag.]name.service[.dc]``, ``_name._tag.service[.dc]`` and SRV.

Why a record *set* and not a response: Consul shuffles the instances on every query, but everything else about the
answer is fixed by the snapshot.  ``lookup`` builds, once, the records each instance contributes (its answer, the
additional records of its SRV target) in catalog order; ``ServiceAnswer.materialize(order)`` lays them out in one
order.  The pure ``answer`` picks a fresh random order per call; the cache (``shuffled.py``) compiles the same set
into wire pieces once per snapshot and only shuffles the pieces per query.

The instances are the health endpoint's (agents' nodes and registered ones alike), filtered as Consul's DNS does:
any critical check (serfHealth of a failed node included) drops the instance, and with ``only_passing`` so does a
warning one.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs
import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from agent.catalog import query
from agent.dns.txt import meta_txt
from agent.snapshot_memo import SnapshotMemo

if TYPE_CHECKING:
    from agent.dns.settings import DnsSettings
    from agent.members import Snapshot

__all__ = ["Extra", "Record", "ServiceAnswer", "instance_index", "lookup", "parse_service"]

IN = dns.rdataclass.IN
T_A, T_AAAA, T_ANY, T_TXT, T_SRV = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY, dns.rdatatype.TXT,
                                    dns.rdatatype.SRV)  # fmt: skip
# Consul's makeARecord: the qtypes a service address answers (TXT and ANY get both families, as in Consul).
V4_TYPES = frozenset({T_A, T_ANY, T_TXT, T_SRV})
V6_TYPES = frozenset({T_AAAA, T_ANY, T_TXT, T_SRV})


def parse_service(parts: Sequence[str]) -> tuple[str, str] | None:
    """(service, tag) from the labels left of ``service``: ``_name._tag`` (RFC 2782; ``_tcp`` is no filter, as in
    Consul, while ``_udp`` filters on the tag ``udp``) or ``[tag.]name`` with a tag that may contain dots."""
    n = len(parts)
    if n == 0:
        return None
    if n == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
        tag = parts[1][1:]
        return parts[0][1:], "" if tag == "tcp" else tag
    return parts[-1], ".".join(parts[:-1])


# ---------------------------------------------------------------------------------------------- the index


@attrs.frozen
class _Index:
    """Every instance of every service of one snapshot, by lower-cased name: a lookup costs O(its instances)."""

    by_service: Mapping[str, tuple[query.Instance, ...]]
    meta: Mapping[str, Mapping[str, str]]  # node name -> full node meta (for the SRV additional TXT)


_INDEXES = SnapshotMemo(max_sources=1)


def instance_index(snapshot: Snapshot, datacenter: str) -> _Index:
    """The index of ``snapshot``, built once per snapshot and datacenter, as ``catalog_view`` is."""
    return _INDEXES.get((snapshot,), datacenter, lambda: _build_index(snapshot, datacenter))


def _build_index(snapshot: Snapshot, datacenter: str) -> _Index:
    by_service: dict[str, list[query.Instance]] = {}
    meta: dict[str, Mapping[str, str]] = {}
    for node in query.catalog_nodes(snapshot, datacenter):
        instances = query.node_instances(snapshot, node)
        if not instances:
            continue
        meta[node.name] = node.meta
        for instance in instances:
            by_service.setdefault(instance.service.name.lower(), []).append(instance)
    return _Index({name: tuple(found) for name, found in by_service.items()}, meta)


def _healthy(instances: Iterable[query.Instance], tag: str, only_passing: bool) -> list[query.Instance]:
    wanted = tag.lower()
    out = []
    for instance in instances:
        if wanted and wanted not in {t.lower() for t in instance.service.tags}:
            continue
        if query.dns_answerable(instance, only_passing):
            out.append(instance)
    return out


# ---------------------------------------------------------------------------------------------- the record set


@attrs.frozen
class Extra:
    """The additional records of one owner name: its address record first (what Consul keeps when it trims), then
    the node-meta TXT records."""

    name: dns.name.Name
    rdatas: tuple[dns.rdata.Rdata, ...]

    def rrsets(self, ttl: int) -> list[dns.rrset.RRset]:
        out: list[dns.rrset.RRset] = []
        for rdata in self.rdatas:
            if out and out[-1].rdtype == rdata.rdtype:
                out[-1].add(rdata)
            else:
                out.append(dns.rrset.from_rdata(self.name, ttl, rdata))
        return out


@attrs.frozen
class Record:
    """One answer record and the additional records it drags along: its SRV target's (``target``) and, for a
    service with its own IP, the node's TXT meta (``meta``, kept only while nothing is trimmed, as in Consul)."""

    rdata: dns.rdata.Rdata
    target: int = -1  # index into ServiceAnswer.extras
    meta: int = -1


@attrs.define
class ServiceAnswer:
    """A positive service answer before ordering: ``response`` is the skeleton (flags, question)."""

    response: dns.message.Message
    qname: dns.name.Name
    ttl: int
    records: tuple[Record, ...]
    extras: tuple[Extra, ...]
    srv: bool
    a_record_limit: int = 0

    def order(self, rng: random.Random | None = None) -> list[int]:
        """A fresh Fisher-Yates order of the records, cut to ``a_record_limit`` for address answers."""
        order = list(range(len(self.records)))
        (rng or random).shuffle(order)
        if not self.srv and self.a_record_limit:
            del order[self.a_record_limit:]
        return order

    def materialize(self, order: Sequence[int]) -> dns.message.Message:
        """The skeleton with the records of ``order`` in the answer and their extras in the additional section."""
        response = self.response
        records = self.records
        answer: list[dns.rrset.RRset] = []
        additional: list[dns.rrset.RRset] = []
        seen: set[int] = set()
        for i in order:
            record = records[i]
            answer.append(dns.rrset.from_rdata(self.qname, self.ttl, record.rdata))
            for extra in (record.target, record.meta):
                if extra >= 0 and extra not in seen:
                    seen.add(extra)
                    additional.extend(self.extras[extra].rrsets(self.ttl))
        response.answer = answer
        response.additional = additional
        return response


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _address_rdata(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, qtype: int) -> dns.rdata.Rdata | None:
    if ip.version == 4:
        return A(IN, T_A, str(ip)) if qtype in V4_TYPES else None
    return AAAA(IN, T_AAAA, str(ip)) if qtype in V6_TYPES else None


class _Builder:
    """Collects records and de-duplicated extras (one ``Extra`` per owner name)."""

    def __init__(self, settings: DnsSettings, index: _Index) -> None:
        self.settings = settings
        self.index = index
        self.records: list[Record] = []
        self.extras: list[Extra] = []
        self.by_name: dict[dns.name.Name, int] = {}

    def extra(self, name: dns.name.Name, rdatas: list[dns.rdata.Rdata]) -> int:
        """The index of ``name``'s Extra, adding ``rdatas`` (address records go before TXT ones)."""
        at = self.by_name.get(name)
        if at is None:
            self.by_name[name] = len(self.extras)
            self.extras.append(Extra(name, tuple(rdatas)))
            return len(self.extras) - 1
        have = self.extras[at].rdatas
        new = [r for r in rdatas if r not in have]
        if new:
            merged = sorted((*have, *new), key=lambda r: r.rdtype == T_TXT)  # stable: addresses first
            self.extras[at] = Extra(name, tuple(merged))
        return at

    def node_txt(self, name: dns.name.Name, node: str) -> int:
        if not self.settings.enable_additional_node_meta_txt:
            return -1
        meta = self.index.meta.get(node, {})
        return self.extra(name, meta_txt({k: meta[k] for k in sorted(meta)}, lower_prefix=True))


def _fqdn(text: str, domain: dns.name.Name) -> dns.name.Name | None:
    try:
        return dns.name.from_text(text, origin=domain)
    except dns.exception.DNSException:
        return None


def _srv_records(build: _Builder, instances: list[query.Instance]) -> None:
    """Consul's serviceSRVRecords: one SRV per (node, address, port); the target is the node's name when the
    instance uses the node address, ``<hex-ip>.addr.<dc>`` when the service has its own IP."""
    settings = build.settings
    dc, domain = settings.datacenter, settings.domain
    handled: set[tuple[str, str, int]] = set()
    for instance in instances:
        service = instance.service
        key = (instance.node_name, service.address, service.port)
        if key in handled:
            continue
        handled.add(key)
        weight = service.weights_warning if instance.status == "warning" else service.weights_passing
        node_name = _fqdn(f"{instance.node_name}.node.{dc}", domain)
        if node_name is None:
            continue
        own_ip = _ip(service.address) if service.address else None
        if service.address and own_ip is None:
            # A hostname: Consul points the SRV at it and resolves it through its recursors (none here).
            target = _fqdn(service.address if service.address.endswith(".") else service.address + ".",
                           dns.name.root)  # fmt: skip
            if target is None:
                continue
            meta = build.node_txt(node_name, instance.node_name)
            build.records.append(Record(SRV(IN, T_SRV, 1, weight, service.port, target), -1, meta))
            continue
        ip = own_ip or _ip(instance.node.address)
        if ip is None:
            continue
        rdata = _address_rdata(ip, T_SRV)
        assert rdata is not None
        if own_ip is not None:
            target = _fqdn(f"{ip.packed.hex()}.addr.{dc}", domain)
            if target is None:
                continue
            at = build.extra(target, [rdata])
            meta = build.node_txt(node_name, instance.node_name)
        else:
            target = node_name
            at = build.extra(target, [rdata])
            meta = -1
            build.node_txt(node_name, instance.node_name)
        build.records.append(Record(SRV(IN, T_SRV, 1, weight, service.port, target), at, meta))


def _address_records(build: _Builder, instances: list[query.Instance], qtype: int) -> None:
    """Consul's serviceNodeRecords: one record per distinct address (the service's, else the node's)."""
    seen: set[str] = set()
    for instance in instances:
        ip = _ip(instance.address)
        if ip is None:
            continue  # a hostname would be a CNAME resolved through the recursors: not supported here
        rdata = _address_rdata(ip, qtype)
        if rdata is None or str(ip) in seen:
            continue
        seen.add(str(ip))
        build.records.append(Record(rdata))


def lookup(
    response: dns.message.Message,
    qname: dns.name.Name,
    qtype: int,
    snapshot: Snapshot,
    settings: DnsSettings,
    service: str,
    tag: str,
    node_ok: Callable[[str], bool] | None = None,
) -> ServiceAnswer | bool:
    """The record set for ``service`` (and ``tag``); False when no healthy instance exists (NXDOMAIN), True when
    instances exist but none yields a record of ``qtype`` (NODATA)."""
    index = instance_index(snapshot, settings.datacenter)
    instances = _healthy(index.by_service.get(service, ()), tag, settings.only_passing)
    if node_ok is not None:  # the DNS token's view: instances on nodes it may not read are not there
        instances = [i for i in instances if node_ok(i.node.name)]
    if not instances:
        return False
    build = _Builder(settings, index)
    if qtype == T_SRV:
        _srv_records(build, instances)
    else:
        _address_records(build, instances, qtype)
    if not build.records:
        return True
    return ServiceAnswer(response, qname, settings.ttl_for_service(service), tuple(build.records),
                         tuple(build.extras), qtype == T_SRV, settings.a_record_limit)  # fmt: skip
