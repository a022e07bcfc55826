"""Forwarding names outside the domain to the configured ``recursors`` (consul-compat §3.8).

Consul's rules: the client's transport (UDP, or TCP if it asked over TCP); recursors tried in order
(``sequential``) or shuffled (``random``), each bounded by ``recursor_timeout``; the first reply whose RCODE is
NOERROR or NXDOMAIN is relayed as the recursor sent it; when all fail, SERVFAIL with RA set.
"""

from __future__ import annotations

import logging
import random
import socket

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import trio

from agent.dns.answer import render
from agent.dns.cache import Forward
from agent.dns.settings import DnsSettings

__all__ = ["exchange", "forward", "servfail"]

log = logging.getLogger("agent.dns")

RELAYED = (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)


async def exchange(wire: bytes, addr: tuple[str, int], *, tcp: bool) -> bytes:
    """Send one query to ``addr`` and return the raw reply carrying the same ID (bound it with move_on_after)."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    if tcp:
        stream = await trio.open_tcp_stream(*addr)
        async with stream:
            await stream.send_all(len(wire).to_bytes(2, "big") + wire)
            buf = bytearray()
            while True:
                if len(buf) >= 2 and len(buf) >= 2 + int.from_bytes(buf[:2], "big"):
                    return bytes(buf[2:2 + int.from_bytes(buf[:2], "big")])
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise OSError("recursor closed the connection")
                buf += chunk
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        await sock.connect(addr)
        await sock.send(wire)
        while True:
            reply = await sock.recv(65535)
            if len(reply) >= 12 and reply[:2] == wire[:2] and reply[2] & 0x80:
                return reply


async def forward(request: Forward, settings: DnsSettings, *, tcp: bool) -> bytes:
    """The recursors' answer to ``request``, or SERVFAIL; each recursor gets ``recursor_timeout``."""
    order = list(settings.recursors)
    if settings.recursor_strategy == "random":
        random.shuffle(order)
    for addr in order:
        reply = None
        with trio.move_on_after(settings.recursor_timeout):
            try:
                reply = await exchange(request.wire, addr, tcp=tcp)
            except OSError as exc:
                log.debug("dns: recursor %s:%d failed: %s", addr[0], addr[1], exc)
        if reply is None:
            continue
        try:
            parsed = dns.message.from_wire(reply, question_only=True)
        except dns.exception.DNSException:
            continue
        if parsed.rcode() in RELAYED and parsed.question == request.query.question:
            return reply
        log.debug("dns: recursor %s:%d answered %s", addr[0], addr[1], dns.rcode.to_text(parsed.rcode()))
    return servfail(request.query, settings, tcp=tcp)


def servfail(query: dns.message.Message, settings: DnsSettings, *, tcp: bool) -> bytes:
    """Consul's reply when every recursor failed: SERVFAIL, RA set, the OPT echoed."""
    response = dns.message.Message(id=query.id)
    response.flags = dns.flags.QR | dns.flags.RA | (query.flags & (dns.flags.RD | dns.flags.CD))
    response.question = list(query.question)
    response.set_rcode(dns.rcode.SERVFAIL)
    return render(query, response, settings, tcp=tcp)
