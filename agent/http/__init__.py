"""The Consul HTTP API over h11 (consul-compat §1, §2).  Sees the agent only through ``AgentAPI`` and member-table
snapshots; never imports ``protocol``."""

from agent.http.options import HttpOptions
from agent.http.server import serve_http

__all__ = ["HttpOptions", "serve_http"]
