"""The DNS interface (consul-compat §3): NAME.node[.DC].consul and friends, answered from member-table snapshots.

``answer.py`` is the pure decision (query + snapshot -> response), ``cache.py`` serves it per snapshot from wire
bytes, ``server.py`` runs UDP and TCP, ``recursor.py`` forwards names outside the domain, ``settings.py`` reads
``dns_config``.  Never imports ``protocol``: DNS sees snapshots only.
"""

from agent.dns.answer import answer, render
from agent.dns.cache import Responder
from agent.dns.server import DnsLimits, serve_dns
from agent.dns.settings import DnsSettings

__all__ = ["DnsLimits", "DnsSettings", "Responder", "answer", "render", "serve_dns"]
