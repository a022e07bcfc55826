"""The Consul HTTP API over h11 (consul-compat §1, §2).  Sees the agent only through ``AgentAPI`` and member-table
snapshots; never imports ``protocol``.  Layers, bottom up: request/response/errors/options, routes (the router
and Consul's per-endpoint wrapper), the endpoint modules, endpoints.py (the router they make), server.py."""
