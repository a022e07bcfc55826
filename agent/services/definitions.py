"""Service and check definitions: parsed and validated from config files or agent API bodies (pure).

Two dialects of one schema (consul-compat §1.2.9, §5.6):

- **API** bodies (``PUT /v1/agent/service/register``, ``/v1/agent/check/register``) are decoded as Go's
  ``encoding/json`` with ``DisallowUnknownFields``: keys match the PascalCase field names case-insensitively,
  plus a few explicit snake_case aliases; any other key is ``Request decode failed: json: unknown field "k"``.
- **Config** definitions use snake_case keys (the PascalCase names are accepted too, as Consul's key
  translation does); errors name the key path (``check.interval``) and the config layer adds the file.

Validation messages are Consul's (``Invalid check: ...``, ``Missing service name``...).  A
:class:`DefinitionError` carries the HTTP status Consul answers with.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from agent.durations import parse_duration
from agent.gostrings import valid_utf8

__all__ = [
    "CheckDef",
    "DefinitionError",
    "ServiceDef",
    "parse_check",
    "parse_service",
    "script_refusal",
]

STATUSES = ("passing", "warning", "critical")
MIN_INTERVAL = 1.0
DEFAULT_HTTP_TIMEOUT = 10.0
DEFAULT_TCP_TIMEOUT = 10.0
DEFAULT_SCRIPT_TIMEOUT = 30.0
OUTPUT_MAX_SIZE = 4096
_META_KEY = re.compile(r"[A-Za-z0-9_-]+")


class DefinitionError(ValueError):
    """A definition Consul refuses; ``status`` is the HTTP status of the refusal (400, or 500 for scripts)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# ------------------------------------------------------------------ the records


@attrs.frozen
class CheckDef:
    """One health check definition (durations in seconds, 0 = unset)."""

    id: str
    name: str
    service_id: str = ""
    notes: str = ""
    status: str = "critical"
    ttl: float = 0.0
    http: str = ""
    method: str = ""
    header: tuple[tuple[str, tuple[str, ...]], ...] = ()
    body: str = ""
    tls_skip_verify: bool = False
    tls_server_name: str = ""
    tcp: str = ""
    args: tuple[str, ...] = ()
    interval: float = 0.0
    timeout: float = 0.0
    deregister_critical_service_after: float = 0.0
    output_max_size: int = OUTPUT_MAX_SIZE
    other_kind: str = ""  # udp/grpc/h2ping/docker/alias/os_service: accepted, not run by this agent

    @property
    def kind(self) -> str:
        """Consul's check ``Type``: ttl, http, tcp, script, or the unsupported kind's name."""
        if self.ttl:
            return "ttl"
        if self.http:
            return "http"
        if self.tcp:
            return "tcp"
        if self.args:
            return "script"
        return self.other_kind

    @property
    def effective_timeout(self) -> float:
        if self.timeout > 0:
            return self.timeout
        return DEFAULT_SCRIPT_TIMEOUT if self.kind == "script" else DEFAULT_HTTP_TIMEOUT

    @property
    def effective_interval(self) -> float:
        return max(self.interval, MIN_INTERVAL) if self.interval > 0 else 0.0


@attrs.frozen
class ServiceDef:
    """One service definition; ``checks`` are its checks with IDs, names and ServiceID filled in."""

    id: str
    name: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: tuple[tuple[str, str], ...] = ()
    weights_passing: int = 1
    weights_warning: int = 1
    enable_tag_override: bool = False
    kind: str = ""
    tagged_addresses: tuple[tuple[str, str, int], ...] = ()
    checks: tuple[CheckDef, ...] = ()


# ------------------------------------------------------------------ key tables

# attribute -> (Go field name, snake alias accepted by the API or None)
_SERVICE_FIELDS: dict[str, tuple[str, str | None]] = {
    "id": ("ID", None),
    "name": ("Name", None),
    "tags": ("Tags", None),
    "address": ("Address", None),
    "port": ("Port", None),
    "meta": ("Meta", None),
    "enable_tag_override": ("EnableTagOverride", "enable_tag_override"),
    "weights": ("Weights", None),
    "tagged_addresses": ("TaggedAddresses", "tagged_addresses"),
    "check": ("Check", None),
    "checks": ("Checks", None),
    "kind": ("Kind", None),
    "proxy": ("Proxy", None),
    "connect": ("Connect", None),
    "socket_path": ("SocketPath", None),
    "locality": ("Locality", None),
    "token": ("Token", None),
    "namespace": ("Namespace", None),
    "partition": ("Partition", None),
}
_CHECK_FIELDS: dict[str, tuple[str, str | None]] = {
    "id": ("ID", None),
    "check_id": ("CheckID", None),
    "name": ("Name", None),
    "notes": ("Notes", None),
    "status": ("Status", None),
    "service_id": ("ServiceID", "service_id"),
    "args": ("ScriptArgs", "args"),
    "interval": ("Interval", None),
    "timeout": ("Timeout", None),
    "ttl": ("TTL", None),
    "http": ("HTTP", None),
    "method": ("Method", None),
    "header": ("Header", None),
    "body": ("Body", None),
    "tcp": ("TCP", None),
    "udp": ("UDP", None),
    "grpc": ("GRPC", None),
    "grpc_use_tls": ("GRPCUseTLS", "grpc_use_tls"),
    "tls_server_name": ("TLSServerName", "tls_server_name"),
    "tls_skip_verify": ("TLSSkipVerify", "tls_skip_verify"),
    "docker_container_id": ("DockerContainerID", "docker_container_id"),
    "shell": ("Shell", None),
    "alias_node": ("AliasNode", None),
    "alias_service": ("AliasService", None),
    "h2ping": ("H2PING", None),
    "h2ping_use_tls": ("H2PingUseTLS", "h2ping_use_tls"),
    "os_service": ("OSService", None),
    "success_before_passing": ("SuccessBeforePassing", None),
    "failures_before_warning": ("FailuresBeforeWarning", None),
    "failures_before_critical": ("FailuresBeforeCritical", None),
    "deregister_critical_service_after": ("DeregisterCriticalServiceAfter", "deregister_critical_service_after"),
    "output_max_size": ("OutputMaxSize", None),
    "token": ("Token", None),
    "namespace": ("Namespace", None),
    "partition": ("Partition", None),
    "definition": ("Definition", None),
}
_SNAKE_EXTRA = {"script_args": "args"}


def _key_table(fields: dict[str, tuple[str, str | None]], api: bool) -> dict[str, str]:
    table: dict[str, str] = {}
    for attr, (go, alias) in fields.items():
        table[go.lower()] = attr
        if api:
            if alias:
                table[alias] = attr
        else:
            table[attr] = attr
    table.update(_SNAKE_EXTRA)
    return table


_KEYS = {
    ("service", True): _key_table(_SERVICE_FIELDS, True),
    ("service", False): _key_table(_SERVICE_FIELDS, False),
    ("check", True): _key_table(_CHECK_FIELDS, True),
    ("check", False): _key_table(_CHECK_FIELDS, False),
}


class _Reader:
    """Reads one raw object against a key table; type errors and unknown keys in the dialect's words."""

    def __init__(self, raw: Any, kind: str, api: bool, path: str) -> None:
        self.api = api
        self.path = path
        if not isinstance(raw, Mapping):
            raise self.type_error(path or kind, "object", raw)
        table = _KEYS[(kind, api)]
        self.values: dict[str, Any] = {}
        for key, value in raw.items():
            attr = table.get(key) or table.get(str(key).lower())
            if attr is None:
                if api:
                    raise DefinitionError(f'Request decode failed: json: unknown field "{key}"')
                raise DefinitionError(f"invalid config key {self._name(key)}")
            if attr in self.values and value is None:
                continue
            self.values[attr] = value

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def type_error(self, name: str, expected: str, value: Any) -> DefinitionError:
        got = type(value).__name__
        if self.api:
            return DefinitionError(f"Request decode failed: json: cannot unmarshal {got} into Go value of type "
                                   f"{expected}")  # fmt: skip
        return DefinitionError(f"{name}: expected {expected}, got {got}")

    def has(self, attr: str) -> bool:
        return self.values.get(attr) is not None

    def string(self, attr: str, default: str = "") -> str:
        value = self.values.get(attr)
        if value is None:
            return default
        if not isinstance(value, str):
            if not self.api and isinstance(value, int | float) and not isinstance(value, bool):
                return str(value)
            raise self.type_error(self._name(attr), "string", value)
        return value

    def integer(self, attr: str, default: int = 0) -> int:
        value = self.values.get(attr)
        if value is None:
            return default
        if isinstance(value, bool):
            raise self.type_error(self._name(attr), "int", value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not self.api and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise self.type_error(self._name(attr), "int", value)

    def boolean(self, attr: str) -> bool:
        value = self.values.get(attr)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if not self.api and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise self.type_error(self._name(attr), "bool", value)

    def strings(self, attr: str) -> tuple[str, ...]:
        value = self.values.get(attr)
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.type_error(self._name(attr), "[]string", value)
        return tuple(value)

    def string_map(self, attr: str) -> dict[str, str]:
        value = self.values.get(attr)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise self.type_error(self._name(attr), "map[string]string", value)
        return {str(k): v for k, v in value.items()}

    def duration(self, attr: str) -> float:
        """A Go duration string, or a number of nanoseconds (Go's time.Duration in JSON)."""
        value = self.values.get(attr)
        if value is None or value == "":
            return 0.0
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) / 1e9
        if not isinstance(value, str):
            raise self.type_error(self._name(attr), "time.Duration", value)
        try:
            return parse_duration(value)
        except ValueError as exc:
            if self.api:
                raise DefinitionError(f"Request decode failed: {exc}") from None
            raise DefinitionError(f"{self._name(attr)}: {exc}") from None


# ------------------------------------------------------------------ checks


def _validate_check(check: CheckDef, *, api: bool, path: str) -> None:
    """Consul's CheckType.Validate, in its order; ``Invalid check: ...`` (400) in the API."""
    prefix = "Invalid check: "
    interval_kind = bool(check.args or check.http or check.tcp or check.other_kind in
                         ("udp", "grpc", "h2ping", "os_service", "docker"))  # fmt: skip
    alias = check.other_kind == "alias"
    message = ""
    if check.interval > 0 and check.ttl > 0:
        message = "Interval and TTL cannot both be specified"
    elif interval_kind and check.interval <= 0:
        message = "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks"
    elif alias and check.interval > 0:
        message = "Interval cannot be set for Alias checks"
    elif not interval_kind and not alias and check.ttl <= 0:
        message = "TTL must be > 0 for TTL checks"
    if message:
        raise DefinitionError(prefix + message if api else f"{path}: {message}")


def _header(reader: _Reader) -> tuple[tuple[str, tuple[str, ...]], ...]:
    value = reader.values.get("header")
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise reader.type_error(reader._name("header"), "map[string][]string", value)
    out = []
    for key, items in value.items():
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise reader.type_error(reader._name(f"header.{key}"), "[]string", items)
        out.append((str(key), tuple(items)))
    return tuple(sorted(out))


def _other_kind(reader: _Reader) -> str:
    for attr, kind in (("udp", "udp"), ("grpc", "grpc"), ("h2ping", "h2ping"), ("docker_container_id", "docker"),
                       ("os_service", "os_service")):  # fmt: skip
        if reader.string(attr):
            return kind
    if reader.string("alias_service") or reader.string("alias_node"):
        return "alias"
    return ""


def parse_check(
    raw: Any,
    *,
    api: bool,
    path: str = "check",
    service: tuple[str, str] | None = None,
    default_id: str | None = None,
) -> CheckDef:
    """One check.  ``service`` = (service id, name) for a check inside a service definition (its ID and name
    then default to Consul's ``service:<id>`` and ``Service '<name>' check``); a top-level check needs a name."""
    reader = _Reader(raw, "check", api, path)
    if reader.has("definition"):
        raise DefinitionError('Request decode failed: json: unknown field "Definition"' if api else
                              f"invalid config key {path}.definition")  # fmt: skip
    check_id = reader.string("check_id") or reader.string("id")
    name = reader.string("name")
    service_id = reader.string("service_id")
    if service is not None:
        service_id = service[0]
        check_id = check_id or default_id or f"service:{service[0]}"
        name = name or f"Service '{service[1]}' check"
    else:
        if not api:
            name = name or check_id  # config files: Consul takes an ID-only check (it is its own name)
        if not name:
            raise DefinitionError("Missing check name" if api else f"{path}: missing check name and id")
        check_id = check_id or name
    status = reader.string("status") or "critical"
    if status not in STATUSES:
        raise DefinitionError("Status for checks must 'passing', 'warning', 'critical'")
    size = reader.integer("output_max_size", OUTPUT_MAX_SIZE) or OUTPUT_MAX_SIZE
    check = CheckDef(
        id=check_id,
        name=name,
        service_id=service_id,
        notes=reader.string("notes"),
        status=status,
        ttl=reader.duration("ttl"),
        http=reader.string("http"),
        method=reader.string("method"),
        header=_header(reader),
        body=reader.string("body"),
        tls_skip_verify=reader.boolean("tls_skip_verify"),
        tls_server_name=reader.string("tls_server_name"),
        tcp=reader.string("tcp"),
        args=reader.strings("args"),
        interval=reader.duration("interval"),
        timeout=reader.duration("timeout"),
        deregister_critical_service_after=reader.duration("deregister_critical_service_after"),
        output_max_size=size,
        other_kind=_other_kind(reader),
    )
    _routable_id("check", check.id)
    if check.http:
        problem = http_url_problem(check.http)
        if problem is not None:
            raise DefinitionError(f"Invalid check: HTTP URL {valid_utf8(check.http)!r}: {problem}" if api else
                                  f"{path}.http: {valid_utf8(check.http)!r}: {problem}")  # fmt: skip
    if check.tcp and not _hostport(check.tcp):
        raise DefinitionError(f"Invalid check: TCP address {check.tcp!r} must be host:port" if api else
                              f"{path}.tcp: {check.tcp!r} must be host:port")  # fmt: skip
    _validate_check(check, api=api, path=path)
    return check


def http_url_problem(url: str) -> str | None:
    """Why an HTTP check's URL can never be requested (None: it can be tried)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError beyond 0..65535 or not a number
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return f"unsupported protocol scheme {parts.scheme!r}"
    if not parts.hostname:
        return "no host in request URL"
    if port == 0:
        return "port 0 cannot be dialled"
    return None


def _routable_id(kind: str, item_id: str) -> None:
    """Refuse an ID that no request path can name, so nothing is registered that cannot be deregistered.

    Consul has no such rule, and IDs it cannot route stay stuck (hashicorp/consul#2813, #20122).  Here any
    printable ID is routable when escaped (``/`` as ``%2F``: the HTTP layer cleans the escaped path), except
    ``.`` and ``..`` themselves, which every client resolves away (RFC 3986 dot segments, even as ``%2E``);
    those and non-printable IDs (answered 400 by go-cleanhttp's printable-path check) are refused.
    """
    if item_id in (".", ".."):
        raise DefinitionError(f"Invalid {kind} ID {item_id!r}: a dot segment cannot be named in a request path")
    if not valid_utf8(item_id).isprintable():
        raise DefinitionError(f"Invalid {kind} ID {valid_utf8(item_id)!r}: it contains non-printable characters, "
                              "which no request path can carry")  # fmt: skip


def _hostport(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit())


# ------------------------------------------------------------------ services


def _validate_meta(meta: Mapping[str, str]) -> None:
    if len(meta) > 64:
        raise DefinitionError("Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs")
    for key, value in meta.items():
        if not key:
            raise DefinitionError("Invalid Service Meta: Key cannot be blank")
        if len(key) > 128:
            raise DefinitionError("Invalid Service Meta: Key is too long (limit: 128 characters)")
        if not _META_KEY.fullmatch(key):
            raise DefinitionError("Invalid Service Meta: Key contains invalid characters")
        if key.startswith("consul-"):
            raise DefinitionError('Invalid Service Meta: Key prefix "consul-" is reserved for internal use')
        if len(value) > 512:
            raise DefinitionError('Invalid Service Meta: Value is too long (limit: 512 characters)')


def _weights(reader: _Reader) -> tuple[int, int]:
    value = reader.values.get("weights")
    if value is None:
        return 1, 1
    if not isinstance(value, Mapping):
        raise reader.type_error(reader._name("weights"), "Weights", value)
    lowered = {str(k).lower(): v for k, v in value.items()}
    unknown = set(lowered) - {"passing", "warning"}
    if unknown:
        key = next(k for k in value if str(k).lower() in unknown)
        raise DefinitionError(f'Request decode failed: json: unknown field "{key}"' if reader.api else
                              f"invalid config key {reader._name('weights')}.{key}")  # fmt: skip
    passing, warning = lowered.get("passing", 1), lowered.get("warning", 1)
    if not isinstance(passing, int) or not isinstance(warning, int):
        raise reader.type_error(reader._name("weights"), "int", value)
    if passing < 1:
        raise DefinitionError("Invalid Weights: Passing must be greater than 0")
    if warning < 0:
        raise DefinitionError("Invalid Weights: Warning must be greater or equal than 0")
    return passing, warning


def _tagged_addresses(reader: _Reader) -> tuple[tuple[str, str, int], ...]:
    value = reader.values.get("tagged_addresses")
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise reader.type_error(reader._name("tagged_addresses"), "map[string]ServiceAddress", value)
    out = []
    for name, entry in value.items():
        if not isinstance(entry, Mapping):
            raise reader.type_error(reader._name(f"tagged_addresses.{name}"), "ServiceAddress", entry)
        lowered = {str(k).lower(): v for k, v in entry.items()}
        address, port = lowered.get("address", ""), lowered.get("port", 0)
        if not isinstance(address, str) or not isinstance(port, int):
            raise reader.type_error(reader._name(f"tagged_addresses.{name}"), "ServiceAddress", entry)
        out.append((str(name), address, port))
    return tuple(sorted(out))


def parse_service(raw: Any, *, api: bool, path: str = "service") -> ServiceDef:
    """One service with its checks (``check`` and ``checks`` both count, in that order)."""
    reader = _Reader(raw, "service", api, path)
    name = reader.string("name")
    if not name:
        raise DefinitionError("Missing service name" if api else f"{path}: missing service name")
    service_id = reader.string("id") or name
    where = f'service "{name}"'
    try:
        address = reader.string("address")
        if address:
            try:
                unspecified = ipaddress.ip_address(address).is_unspecified
            except ValueError:
                unspecified = False  # a hostname is allowed
            if unspecified:
                raise DefinitionError("Invalid service address")
        meta = reader.string_map("meta")
        _validate_meta(meta)
        passing, warning = _weights(reader)
        raw_checks: list[tuple[str, Any]] = []
        if reader.has("check"):
            raw_checks.append((f"{path}.check", reader.values["check"]))
        if reader.has("checks"):
            items = reader.values["checks"]
            if not isinstance(items, list | tuple):
                raise reader.type_error(reader._name("checks"), "[]CheckType", items)
            raw_checks.extend((f"{path}.checks[{i}]", item) for i, item in enumerate(items))
        several = len(raw_checks) > 1
        checks = tuple(
            parse_check(item, api=api, path=sub, service=(service_id, name),
                        default_id=f"service:{service_id}:{i + 1}" if several else None)
            for i, (sub, item) in enumerate(raw_checks)
        )
        _routable_id("service", service_id)
        port = reader.integer("port")
        if not 0 <= port <= 65535:
            raise DefinitionError(f"Invalid service port: {port}")
        service = ServiceDef(
            id=service_id,
            name=name,
            tags=reader.strings("tags"),
            address=address,
            port=port,
            meta=tuple(sorted(meta.items())),
            weights_passing=passing,
            weights_warning=warning,
            enable_tag_override=reader.boolean("enable_tag_override"),
            kind=reader.string("kind"),
            tagged_addresses=_tagged_addresses(reader),
            checks=checks,
        )
    except DefinitionError as exc:
        if api:
            raise
        raise DefinitionError(f"{where}: {exc.message}", exc.status) from None
    return service


def script_refusal(*, api: bool) -> DefinitionError:
    """Consul's refusal of a script check when scripts are off (500 in the API)."""
    if api:
        return DefinitionError(
            "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' "
            "to true",
            500,
        )
    return DefinitionError(
        "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or "
        "'enable_local_script_checks' to true",
        500,
    )
