"""The config's watch plans run inside the agent, as Consul's agent runs them (agent.go reloadWatches,
watch_handler.go): each plan asks this agent's own HTTP API with blocking queries (watch_plans.PlanState decides
what is news), and on every change its handler runs with the result: ``args`` as a process (``handler``: through
the shell), the result as JSON on stdin and ``CONSUL_INDEX`` set, its output (the last 8 KiB) logged at debug; or
``http``: the result POSTed (or ``method``) as JSON with ``X-Consul-Index`` and the configured headers, bounded by
``timeout``.  A failing handler is logged and the watch goes on (unlike ``python -m agent watch``, which exits).
The handler runs before the next query, as Consul's plan loop calls it.  Query errors back off as the CLI's
(5 s x failures^2, at most 180 s)."""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11
import trio

from agent.agent_watches import AgentWatch, HttpHandler
from agent.gostrings import go_json_text
from agent.watch_plans import PlanState

__all__ = ["MAX_OUTPUT", "run_watches"]

log = logging.getLogger("agent.watch")

MAX_OUTPUT = 8 * 1024  # maxWatchOutput
#: A blocking query parks up to 10 m (plus jitter) on the agent: wait longer than that for its answer.
QUERY_TIMEOUT = 660.0


class QueryError(Exception):
    """A query the Go API client would report as an error (a non-2xx status, an unreadable answer)."""


async def _request(host: str, port: int, method: str, target: str, headers: list[tuple[str, str]],
                   body: bytes = b"", *, tls: ssl.SSLContext | None = None,
                   host_header: str = "") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 exchange over a fresh connection: (status, headers lower-cased, body)."""
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    try:
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_hostname=host)
        conn = h11.Connection(h11.CLIENT)
        shown = f"[{host}]" if ":" in host else host
        headers = [("Host", host_header or f"{shown}:{port}"), ("Connection", "close"), *headers]
        if body or method not in ("GET", "HEAD"):
            headers.append(("Content-Length", str(len(body))))
        data = conn.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            data += conn.send(h11.Data(data=body))
        await stream.send_all(data + conn.send(h11.EndOfMessage()))
        status, got, chunks = 0, {}, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                got = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, got, b"".join(chunks)
    finally:
        await trio.aclose_forcefully(stream)


async def query(watch: AgentWatch, addr: tuple[str, int], state: PlanState) -> tuple[int, Any]:
    """One (blocking) query of the plan against this agent: (index, result)."""
    plan = watch.plan
    params = dict(plan.params)
    if index := state.query_index():
        params["index"] = str(index)
    target = plan.path + ("?" + urlencode(params) if params else "")
    headers = [("Accept", "application/json")] + ([("X-Consul-Token", watch.token)] if watch.token else [])
    try:
        with trio.fail_after(QUERY_TIMEOUT):
            status, got, body = await _request(addr[0], addr[1], "GET", target, headers)
    except (OSError, h11.ProtocolError, trio.BrokenResourceError, trio.TooSlowError) as exc:
        raise QueryError(str(exc) or type(exc).__name__) from None
    missing = status == 404 and plan.missing_ok
    if not missing and not 200 <= status < 300:
        raise QueryError(f"Unexpected response code: {status} ({body.decode('utf-8', 'replace')})")
    try:
        index = int(got.get("x-consul-index", ""))
        value = None if missing else json.loads(body)
    except ValueError:
        raise QueryError("Failed to parse X-Consul-Index or the answer") from None
    return index, plan.result(status, value, state.last_index)


def _tail(output: bytes, total: int) -> str:
    """circbuf's last MAX_OUTPUT bytes, with Consul's note when more was written."""
    text = output.decode("utf-8", errors="replace")
    return f"Captured {MAX_OUTPUT} of {total} bytes\n...\n{text}" if total > MAX_OUTPUT else text


async def run_script(watch: AgentWatch, index: int, result: Any) -> None:
    """makeWatchHandler: ``args`` as the argv, a ``handler`` string through the shell."""
    argv = list(watch.args) if watch.args else [os.environ.get("SHELL") or "/bin/sh", "-c", watch.script]
    stdin = (go_json_text(result) + "\n").encode("utf-8")
    try:
        done = await trio.run_process(argv, stdin=stdin, capture_stdout=True, stderr=subprocess.STDOUT,
                                      check=False, env=dict(os.environ, CONSUL_INDEX=str(index)))
    except OSError as exc:
        log.error("Failed to run watch handler: handler=%r error=%s", watch.handler_name, exc)
        return
    if done.returncode != 0:
        status = f"signal: {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        log.error("Failed to run watch handler: handler=%r error=%s", watch.handler_name, status)
    log.debug("watch handler output: handler=%r output=%s", watch.handler_name,
              _tail(done.stdout[-MAX_OUTPUT:], len(done.stdout)))


async def run_http(handler: HttpHandler, index: int, result: Any) -> None:
    """makeHTTPWatchHandler: the result as the JSON body, ``X-Consul-Index``, the configured headers."""
    parts = urlsplit(handler.path)
    tls = None
    if parts.scheme == "https":
        tls = ssl.create_default_context()
        if handler.tls_skip_verify:
            tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    headers = [("Content-Type", "application/json"), ("X-Consul-Index", str(index))]
    headers += [(name, value) for name, values in handler.header for value in values]
    body = (go_json_text(result) + "\n").encode("utf-8")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with trio.fail_after(handler.timeout):
            status, _, answer = await _request(parts.hostname or "", port, handler.method, target, headers, body,
                                               tls=tls, host_header=parts.netloc.rpartition("@")[2])
    except (OSError, ValueError, h11.ProtocolError, trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as exc:
        log.error("Failed to invoke http watch handler: %s", str(exc) or type(exc).__name__)
        return
    log.debug("http watch handler output: handler=%s status=%d output=%s", handler.path, status,
              _tail(answer[-MAX_OUTPUT:], len(answer)))


async def run_watch(watch: AgentWatch, addr: tuple[str, int]) -> None:
    """Plan.Run: query, and on news run the handler; until cancelled."""
    state = PlanState(monotonic=watch.plan.monotonic)
    while True:
        try:
            index, result = await query(watch, addr, state)
        except QueryError as err:
            delay = state.failed()
            log.error("Watch errored: type=%s error=%s retry=%gs", watch.plan.type, err, delay)
            await trio.sleep(delay)
            continue
        if not state.answered(index, result):
            continue
        if watch.http is not None:
            await run_http(watch.http, index, result)
        else:
            await run_script(watch, index, result)


async def run_watches(watches: Sequence[AgentWatch], http_addr: tuple[str, ...],
                      *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Every configured watch against the agent's own HTTP address (a wildcard bind is asked on loopback)."""
    host = str(http_addr[0])
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    async with trio.open_nursery() as nursery:
        for watch in watches:
            nursery.start_soon(run_watch, watch, (host, int(http_addr[1])))
        task_status.started()
