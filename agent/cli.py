"""The `consul`-style command line: members, join, leave, force-leave, info, reload (consul-compat §4).

Scripts parse this output and test these exit codes, so everything user-visible imitates the Go CLI: Go's flag
syntax, the Go API client's error texts (`Get "<url>": dial tcp ...`, `Unexpected response code: ...`), and
columnize's table layout.  The agent is reached over HTTP with the stdlib only, so the CLI starts fast and works
without trio.  `main(argv)` takes the arguments after the program name, subcommand first.
"""

from __future__ import annotations

import base64
import functools
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from agent import consul
from agent.gostrings import go_quote, to_bytes
from agent.version import __version__

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
CONNECT_TIMEOUT = 5.0  # seconds to reach the agent: an unreachable agent must fail fast
IO_TIMEOUT = 30.0  # seconds for an answer: a graceful leave may take a few seconds to propagate
STATUS_WORDS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}
ALL_SEGMENTS = "_all"

# Go's unicode.IsSpace set, used by strings.TrimSpace (Python's str.strip also strips \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" + (
    "\u2028\u2029\u202f\u205f\u3000"
)


# --------------------------------------------------------------------------------------------------------------
# Output


def _out(text: str) -> None:
    """cli.Ui.Output: a line on stdout."""
    print(text, file=sys.stdout)


def _err(text: str) -> None:
    """cli.Ui.Error: a line on stderr."""
    print(text, file=sys.stderr)


def go_trim(text: str) -> str:
    """strings.TrimSpace."""
    return text.strip(_GO_SPACE)


def go_v(value: Any) -> str:
    """Go's %v of a decoded JSON value, for the few messages that print one (`map[a:1 b:[x y]]`)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_v(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_v(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def columnize(rows: Sequence[Sequence[str]], glue: str = "  ") -> str:
    """ryanuber/columnize: cells trimmed, every cell but a row's last padded to its column's widest, no final newline.

    Padding applies to empty middle cells too, so an `unknown` member's row keeps trailing spaces, as in Consul.
    """
    cells = [[go_trim(c) for c in row] for row in rows]
    widths: list[int] = []
    for row in cells:
        for i, cell in enumerate(row):
            if i == len(widths):
                widths.append(len(cell))
            else:
                widths[i] = max(widths[i], len(cell))
    lines = []
    for row in cells:
        head = "".join(cell.ljust(widths[i]) + glue for i, cell in enumerate(row[:-1]))
        lines.append(head + (row[-1] if row else ""))
    return "\n".join(lines)


def tcp_addr(addr: str, port: int) -> str:
    """Go's net.TCPAddr{IP: net.ParseIP(addr), Port: port}.String(): IPv6 in brackets, unparsable IP -> `:port`."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return f":{port}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"{ip.ipv4_mapped}:{port}"
        return f"[{ip.compressed}]:{port}"
    return f"{ip}:{port}"


# --------------------------------------------------------------------------------------------------------------
# Go flag parsing


class FlagError(Exception):
    """A flag-parse failure; str(err) is Go's message (`flag provided but not defined: -x`)."""


@dataclass(frozen=True)
class Flag:
    name: str
    help: str
    is_bool: bool = False
    default: str = ""
    placeholder: str = ""
    # Go's typed flags (Uint64Var, DurationVar, ...): converts the text or raises ValueError("parse error" or
    # "value out of range"); parse_flags then stores the converted value.
    convert: Callable[[str], Any] | None = None
    # flags.AppendSliceValue: each use appends; the value is the list of them in order.
    repeated: bool = False


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_flags(args: Sequence[str], flags: Sequence[Flag]) -> tuple[dict[str, Any], list[str]]:
    """Go's flag.FlagSet.Parse: `-f`/`--f`, `=value` or the next arg, stops at the first non-flag or `--`.

    Returns (values by flag name, only the flags that were given; the remaining positional args).
    """
    formal = {f.name: f for f in flags}
    values: dict[str, Any] = {}
    rest = list(args)
    while rest:
        s = rest[0]
        if len(s) < 2 or s[0] != "-":
            break
        dashes = 2 if s[1] == "-" else 1
        if s == "--":
            rest.pop(0)
            break
        name = s[dashes:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {s}")
        rest.pop(0)
        name, eq, value = name.partition("=")
        spec = formal.get(name)
        if spec is None:
            raise FlagError(f"flag provided but not defined: -{name}")
        if spec.is_bool:
            values[name] = _parse_bool(value, name) if eq else True
            continue
        if not eq:
            if not rest:
                raise FlagError(f"flag needs an argument: -{name}")
            value = rest.pop(0)
        if spec.convert is not None:
            try:
                values[name] = spec.convert(value)
            except ValueError as err:
                raise FlagError(f'invalid value "{value}" for flag -{name}: {err}') from None
            continue
        if spec.repeated:
            values.setdefault(name, []).append(value)
            continue
        values[name] = value
    return values, rest


def go_uint(text: str, bits: int = 64) -> int:
    """strconv.ParseUint(text, 0, bits), as flag.Uint64Var parses: 0x/0o/0b prefixes, a leading 0 is octal."""
    value = _go_base0(text)
    if value >= 1 << bits:
        raise ValueError("value out of range")
    return value


def go_int(text: str, bits: int = 64) -> int:
    """strconv.ParseInt(text, 0, bits), as flag.IntVar parses: an optional sign, then ParseUint's forms."""
    sign = -1 if text[:1] == "-" else 1
    value = sign * _go_base0(text[1:] if text[:1] in "+-" else text)
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError("value out of range")
    return value


# strconv's base-0 syntax: prefixed hex/octal/binary, a bare leading 0 for octal, underscores between digits.
_GO_BASE0 = re.compile(r"0[xX](_?[0-9a-fA-F])+|0[oO](_?[0-7])+|0[bB](_?[01])+|0(_?[0-7])*|[1-9](_?[0-9])*")


def _go_base0(text: str) -> int:
    if not _GO_BASE0.fullmatch(text):
        raise ValueError("parse error")
    if len(text) > 1 and text[0] == "0" and text[1] not in "xXoObB":
        text = "0o" + text[1:]  # Go's legacy octal, which Python's int(_, 0) refuses
    return int(text, 0)


def _parse_bool(value: str, name: str) -> bool:
    """strconv.ParseBool, with flag's error text."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')


# --------------------------------------------------------------------------------------------------------------
# Finding the agent and talking to it


class ClientError(Exception):
    """A failed API call; str(err) is what the Go API client's error would print.

    ``status`` is the HTTP status when the agent answered (None when the exchange itself failed).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


HTTP_FLAGS = (
    Flag(
        "http-addr",
        "The `address` and port of the Consul HTTP agent. The value can be an IP address or DNS address, "
        "but it must also include the port. This can also be specified via the CONSUL_HTTP_ADDR environment "
        "variable. The default value is http://127.0.0.1:8500. The scheme can also be set to HTTPS by "
        "setting the environment variable CONSUL_HTTP_SSL=true.",
        placeholder="<address>",
    ),
    Flag(
        "token", "ACL token to use in the request. Can also be specified via CONSUL_HTTP_TOKEN.", placeholder="<value>"
    ),
    Flag(
        "token-file",
        "File containing the ACL token to use in the request. Can also be specified via CONSUL_HTTP_TOKEN_FILE.",
        placeholder="<value>",
    ),
    Flag("ca-file", "Path to a CA file to use for TLS when communicating with Consul.", placeholder="<value>"),
    Flag("ca-path", "Path to a directory of CA certificates to use for TLS.", placeholder="<value>"),
    Flag("client-cert", "Path to a client cert file to use for TLS.", placeholder="<value>"),
    Flag("client-key", "Path to a client key file to use for TLS.", placeholder="<value>"),
    Flag("tls-server-name", "The server name to use as the SNI host when connecting via TLS.", placeholder="<value>"),
)
SERVER_FLAGS = (
    Flag("datacenter", "Name of the datacenter to query. Defaults to the agent's datacenter.", placeholder="<value>"),
    Flag("stale", "Permit any Consul server (non-leader) to respond to this request.", is_bool=True),
)
PARTITION_FLAG = (Flag("partition", "(Enterprise-only) Specifies the admin partition to query.", placeholder="<x>"),)


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
    value = os.environ.get(name, "")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return default


class _DialError(Exception):
    """The connection could not be made; str(err) is Go's `dial tcp ...` text."""


def _sockaddr_str(sockaddr: tuple[Any, ...]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _go_strerror(err: OSError) -> str:
    """syscall.Errno's text: strerror with a lower-case first letter (`connection refused`)."""
    text = os.strerror(err.errno) if err.errno else str(err)
    return text[:1].lower() + text[1:]


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
            first = first or f"dial tcp {_sockaddr_str(sockaddr)}: i/o timeout"
        except OSError as err:
            first = first or f"dial tcp {_sockaddr_str(sockaddr)}: connect: {_go_strerror(err)}"
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
            raise _DialError(f"dial unix {self.path}: connect: {_go_strerror(err)}") from None
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
            raise ClientError(f"{op_url}: read: {_go_strerror(err)}") from None
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
            raise ClientError(f"Error loading token file: open {token_file}: {_go_strerror(err)}") from None
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


# --------------------------------------------------------------------------------------------------------------
# Commands


@dataclass(frozen=True)
class Command:
    name: str
    synopsis: str
    usage: str  # first lines of the help text
    flags: tuple[Flag, ...]
    run: Callable[[dict[str, Any], list[str]], int]
    uses_server_flags: bool = False
    # A command like `kv`: its first argument names one of these, which then parses the rest (mitchellh/cli's
    # nested commands); without a known one the group's help is printed and the exit code is 1.
    subcommands: Mapping[str, Command] | None = None

    def help(self) -> str:
        """flags.Usage: the usage text, then HTTP API options, then the command's own options."""
        if self.subcommands:
            width = max(map(len, self.subcommands))
            lines = [f"    {n.ljust(width)}    {c.synopsis}" for n, c in sorted(self.subcommands.items())]
            return "\n".join([self.usage, "", "Subcommands:", *lines])
        http_names = {f.name for f in HTTP_FLAGS}
        server_names = {f.name for f in SERVER_FLAGS}
        parts = [self.usage]
        parts += _flag_section("HTTP API Options", HTTP_FLAGS)
        if self.uses_server_flags:
            parts += _flag_section("API Options", SERVER_FLAGS)
        own = [f for f in self.flags if f.name not in http_names | server_names]
        parts += _flag_section("Command Options", own)
        return "\n".join(parts)


def _flag_section(title: str, flags: Sequence[Flag]) -> list[str]:
    if not flags:
        return []
    lines = ["", title]
    for f in sorted(flags, key=lambda f: f.name):
        lines += ["", f"  -{f.name}" + ("" if f.is_bool else f"={f.placeholder or '<value>'}")]
        lines += textwrap.wrap(f.help, width=80, initial_indent="     ", subsequent_indent="     ")
    return lines


def _client_or_error(values: Mapping[str, Any]) -> AgentClient | None:
    try:
        return make_client(values)
    except ClientError as err:
        _err(f"Error connecting to Consul agent: {err}")
        return None


def _reached_agent(values: Mapping[str, Any]) -> tuple[AgentClient, str] | None:
    """A client and the agent's node name (``/v1/agent/self``): what Consul's lock, event, watch and maint ask
    first, to fail early with ``Error connecting to``/``Error querying Consul agent``; None after printing it."""
    client = _client_or_error(values)
    if client is None:
        return None
    try:
        answer = client.get_json("/v1/agent/self")
    except ClientError as err:
        _err(f"Error querying Consul agent: {err}")
        return None
    config = answer.get("Config") if isinstance(answer, Mapping) else None
    return client, str(config.get("NodeName", "")) if isinstance(config, Mapping) else ""


# ---- members


def members_rows(
    members: list[dict[str, Any]], status_re: re.Pattern[str], segment: str, detailed: bool
) -> list[list[str]]:
    """The members table as Consul's command/members builds it: tags completed, filtered, sorted; header first.

    Returns only the header when nothing matched (the caller then exits 2 without printing).
    """
    kept = []
    for raw in members:
        tags = dict(raw.get("Tags") or {})
        _synthesise_tags(tags, segment)
        member = {**raw, "Tags": tags}
        if status_re.search(_status_word(member)):
            kept.append(member)
    kept.sort(key=_member_sort_key)
    if detailed:
        header = ["Node", "Address", "Status", "Tags"]
        return [header] + [_detailed_row(m) for m in kept]
    header = ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]
    return [header] + [_standard_row(m) for m in kept]


def _synthesise_tags(tags: dict[str, str], segment: str) -> None:
    """Step 1 of consul-compat §4.2: `ap=default`; `segment=<all>` for servers, `<default>` when empty."""
    if not tags.get("ap"):
        tags["ap"] = "default"
    if tags["ap"] == "default":
        if segment == ALL_SEGMENTS and tags.get("role") == "consul":
            tags["segment"] = "<all>"
        elif not tags.get("segment"):
            tags["segment"] = "<default>"
    else:
        tags["segment"] = ""


def _status_word(member: Mapping[str, Any]) -> str:
    return STATUS_WORDS.get(member.get("Status", 0), "unknown")


def _member_sort_key(member: Mapping[str, Any]) -> tuple[bool, bool, str, str, str]:
    """ByMemberNamePartitionAndSegment: servers, default partition, segment, partition, name (byte order)."""
    tags = member["Tags"]
    partition = tags.get("ap", "")
    return (
        tags.get("role") != "consul",
        partition not in ("", "default"),
        tags.get("segment", ""),
        partition,
        member.get("Name", ""),
    )


def _address(member: Mapping[str, Any]) -> str:
    return tcp_addr(member.get("Addr") or "", int(member.get("Port") or 0))


def _standard_row(member: Mapping[str, Any]) -> list[str]:
    tags = member["Tags"]
    kind = {"consul": "server", "node": "client"}.get(tags.get("role", ""), "unknown")
    row = [member.get("Name", ""), _address(member), _status_word(member), kind]
    if kind == "unknown":
        return [*row, "", "", "", "", ""]
    build = tags.get("build", "")
    build = build.split(":", 1)[0] if build else "< 0.3"
    return [*row, build, tags.get("vsn", ""), tags.get("dc", ""), tags.get("ap", ""), tags.get("segment", "")]


def _detailed_row(member: Mapping[str, Any]) -> list[str]:
    tags = member["Tags"]
    joined = ",".join(f"{k}={tags[k]}" for k in sorted(tags))
    return [member.get("Name", ""), _address(member), _status_word(member), joined]


def run_members(values: dict[str, Any], args: list[str]) -> int:
    """`consul members`: GET /v1/agent/members?segment=_all, table on stdout, exit 2 when nothing matches."""
    try:
        status_re = re.compile(values.get("status", ".*"))
    except re.error as err:
        _err(f"Failed to compile status regexp: error parsing regexp: {err}: `{values.get('status')}`")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    segment = values.get("segment", ALL_SEGMENTS)
    params = {"segment": segment}
    if values.get("wan"):
        params["wan"] = "1"
    if values.get("filter"):
        params["filter"] = values["filter"]
    try:
        members = client.get_json("/v1/agent/members", params) or []
        if not isinstance(members, list):
            raise ClientError("json: cannot unmarshal object into Go value of type []*api.AgentMember")
    except ClientError as err:
        _err(f"Error retrieving members: {err}")
        return 1
    rows = members_rows(members, status_re, segment, bool(values.get("detailed")))
    if len(rows) == 1:
        return 2
    _out(columnize(rows))
    return 0


# ---- join


def run_join(values: dict[str, Any], args: list[str]) -> int:
    """`consul join`: one PUT per address; N counts the addresses that succeeded; exit 1 only if none did."""
    if not args:
        _err("At least one address to join must be specified.")
        _err("")
        _err(COMMANDS["join"].help())
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    params = {"wan": "1"} if values.get("wan") else None
    joins = 0
    for addr in args:
        try:
            client.request("PUT", "/v1/agent/join/" + path_escape(addr), params)
        except ClientError as err:
            _err(f"Error joining address '{addr}': {err}")
        else:
            joins += 1
    if joins == 0:
        _err("Failed to join any nodes.")
        return 1
    _out(f"Successfully joined cluster by contacting {joins} nodes.")
    return 0


def path_escape(segment: str) -> str:
    """url.URL.EscapedPath for a path built by concatenation (Go keeps `$&+,/:;=@`, escapes `[`, `]`, spaces)."""
    return quote(to_bytes(segment), safe="$&+,/:;=@")  # argv's undecodable bytes are surrogate escapes


# ---- leave / force-leave / reload


def run_leave(values: dict[str, Any], args: list[str]) -> int:
    """`consul leave`: PUT /v1/agent/leave; the agent leaves gracefully and exits."""
    if args:
        _err(f"Error found unexpected args: {go_v(args)}")
        _out(COMMANDS["leave"].help())
        return 1
    return _simple_put(values, "/v1/agent/leave", None, "Error leaving", "Graceful leave complete")


def run_force_leave(values: dict[str, Any], args: list[str]) -> int:
    """`consul force-leave [-prune] [-wan] NODE`: no output on success."""
    if len(args) != 1:
        _err("A single node name must be specified to force leave.")
        _err("")
        _err(COMMANDS["force-leave"].help())
        return 1
    params = {}
    if values.get("prune"):
        params["prune"] = "1"
    if values.get("wan"):
        params["wan"] = "1"
    path = "/v1/agent/force-leave/" + path_escape(args[0])
    return _simple_put(values, path, params, "Error force leaving", None)


def run_reload(values: dict[str, Any], args: list[str]) -> int:
    """`consul reload`: PUT /v1/agent/reload (the agent re-reads its config files, as on SIGHUP)."""
    return _simple_put(values, "/v1/agent/reload", None, "Error reloading", "Configuration reload triggered")


def _simple_put(
    values: Mapping[str, Any], path: str, params: Mapping[str, str] | None, fail: str, ok: str | None
) -> int:
    client = _client_or_error(values)
    if client is None:
        return 1
    try:
        client.request("PUT", path, params)
    except ClientError as err:
        _err(f"{fail}: {err}")
        return 1
    if ok is not None:
        _out(ok)
    return 0


# ---- maint


def run_maint(values: dict[str, Any], args: list[str]) -> int:
    """`consul maint [-enable|-disable] [-reason R] [-service ID]`: without an action, list what is in maintenance."""
    enable, disable = bool(values.get("enable")), bool(values.get("disable"))
    reason, service_id = values.get("reason", ""), values.get("service", "")
    if enable and disable:
        _err("Only one of -enable or -disable may be provided")
        return 1
    if not enable and reason:
        _err("Reason may only be provided with -enable")
        return 1
    if not enable and not disable and service_id:
        _err("Service requires either -enable or -disable")
        return 1
    reached = _reached_agent(values)
    if reached is None:
        return 1
    client, node_name = reached
    if not enable and not disable:
        try:
            checks = client.get_json("/v1/agent/checks")
        except ClientError as err:
            _err(f"Error getting checks: {err}")
            return 1
        for check_id in sorted(checks or {}):
            check = checks[check_id]
            if check_id == "_node_maintenance":
                _out("Node:\n  Name:   " + node_name + "\n  Reason: " + str(check.get("Notes", "")) + "\n")
            elif check_id.startswith("_service_maintenance:"):
                _out("Service:\n  ID:     " + str(check.get("ServiceID", "")) + "\n  Reason: "
                     + str(check.get("Notes", "")) + "\n")  # fmt: skip
        return 0
    action = "enabl" if enable else "disabl"
    params = {"enable": "true" if enable else "false"}
    if enable:
        params["reason"] = reason
    if service_id:
        path, what = "/v1/agent/service/maintenance/" + path_escape(service_id), "service"
    else:
        path, what = "/v1/agent/maintenance", "node"
    try:
        client.request("PUT", path, params)
    except ClientError as err:
        _err(f"Error {action}ing {what} maintenance: {err}")
        return 1
    if service_id:
        _out(f"Service maintenance is now {action}ed for {go_quote(service_id)}")
    else:
        _out(f"Node maintenance is now {action}ed")
    return 0


# ---- monitor


def run_monitor(values: dict[str, Any], args: list[str]) -> int:
    """`consul monitor [-log-level L] [-log-json]`: the agent's log lines as they happen, until Ctrl-C (exit 0)
    or until the agent ends the stream (exit 1, Consul's "Remote side ended the monitor!")."""
    client = _client_or_error(values)
    if client is None:
        return 1
    params = {"loglevel": values.get("log-level") or "INFO"}
    if values.get("log-json"):
        params["logjson"] = "true"
    lines = client.stream_lines("/v1/agent/monitor", params)
    try:
        try:
            first = next(lines, None)
        except ClientError as err:
            _err(f"Error starting monitor: {err}")
            return 1
        if first is not None:
            print(first, flush=True)
            try:
                for line in lines:
                    print(line, flush=True)
            except ClientError:
                pass  # the connection broke: the remote side ended the monitor
    except KeyboardInterrupt:
        return 0
    finally:
        lines.close()
    _out("")
    _out("Remote side ended the monitor! This usually means that the\nremote side has exited or crashed.")
    return 1


# ---- info


def run_info(values: dict[str, Any], args: list[str]) -> int:
    """`consul info`: the Stats of /v1/agent/self, sections and keys sorted, `\\tkey = value`."""
    client = _client_or_error(values)
    if client is None:
        return 1
    try:
        self_doc = client.get_json("/v1/agent/self")
        if not isinstance(self_doc, dict):
            raise ClientError("json: cannot unmarshal into Go value of type map[string]map[string]interface {}")
    except ClientError as err:
        _err(f"Error querying agent: {err}")
        return 1
    if "Stats" not in self_doc:
        _err(f"Agent response did not contain 'Stats' key: {go_v(self_doc)}")
        return 1
    stats = self_doc["Stats"] or {}
    for key in sorted(stats):
        _out(key + ":")
        section = stats[key]
        if not isinstance(section, dict):
            _err("Got invalid subkey in stats: map[]")
            return 1
        for sub in sorted(section):
            _out(f"\t{sub} = {go_v(section[sub])}")
    return 0


# ---- keyring / keygen


def run_keyring(values: dict[str, Any], args: list[str]) -> int:
    """`consul keyring -list | -list-primary | -install KEY | -use KEY | -remove KEY` (command/keyring)."""
    actions = [name for name in ("list", "list-primary") if values.get(name)]
    actions += [name for name in ("install", "use", "remove") if values.get(name)]
    if len(actions) > 1:
        _err("Only a single action is allowed")
        return 1
    if not actions:
        _err(COMMANDS["keyring"].help())
        return 1
    try:
        relay = int(values.get("relay-factor", "0") or "0")
    except ValueError:
        _err(f"invalid value {values.get('relay-factor')!r} for flag -relay-factor: parse error")
        return 1
    if not 0 <= relay <= 5:
        _err("Error parsing relay factor: Relay factor must be in range: [0, 5]")
        return 1
    local_only = bool(values.get("local-only"))
    if local_only and actions[0] != "list":
        _err("Error validating local-only: local-only can only be set for list requests")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    params = {"relay-factor": str(relay)} if relay else {}
    action = actions[0]
    try:
        if action in ("list", "list-primary"):
            if local_only:
                params["local-only"] = "true"
            primary = action == "list-primary"
            _out(f"==> Gathering installed {'primary ' if primary else ''}encryption keys...")
            responses = client.get_json("/v1/operator/keyring", params)
            for response in responses or []:
                _out(_format_keyring(response, response.get("PrimaryKeys" if primary else "Keys") or {}))
            return 0
        method, banner = {
            "install": ("POST", "==> Installing new gossip encryption key..."),
            "use": ("PUT", "==> Changing primary gossip encryption key..."),
            "remove": ("DELETE", "==> Removing gossip encryption key..."),
        }[action]
        _out(banner)
        client.request(method, "/v1/operator/keyring", params, json.dumps({"Key": values[action]}).encode())
    except ClientError as err:
        _err(f"error: {err}")
        return 1
    return 0


def _format_keyring(response: Mapping[str, Any], keys: Mapping[str, int]) -> str:
    """command/keyring formatResponse: a blank line, the pool, member messages, then `  KEY [n/N]` per key."""
    pool = "WAN" if response.get("WAN") else f"{response.get('Datacenter', '')} (LAN)"
    if response.get("Segment") and not response.get("WAN"):
        pool += f" [{response['Segment']}]"
    lines = ["", pool + ":"]
    lines += [f"  {node}: {msg}" for node, msg in sorted((response.get("Messages") or {}).items())]
    lines += [f"  {key} [{num}/{response.get('NumNodes', 0)}]" for key, num in sorted(keys.items())]
    return "\n".join(lines)


def run_keygen(values: dict[str, Any], args: list[str]) -> int:
    """`consul keygen`: 32 random bytes, base64 (an AES-256 gossip key)."""
    if args:
        _err("Error: keygen takes no arguments")
        return 1
    _out(base64.b64encode(os.urandom(32)).decode())
    return 0


KEYRING_FLAGS = (
    Flag("install", "Install a new encryption key. This will broadcast the new key to all members in the "
         "cluster.", placeholder="<string>"),
    Flag("use", "Change the primary encryption key, which is used to encrypt messages. The key must already "
         "be installed before this operation can succeed.", placeholder="<string>"),
    Flag("remove", "Remove the given key from the cluster. This operation may only be performed on keys which "
         "are not currently the primary key.", placeholder="<string>"),
    Flag("list", "List all keys currently in use within the cluster.", is_bool=True),
    Flag("list-primary", "List all primary keys currently in use within the cluster.", is_bool=True),
    Flag("relay-factor", "Setting this to a non-zero value will cause nodes to relay their response to the "
         "operation through this many randomly-chosen other nodes in the cluster. The maximum allowed value is "
         "5.", default="0", placeholder="<int>"),
    Flag("local-only", "Setting this to true will force the keyring query to only hit local servers (no WAN "
         "traffic). This flag can only be set for list queries.", is_bool=True),
)  # fmt: skip


# ---- operator raft


def run_operator(values: dict[str, Any], args: list[str]) -> int:
    """`consul operator raft list-peers | remove-peer`: the subcommands are commands of their own."""
    sub = OPERATOR_RAFT_COMMANDS.get(" ".join(args[:2]))
    if sub is None:
        _err(COMMANDS["operator"].help())
        return 1
    given = [f"-{name}" if value is True else f"-{name}={value}" for name, value in values.items()]
    return run_command(sub, [*given, *args[2:]])


def raft_peer_rows(config: Mapping[str, Any]) -> list[list[str]]:
    """command/operator/raft/listpeers: Node, ID, Address, State, Voter, RaftProtocol; header first."""
    rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]]
    for s in config.get("Servers") or []:
        state = "leader" if s.get("Leader") else "follower"
        rows.append([str(s.get("Node", "")), str(s.get("ID", "")), str(s.get("Address", "")), state,
                     "true" if s.get("Voter") else "false", str(s.get("ProtocolVersion") or "<=1")])
    return rows


def run_list_peers(values: dict[str, Any], args: list[str]) -> int:
    client = _client_or_error(values)
    if client is None:
        return 1
    try:
        config = client.get_json("/v1/operator/raft/configuration", {"stale": ""} if values.get("stale") else {})
    except ClientError as err:
        _err(f"Error getting peers: {err}")
        return 1
    _out(columnize(raft_peer_rows(config or {})))
    return 0


def run_remove_peer(values: dict[str, Any], args: list[str]) -> int:
    address, server_id = values.get("address", ""), values.get("id", "")
    if not address and not server_id:
        _err("Error removing peer: an address or id is required for the peer to remove")
        return 1
    if address and server_id:
        _err("Error removing peer: cannot give both an address and id")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    params = {"id": server_id} if server_id else {"address": address}
    try:
        client.request("DELETE", "/v1/operator/raft/peer", params)
    except ClientError as err:
        _err(f"Error removing peer: {err}")
        return 1
    _out(f'Removed peer with id "{server_id}"' if server_id else f'Removed peer with address "{address}"')
    return 0


OPERATOR_RAFT_COMMANDS: dict[str, Command] = {
    "raft list-peers": Command(
        "list-peers",
        "Display the current Raft peer configuration",
        "Usage: consul operator raft list-peers [options]\n\n  Displays the current Raft peer configuration.",
        (*HTTP_FLAGS, Flag("stale", "If this flag is set, any server can service the request and return the "
                                    "peer list (ours: the leader still answers).", is_bool=True)),
        run_list_peers,
    ),
    "raft remove-peer": Command(
        "remove-peer",
        "Remove a Consul server from the Raft configuration",
        "Usage: consul operator raft remove-peer [options]\n\n"
        "  Remove the Consul server with given -id from the Raft configuration.",
        (*HTTP_FLAGS,
         Flag("address", "Remove a Consul server with given address from the Raft configuration.",
              placeholder="<string>"),
         Flag("id", "Remove a Consul server with given id from the Raft configuration.", placeholder="<string>")),
        run_remove_peer,
    ),
}


# ---- the command table, help, version


MEMBERS_FLAGS = (
    Flag("detailed", "Provides detailed information about nodes.", is_bool=True),
    Flag("wan", "If the agent is in server mode, this can be used to return the other peers in the WAN pool.", True),
    Flag(
        "status",
        "If provided, output is filtered to only nodes matching the regular expression for status.",
        default=".*",
        placeholder="<string>",
    ),
    Flag(
        "segment",
        "(Enterprise-only) If provided, output is filtered to only nodes in the given segment.",
        default=ALL_SEGMENTS,
        placeholder="<string>",
    ),
    Flag("filter", "Filter to use with the request", placeholder="<string>"),
)

COMMANDS: dict[str, Command] = {
    "members": Command(
        "members",
        "Lists the members of a Consul cluster",
        "Usage: consul members [options]\n\n  Outputs the members of a running Consul agent.",
        HTTP_FLAGS + PARTITION_FLAG + MEMBERS_FLAGS,
        run_members,
    ),
    "join": Command(
        "join",
        "Tell Consul agent to join cluster",
        "Usage: consul join [options] address ...\n\n"
        '  Tells a running Consul agent (with "consul agent") to join the cluster\n'
        "  by specifying at least one existing member.",
        (*HTTP_FLAGS, Flag("wan", "Joins a server to another server in the WAN pool.", is_bool=True)),
        run_join,
    ),
    "leave": Command(
        "leave",
        "Gracefully leaves the Consul cluster and shuts down",
        "Usage: consul leave [options]\n\n  Causes the agent to gracefully leave the Consul cluster and shutdown.",
        HTTP_FLAGS,
        run_leave,
    ),
    "force-leave": Command(
        "force-leave",
        'Forces a member of the cluster to enter the "left" state',
        "Usage: consul force-leave [options] name\n\n"
        '  Forces a member of a Consul cluster to enter the "left" state. Note\n'
        "  that if the member is still actually alive, it will eventually rejoin\n"
        '  the cluster. This command is most useful for cleaning out "failed" nodes\n'
        "  that are never coming back. If you do not force leave a failed node,\n"
        "  Consul will attempt to reconnect to those failed nodes for some period of\n"
        "  time before eventually reaping them.",
        (
            *HTTP_FLAGS,
            *SERVER_FLAGS,
            Flag("prune", "Remove agent completely from list of members", is_bool=True),
            Flag("wan", "Exclude agent from the WAN list of members", is_bool=True),
        ),
        run_force_leave,
        uses_server_flags=True,
    ),
    "info": Command(
        "info",
        "Provides debugging information for operators.",
        "Usage: consul info [options]\n\n  Provides debugging information for operators",
        HTTP_FLAGS,
        run_info,
    ),
    "keyring": Command(
        "keyring",
        "Manages gossip layer encryption keys",
        "Usage: consul keyring [options]\n\n"
        "  Manages encryption keys used for gossip messages. Gossip encryption is\n"
        "  optional. When enabled, this command may be used to examine active encryption\n"
        "  keys in the cluster, add new keys, and remove old ones. When combined, this\n"
        "  functionality provides the ability to perform key rotation cluster-wide,\n"
        "  without disrupting the cluster.\n\n"
        "  All operations performed by this command can only be run against server nodes\n"
        "  in Consul; this agent answers them on any node.\n\n"
        "  All variations of the keyring command return 0 if all nodes reply and there\n"
        "  are no errors. If any node fails to reply or reports failure, the exit code\n"
        "  will be 1.",
        (*HTTP_FLAGS, *KEYRING_FLAGS),
        run_keyring,
    ),
    "maint": Command(
        "maint",
        "Controls node or service maintenance mode",
        "Usage: consul maint [options]\n\n"
        "  Places a node or service into maintenance mode. During maintenance mode,\n"
        "  the node or service will be excluded from all queries through the DNS\n"
        "  or API interfaces, effectively taking it out of the pool of available\n"
        "  nodes. This is done by registering an additional critical health check.\n\n"
        "  When enabling maintenance mode for a node or service, you may optionally\n"
        '  specify a reason string. This string will appear in the "Notes" field\n'
        "  of the critical health check which is registered against the node or\n"
        "  service. If no reason is provided, a default value will be used.\n\n"
        "  Maintenance mode is persistent, and will be restored in the event of an\n"
        "  agent restart. It is therefore required to disable maintenance mode on\n"
        "  a given node or service before it will be placed back into the pool.\n\n"
        "  By default, we operate on the node as a whole. By specifying the\n"
        '  "-service" argument, this behavior can be changed to enable or disable\n'
        "  only a specific service.\n\n"
        "  If no arguments are given, the agent's maintenance status will be shown.\n"
        "  This will return blank if nothing is currently under maintenance.",
        (
            *HTTP_FLAGS,
            Flag("enable", "Enable maintenance mode.", is_bool=True),
            Flag("disable", "Disable maintenance mode.", is_bool=True),
            Flag("reason", "Text describing the maintenance reason.", placeholder="<string>"),
            Flag("service", "Control maintenance mode for a specific service ID.", placeholder="<string>"),
        ),
        run_maint,
    ),
    "monitor": Command(
        "monitor",
        "Stream logs from a Consul agent",
        "Usage: consul monitor [options]\n\n"
        "  Shows recent log messages of a Consul agent, and attaches to the agent,\n"
        "  outputting log messages as they occur in real time. The monitor lets you\n"
        "  listen for log levels that may be filtered out of the Consul agent. For\n"
        "  example your agent may only be logging at INFO level, but with the monitor\n"
        "  you can see the DEBUG level logs.",
        (
            *HTTP_FLAGS,
            Flag("log-level", "Log level of the agent.", default="INFO", placeholder="<string>"),
            Flag("log-json", "Output logs in JSON format.", is_bool=True),
        ),
        run_monitor,
    ),
    "keygen": Command(
        "keygen",
        "Generates a new encryption key",
        "Usage: consul keygen\n\n"
        "  Generates a new 32-byte encryption key that can be used to configure the\n"
        "  agent to encrypt traffic. The output of this command is already\n"
        "  in the proper format that the agent expects.",
        (),
        run_keygen,
    ),
    "operator": Command(
        "operator",
        "Provides cluster-level tools for Consul operators",
        "Usage: consul operator <subcommand> [options]\n\n"
        "  Provides cluster-level tools for Consul operators:\n\n"
        "      raft list-peers     Display the current Raft peer configuration\n"
        "      raft remove-peer    Remove a Consul server from the Raft configuration",
        HTTP_FLAGS,
        run_operator,
    ),
    "reload": Command(
        "reload",
        "Triggers the agent to reload configuration files",
        "Usage: consul reload\n\n"
        "  Causes the agent to reload configurations. This can be used instead\n"
        "  of sending the SIGHUP signal to the agent.",
        HTTP_FLAGS,
        run_reload,
    ),
}

# Listed by `help` but run elsewhere (agent/__main__.py) or right here (version).
OTHER_SYNOPSES = {"agent": "Runs a Consul agent", "version": "Prints the Consul version"}
HELP_ARGS = ("-h", "-help", "--help")
VERSION_ARGS = ("version", "-v", "-version", "--version")


def prog_name() -> str:
    """How the user called us: `python -m agent`, `triumvir`, or whatever the script is named."""
    arg0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m agent" if arg0 in ("", "-c", "-m", "__main__.py") else arg0


def usage(prog: str | None = None, commands: Mapping[str, Command] | None = None) -> str:
    """The top-level help, laid out as mitchellh/cli's BasicHelpFunc does."""
    prog = prog or prog_name()
    commands = COMMANDS if commands is None else commands
    synopses = {**OTHER_SYNOPSES, **{name: c.synopsis for name, c in commands.items()}}
    width = max(map(len, synopses))
    lines = [f"Usage: {prog} [--version] [--help] <command> [<args>]", "", "Available commands are:"]
    lines += [f"    {name.ljust(width)}    {synopses[name]}" for name in sorted(synopses)]
    return "\n".join(lines)


def version_text() -> str:
    """`consul version`: the lines consul prints, with triumvir's version where Consul's would be."""
    lines = [
        f"Consul v{consul.CONSUL_VERSION}",
        f"Revision {consul.REVISION}",
        "Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking"
        " to compatible agents)",
        f"triumvir v{__version__}",
    ]
    return "\n".join(lines)


def run_command(command: Command, args: list[str]) -> int:
    """Parse the command's flags as Go does (a help flag anywhere before `--` prints its help), then run it."""
    if command.subcommands is not None:
        sub = command.subcommands.get(args[0]) if args else None
        if sub is not None:
            return run_command(sub, args[1:])
        if not any(a in HELP_ARGS for a in args):
            _out(command.help())
            return 1
    before_dashdash = args[: args.index("--")] if "--" in args else args
    if any(a in HELP_ARGS for a in before_dashdash):
        _out(command.help())
        return 0
    try:
        values, rest = parse_flags(args, command.flags)
    except FlagError as err:
        _err(str(err))
        _err(command.help())
        return 1
    return command.run(values, rest)


def main(argv: list[str], commands: Mapping[str, Command] | None = None) -> int:
    """Run `<subcommand> [args]`; `help`/`-h` and `version` too.  Unknown subcommands exit 127 as consul's.

    ``commands`` is the whole table: COMMANDS here, plus the commands of modules built on this one (kv, lock),
    which agent/__main__.py adds.
    """
    commands = COMMANDS if commands is None else commands
    if not argv or argv[0] in ("help", *HELP_ARGS):
        _out(usage(commands=commands))
        return 0
    if argv[0] in VERSION_ARGS:
        _out(version_text())
        return 0
    command = commands.get(argv[0])
    if command is None:
        _err(usage(commands=commands))
        return 127
    return run_command(command, argv[1:])
