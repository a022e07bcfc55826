"""Check runners: one task per check in the agent's checks nursery; each reports (status, output).

Why one task each: a check never waits for another (a hanging HTTP server or script costs only its own task,
bounded by its timeout).  Runners are plain coroutines taking a ``report(status, output)`` callback, so tests drive
them with trio's MockClock and loopback servers.  Semantics are Consul's (consul-compat §5.6): HTTP 2xx passing,
429 warning, anything else critical (output kept); TCP connect; script exit 0/1/other = passing/warning/critical,
killed (its whole process group) at the timeout; TTL critical with ``TTL expired`` when not refreshed in time.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import random
import signal
import ssl
import subprocess
from collections.abc import Callable
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import h11
import trio

from agent.services.definitions import CheckDef

__all__ = ["Report", "TtlTimer", "http_once", "run_check", "script_once", "tcp_once"]

log = logging.getLogger("agent.services")

Report = Callable[[str, str], None]
USER_AGENT = "Consul Health Check"


class TtlTimer:
    """The TTL check's clock: ``refresh()`` (a pass/warn/fail/update) restarts the countdown."""

    def __init__(self) -> None:
        self._refreshed = trio.Event()
        self.last_output = ""

    def refresh(self, output: str) -> None:
        self.last_output = output
        self._refreshed.set()

    async def run(self, ttl: float, report: Report) -> None:
        while True:
            refreshed = self._refreshed
            with trio.move_on_after(ttl):
                await refreshed.wait()
            if refreshed.is_set():
                self._refreshed = trio.Event()
                continue
            output = "TTL expired"
            if self.last_output:
                output += f" (last output before timeout follows): {self.last_output}"
            report("critical", output)
            await refreshed.wait()
            self._refreshed = trio.Event()


def _truncate(text: str, limit: int) -> str:
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode(errors="ignore")


# ------------------------------------------------------------------ one run of each kind


CREDENTIAL_PARAMS = frozenset({
    "token", "access_token", "auth", "auth_token", "api_key", "apikey", "key", "password", "passwd", "pass",
    "secret", "client_secret", "sig", "signature", "x-amz-signature", "x-amz-credential", "x-consul-token",
})  # fmt: skip
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` as the check's Output shows it: a password masked as Go's net/http client masks it in errors
    (``user:***@``), and the values of query parameters that carry credentials (``token``, ``key``, ...) too."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    query = "&".join(
        f"{key}={MASK}" if sep and key.lower() in CREDENTIAL_PARAMS else f"{key}{sep}{value}"
        for key, sep, value in (item.partition("=") for item in parts.query.split("&"))
    ) if parts.query else ""  # fmt: skip
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


#: Go's http.Client follows at most this many redirects (its defaultCheckRedirect), as Consul's CheckHTTP does.
MAX_REDIRECTS = 10


async def http_once(check: CheckDef) -> tuple[str, str]:
    """One HTTP check as Consul's CheckHTTP makes it (bounded by the check's timeout): redirects are followed as
    Go's client follows them (301/302/303 go on as GET without a body, 307/308 keep both; at most 10)."""
    url = redact_url(check.http)  # what the Output shows; the request itself uses check.http
    method, body, target_url = check.method or "GET", check.body.encode(), check.http
    try:
        with trio.fail_after(check.effective_timeout):
            for _hop in range(MAX_REDIRECTS + 1):
                status, reason, text, location = await _request(check, target_url, method, body)
                if status not in (301, 302, 303, 307, 308) or not location:
                    break
                if status in (301, 302, 303) and method != "HEAD":
                    method, body = "GET", b""
                target_url = urljoin(target_url, location)
            else:
                return "critical", f'Get "{url}": stopped after {MAX_REDIRECTS} redirects'
    except trio.TooSlowError:
        return "critical", f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except (OSError, h11.ProtocolError, trio.BrokenResourceError, ssl.SSLError, ValueError) as exc:
        return "critical", f'Get "{url}": {exc}'
    output = f"HTTP {check.method or 'GET'} {url}: {status} {reason} Output: {text}"
    if 200 <= status < 300:
        return "passing", output
    if status == 429:
        return "warning", output
    return "critical", output


async def _request(check: CheckDef, url: str, method: str, body: bytes) -> tuple[int, str, str, str]:
    """One request of a check to ``url``: (status, reason, the body's first output_max_size bytes, Location)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)  # ValueError for a bad port: the caller's
    host = parts.hostname or ""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [("Host", parts.netloc.rpartition("@")[2]), ("User-Agent", USER_AGENT),
               ("Accept", "text/plain, text/*, */*"), ("Connection", "close")]  # fmt: skip
    for name, values in check.header:
        headers.extend((name, v) for v in values)
    if parts.username is not None and not any(k.lower() == "authorization" for k, _ in headers):
        # Go's client turns URL userinfo into Basic auth (and never sends the userinfo itself)
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers.append(("Authorization", "Basic " + base64.b64encode(credentials).decode()))
    if body or method not in ("GET", "HEAD"):
        headers.append(("Content-Length", str(len(body))))
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    try:
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if check.tls_skip_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            stream = trio.SSLStream(stream, context, server_hostname=check.tls_server_name or host)
        return await _exchange(stream, method, target, headers, body, check.output_max_size)
    finally:
        await trio.aclose_forcefully(stream)


async def _exchange(
    stream: trio.abc.Stream, method: str, target: str, headers: list[tuple[str, str]], body: bytes, limit: int
) -> tuple[int, str, str, str]:
    conn = h11.Connection(h11.CLIENT)
    data = conn.send(h11.Request(method=method, target=target, headers=headers))
    if body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)
    status, reason, location, chunks, size = 0, "", "", [], 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
            continue
        if isinstance(event, h11.Response):
            status, reason = event.status_code, event.reason.decode("latin-1")
            location = next((v.decode("latin-1") for k, v in event.headers if k == b"location"), "")
        elif isinstance(event, h11.Data):
            if size < limit:
                chunks.append(bytes(event.data))
                size += len(event.data)
            else:
                break  # enough output: don't read a huge body to its end
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    text = b"".join(chunks)[:limit].decode("utf-8", errors="replace")
    return status, reason, text, location


async def tcp_once(check: CheckDef) -> tuple[str, str]:
    host, _, port = check.tcp.rpartition(":")
    host = host.strip("[]")
    try:
        with trio.fail_after(check.effective_timeout):
            stream = await trio.open_tcp_stream(host, int(port))
            await trio.aclose_forcefully(stream)
    except trio.TooSlowError:
        return "critical", f"dial tcp {check.tcp}: i/o timeout"
    except OSError as exc:
        return "critical", f"dial tcp {check.tcp}: {exc.strerror or exc}"
    return "passing", f"TCP connect {check.tcp}: Success"


async def script_once(check: CheckDef) -> tuple[str, str]:
    """Run the script; at the timeout its whole process group is killed (a shell's children too)."""
    timeout = check.effective_timeout

    async def kill_group(process: trio.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    result: subprocess.CompletedProcess[bytes] | None = None
    try:
        with trio.move_on_after(timeout):
            result = await trio.run_process(
                list(check.args), capture_stdout=True, stderr=subprocess.STDOUT, check=False,
                start_new_session=True, deliver_cancel=kill_group, stdin=subprocess.DEVNULL,
            )  # fmt: skip
    except OSError as exc:
        return "critical", f"Failed to start check: {exc}"
    if result is None:
        return "critical", f"Timed out ({_seconds(timeout)}) running check"
    output = _truncate(result.stdout.decode("utf-8", errors="replace"), check.output_max_size)
    code = result.returncode
    if code == 0:
        return "passing", output
    if code == 1:
        return "warning", output
    return "critical", output


def _seconds(value: float) -> str:
    return f"{value:g}s"


_ONCE = {"http": http_once, "tcp": tcp_once, "script": script_once}


async def run_check(check: CheckDef, report: Report, *, rng: random.Random, ttl: TtlTimer | None = None) -> None:
    """Run ``check`` until cancelled: the first run after a random delay within one interval (as Consul)."""
    kind = check.kind
    if kind == "ttl":
        await (ttl or TtlTimer()).run(check.ttl, report)
        return
    once = _ONCE.get(kind)
    if once is None:
        return  # a kind this agent doesn't run keeps its initial status
    interval = check.effective_interval
    await trio.sleep(rng.uniform(0, interval))
    while True:
        try:
            status, output = await once(check)
        except Exception as exc:  # a runner never dies: the check goes critical and is tried again next time
            log.error("agent: check %r failed to run: %s: %s", check.id, type(exc).__name__, exc)
            status, output = "critical", f"check failed to run: {type(exc).__name__}: {exc}"
        report(status, output)
        await trio.sleep(interval)
