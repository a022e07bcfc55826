"""The slice of Consul's Go API client the CLI uses: finding the agent (`-http-addr`, CONSUL_HTTP_* variables,
TLS), one request per call over the stdlib's http.client, and failures as the Go client words them
(`Get "<url>": dial tcp ...`, `Unexpected response code: ...`).  agent/kvapi.py and agent/lockclient.py build on it.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from agent.cli_output import go_trim
from agent.goerrors import go_os_error, go_strerror
from agent.goflags import parse_bool
from agent.gostrings import to_bytes
from agent.hostport import join_host_port

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
CONNECT_TIMEOUT = 5.0  # seconds to reach the agent: an unreachable agent must fail fast
IO_TIMEOUT = 30.0  # seconds for an answer: a graceful leave may take a few seconds to propagate


class ClientError(Exception):
    """A failed API call; str(err) is what the Go API client's error would print.

    ``status`` is the HTTP status when the agent answered (None when the exchange itself failed).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where the agent listens: scheme `http`/`https`/`unix`, `host[:port]` or a socket path, a path prefix."""

    scheme: str
    address: str
    prefix: str = ""

    def url(self, path_and_query: str) -> str:
        """The URL the Go client would show in its errors."""
        scheme = "http" if self.scheme == "unix" else self.scheme
        return f"{scheme}://{self.address}{self.prefix}{path_and_query}"


def parse_http_addr(addr: str, ssl_default: bool = False) -> Endpoint:
    """api.NewClient's address rules: `host:port`, `http(s)://host:port[/prefix]`, `unix:///path`."""
    scheme = "https" if ssl_default else "http"
    if "://" not in addr:
        return Endpoint(scheme, addr)
    given, rest = addr.split("://", 1)
    if given == "unix":
        return Endpoint("unix", rest)
    if given not in ("http", "https"):
        raise ClientError(f"Unknown protocol scheme: {given}")
    if given == "https":
        scheme = "https"
    host, _slash, prefix = rest.partition("/")
    # Go keeps a bare trailing "/" as a prefix and then asks for "//v1/..."; dropping it is kinder and harmless.
    prefix = prefix.rstrip("/")
    return Endpoint(scheme, host, "/" + prefix if prefix else "")


def _env_bool(name: str, default: bool) -> bool:
    parsed = parse_bool(os.environ.get(name, ""))
    return default if parsed is None else parsed


class _DialError(Exception):
    """The connection could not be made; str(err) is Go's `dial tcp ...` text."""


def _dial(address: tuple[str, int], *_ignored: Any, io_timeout: float = IO_TIMEOUT, **_kw: Any) -> socket.socket:
    """socket.create_connection with Go's error texts and our own timeouts (short to connect, longer to answer)."""
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise _DialError(f"dial tcp: lookup {host}: no such host") from None
    first: str | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(sockaddr)
        except TimeoutError:
            first = first or f"dial tcp {join_host_port(sockaddr[0], sockaddr[1])}: i/o timeout"
        except OSError as err:
            first = first or f"dial tcp {join_host_port(sockaddr[0], sockaddr[1])}: connect: {go_strerror(err)}"
        else:
            sock.settimeout(io_timeout)
            return sock
        sock.close()
    raise _DialError(first or f"dial tcp {host}:{port}: no suitable address")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (`unix:///path`)."""

    def __init__(self, path: str, timeout: float = IO_TIMEOUT) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(self.path)
        except OSError as err:
            sock.close()
            raise _DialError(f"dial unix {self.path}: connect: {go_strerror(err)}") from None
        sock.settimeout(self.timeout)
        self.sock = sock


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS with an optional SNI/verification name (-tls-server-name)."""

    def __init__(self, address: str, context: ssl.SSLContext, server_name: str, timeout: float = IO_TIMEOUT) -> None:
        super().__init__(address, timeout=timeout, context=context)
        self._context = context
        self._server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name or self.host)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, headers (names lower-cased), body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def ok(self) -> Reply:
        """This reply if it is a 200, else the Go client's error (`Unexpected response code: 500 (text)`)."""
        if self.status != 200:
            text = go_trim(self.body.decode("utf-8", errors="replace"))
            raise ClientError(f"Unexpected response code: {self.status} ({text})", self.status)
        return self

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as err:
            raise ClientError(f"invalid JSON from the agent: {err}") from None


@dataclass
class AgentClient:
    """The slice of Consul's Go API client the CLI uses: one request per call, errors as Go prints them."""

    endpoint: Endpoint
    token: str = ""
    datacenter: str = ""
    partition: str = ""
    auth: str = ""  # "user:pass" (CONSUL_HTTP_AUTH)
    tls: ssl.SSLContext | None = None
    tls_server_name: str = ""

    def request(
        self, method: str, path: str, params: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> bytes:
        """Send one request and return the body of a 200; anything else raises ClientError."""
        return self.call(method, path, params, body).ok().body

    def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = IO_TIMEOUT,
    ) -> Reply:
        """Send one request and return the reply whatever its status; only a failed exchange raises ClientError.

        ``timeout`` bounds the wait for the answer (a blocking query asks for longer than IO_TIMEOUT).
        """
        conn, resp, op_url = self._open(method, path, params, body, headers, timeout)
        try:
            with self._go_errors(op_url):
                answer = resp.read()
        finally:
            conn.close()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, answer)

    def stream_lines(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[str]:
        """GET a streamed body (``/v1/agent/monitor``) and yield its lines (without the newline) as they come,
        with no read timeout once the head is in; ends when the agent ends the response."""
        conn, resp, op_url = self._open("GET", path, params, None, None, IO_TIMEOUT)
        try:
            if resp.status != 200:
                with self._go_errors(op_url):
                    answer = resp.read()
                Reply(resp.status, {}, answer).ok()
            if conn.sock is not None:
                conn.sock.settimeout(None)  # a quiet agent logs nothing for minutes
            while True:
                with self._go_errors(op_url):
                    line = resp.readline()
                if not line:
                    return
                yield line.decode("utf-8", errors="replace").rstrip("\n")
        finally:
            conn.close()

    def _open(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: Mapping[str, str] | None,
        timeout: float,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse, str]:
        """Send the request and read the response head; the caller reads the body and closes ``conn``."""
        query = dict(params or {})
        if self.datacenter:
            query["dc"] = self.datacenter
        if self.partition:
            query["partition"] = self.partition
        path_and_query = path + ("?" + urlencode(sorted(query.items())) if query else "")
        op_url = f'{method[:1]}{method[1:].lower()} "{self.endpoint.url(path_and_query)}"'
        conn = self._connection(timeout)
        try:
            with self._go_errors(op_url):
                conn.request(
                    method,
                    self.endpoint.prefix + path_and_query,
                    body=body if body is not None else (b"" if method == "PUT" else None),
                    headers={**self._headers(), **(headers or {})},
                )
                resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        return conn, resp, op_url

    @staticmethod
    @contextmanager
    def _go_errors(op_url: str) -> Iterator[None]:
        """A failed exchange as ClientError with the Go client's text."""
        try:
            yield
        except _DialError as err:
            raise ClientError(f"{op_url}: {err}") from None
        except TimeoutError:
            raise ClientError(
                f"{op_url}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ) from None
        except http.client.RemoteDisconnected:
            raise ClientError(f"{op_url}: EOF") from None
        except ssl.SSLError as err:
            raise ClientError(f"{op_url}: {err.reason or err}") from None
        except OSError as err:
            raise ClientError(f"{op_url}: read: {go_strerror(err)}") from None
        except http.client.HTTPException as err:
            raise ClientError(f"{op_url}: malformed HTTP response: {err}") from None

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.call("GET", path, params).ok().json()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.endpoint.scheme == "unix":
            return _UnixConnection(self.endpoint.address, timeout)
        if self.endpoint.scheme == "https":
            context = self.tls or ssl.create_default_context()
            conn: http.client.HTTPConnection = _TLSConnection(
                self.endpoint.address, context, self.tls_server_name, timeout
            )
        else:
            conn = http.client.HTTPConnection(self.endpoint.address, timeout=timeout)
        conn._create_connection = functools.partial(_dial, io_timeout=timeout)  # type: ignore[attr-defined]
        return conn

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "triumvir-cli"}
        if self.token:
            headers["X-Consul-Token"] = self.token
        if self.auth:
            headers["Authorization"] = "Basic " + base64.b64encode(self.auth.encode()).decode()
        return headers


def make_client(values: Mapping[str, Any]) -> AgentClient:
    """api.DefaultConfig (environment) overlaid with the HTTP flags that were given; raises ClientError."""
    addr = values.get("http-addr") or os.environ.get("CONSUL_HTTP_ADDR") or DEFAULT_HTTP_ADDR
    endpoint = parse_http_addr(addr, ssl_default=_env_bool("CONSUL_HTTP_SSL", False))
    token = values.get("token") or os.environ.get("CONSUL_HTTP_TOKEN", "")
    token_file = values.get("token-file") or os.environ.get("CONSUL_HTTP_TOKEN_FILE", "")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = go_trim(fh.read()) or token
        except OSError as err:
            raise ClientError(f"Error loading token file: {go_os_error('open', token_file, err)}") from None
    tls = _tls_context(values) if endpoint.scheme == "https" else None
    return AgentClient(
        endpoint=endpoint,
        token=token,
        datacenter=values.get("datacenter", ""),
        partition=values.get("partition") or os.environ.get("CONSUL_PARTITION", ""),
        auth=os.environ.get("CONSUL_HTTP_AUTH", ""),
        tls=tls,
        tls_server_name=values.get("tls-server-name") or os.environ.get("CONSUL_TLS_SERVER_NAME", ""),
    )


def _tls_context(values: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS settings of the HTTP flags / CONSUL_* variables, for an https:// agent."""
    cafile = values.get("ca-file") or os.environ.get("CONSUL_CACERT") or None
    capath = values.get("ca-path") or os.environ.get("CONSUL_CAPATH") or None
    try:
        context = ssl.create_default_context(cafile=cafile, capath=capath)
        cert = values.get("client-cert") or os.environ.get("CONSUL_CLIENT_CERT")
        key = values.get("client-key") or os.environ.get("CONSUL_CLIENT_KEY")
        if cert:
            context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as err:
        raise ClientError(f"Error loading TLS files: {err}") from None
    if not _env_bool("CONSUL_HTTP_SSL_VERIFY", True):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def path_escape(segment: str) -> str:
    """url.URL.EscapedPath for a path built by concatenation (Go keeps `$&+,/:;=@`, escapes `[`, `]`, spaces)."""
    return quote(to_bytes(segment), safe="$&+,/:;=@")  # argv's undecodable bytes are surrogate escapes
