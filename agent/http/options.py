"""Tunables of the HTTP server: sizes, timeouts and caps that keep one client from hurting the others."""

from __future__ import annotations

import attrs

__all__ = ["HttpOptions"]


@attrs.frozen
class HttpOptions:
    """Defaults suit a real agent; tests shrink them.  Times are seconds (trio clock)."""

    max_request_bytes: int = 1 << 20  # a body above this is a 413 (Go's http MaxBytesReader habit)
    max_header_bytes: int = 64 * 1024  # a head above this is a 431
    # A request head is due this long after the connection opened (first request) or after its first byte (later
    # ones), whatever trickles in: Go's ReadHeaderTimeout (slowloris, and connections that never say anything).
    header_timeout: float = 10.0
    body_timeout: float = 30.0  # to receive a whole body once the head is in
    idle_timeout: float = 30.0  # keep-alive: how long a connection may wait for its next request (Go's IdleTimeout)
    # While a handler runs, a client that sent more than its request is polled this often for a hang-up.
    hangup_check_interval: float = 5.0
    write_timeout: float = 30.0  # a client that doesn't read its response is dropped
    linger_time: float = 0.5  # after refusing a body, drain the rest this long so the 413 isn't lost to a reset
    shutdown_grace: float = 1.0  # a response already computed still goes out this long after cancellation
    # At either cap the longest-idle connection is closed to make room; a 429 only when every one is busy.
    max_connections: int = 1024
    max_connections_per_client: int = 200  # Consul's limits.http_max_conns_per_client (0: no cap)
    # Consul waits rpc_hold_timeout (7 s) for a leader before "No cluster leader".  Our leader is computed
    # locally from the member table, so waiting rarely helps: answer at once unless configured otherwise.
    rpc_hold_timeout: float = 0.0
    # Consul's limits.kv_max_value_size and txn_max_req_len (raft.SuggestedMaxDataSize, 512 KiB): a larger KV
    # value is a 413, and so is a larger /v1/txn body (whose limit is never below the KV one).
    kv_max_value_size: int = 512 * 1024
    txn_max_req_len: int = 512 * 1024
    # /v1/stream/members (agent/http/stream.py).  A subscriber's queue is its window into the table's shared
    # history: one that falls this many events behind the table is closed with 1013 ("reconnect with ?index=").
    stream_window: int = 1024
    stream_send_timeout: float = 10.0  # one message not taken by the client in this long: the connection is dropped
    stream_ping_interval: float = 15.0  # idle or not, every subscriber is pinged this often ...
    stream_ping_timeout: float = 10.0  # ... and dropped if no pong comes back within this
    stream_max_message_bytes: int = 4096  # clients have nothing to say; a bigger message is closed with 1009
