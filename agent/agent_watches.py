"""Watch plans in the agent's config (Consul's ``watches``), as Consul's builder and agent parse them (pure).

```hcl
watches = [
  { type = "key", key = "app/config", handler_type = "script", args = ["/usr/bin/reload", "app"] },
  { type = "service", service = "web", handler_type = "http",
    http_handler_config { path = "http://127.0.0.1:9000/hook", method = "PUT", header = { x = ["y"] },
                          timeout = "5s", tls_skip_verify = false } },
]
```

Each entry is watch.ParseExempt's parameters: ``type`` and the type's own keys (agent/watch_plans.py, the same plans
as ``python -m agent watch``), ``datacenter``, ``token``, ``handler_type`` (``script``, the default, or ``http``),
``args`` (a list of strings: the argv, no shell) or the deprecated ``handler`` (one string run by the shell), and
for ``http`` the ``http_handler_config``.  A bad entry stops the agent at start with Consul's text (``Must define a
watch handler``, ``Only one watch handler allowed``, ``Handler type 'x' not recognized``, ``Failed to parse watch
(...): Must specify a single key to watch``, ...).  agent/watch_runner.py runs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from agent.durations import parse_duration
from agent.gostrings import go_quote
from agent.watch_plans import Plan, WatchError, parse_plan

__all__ = ["DEFAULT_HTTP_TIMEOUT", "AgentWatch", "HttpHandler", "parse_watch", "parse_watches"]

DEFAULT_HTTP_TIMEOUT = 10.0  # watch.DefaultTimeout


@attrs.frozen
class HttpHandler:
    """watch.HttpHandlerConfig: the request made with the result as its JSON body."""

    path: str
    method: str = "POST"
    header: tuple[tuple[str, tuple[str, ...]], ...] = ()
    timeout: float = DEFAULT_HTTP_TIMEOUT
    tls_skip_verify: bool = False


@attrs.frozen
class AgentWatch:
    """One configured watch: the plan and exactly one handler (``args``, ``script`` or ``http``)."""

    plan: Plan
    datacenter: str = ""
    token: str = ""
    args: tuple[str, ...] = ()
    script: str = ""
    http: HttpHandler | None = None

    @property
    def handler_name(self) -> str:
        """How the logs name the handler (Consul logs the handler value)."""
        if self.http is not None:
            return self.http.path
        return self.script or " ".join(self.args)


def _go_map(params: Mapping[str, Any]) -> str:
    """Go's %#v of the params, near enough to recognise the entry: map[string]interface {}{"k":"v", ...}."""
    def value(v: Any) -> str:
        if isinstance(v, str):
            return go_quote(v)
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[]interface {}{" + ", ".join(value(x) for x in v) + "}"
        if isinstance(v, Mapping):
            return _go_map(v)
        return str(v)

    return "map[string]interface {}{" + ", ".join(f"{go_quote(str(k))}:{value(v)}" for k, v in sorted(
        params.items())) + "}"


def _string(params: dict[str, Any], name: str) -> str:
    """watch.assignValue: a string or nothing."""
    raw = params.pop(name, None)
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise WatchError(f"Expecting {name} to be a string")
    return raw


def _http_handler(raw: Any) -> HttpHandler:
    """parseHttpHandlerConfig (mapstructure into HttpHandlerConfig; method POST and timeout 10 s by default)."""
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]  # an HCL block
    if not isinstance(raw, Mapping):
        raise WatchError("Failed to parse 'http_handler_config': expected a map")
    fields = {str(k).lower(): v for k, v in raw.items()}
    unknown = sorted(set(fields) - {"path", "method", "header", "timeout", "tls_skip_verify"})
    if unknown:
        raise WatchError(f"Failed to parse 'http_handler_config': invalid keys: {', '.join(unknown)}")
    path, method, timeout = fields.get("path", ""), fields.get("method") or "POST", fields.get("timeout") or ""
    if not isinstance(path, str) or not path or not isinstance(method, str) or not isinstance(timeout, str):
        raise WatchError("Failed to parse 'http_handler_config': path, method and timeout must be strings, "
                         "and path is required")
    header = fields.get("header") or {}
    if isinstance(header, list) and len(header) == 1:
        header = header[0]
    if not isinstance(header, Mapping) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in header.values()):
        raise WatchError("Failed to parse 'http_handler_config': header must be a map of lists of strings")
    skip = fields.get("tls_skip_verify", False)
    if not isinstance(skip, bool):
        raise WatchError("Failed to parse 'http_handler_config': tls_skip_verify must be a bool")
    try:
        seconds = parse_duration(timeout) if timeout else DEFAULT_HTTP_TIMEOUT
    except ValueError as exc:
        raise WatchError(f"Failed to parse 'http_handler_config': {exc}") from None
    return HttpHandler(path, method, tuple((str(k), tuple(v)) for k, v in header.items()), seconds, skip)


def parse_watch(given: Mapping[str, Any]) -> AgentWatch:
    """One ``watches`` entry, checked as Consul's builder checks it; WatchError with Consul's text."""
    params = dict(given)
    handler_type = params.get("handler_type", "script")
    if handler_type not in ("http", "script"):
        raise WatchError(f"Handler type '{handler_type}' not recognized")
    watch_type = params.get("type")
    if isinstance(watch_type, str) and watch_type.startswith("connect_"):
        raise WatchError(f"Watch type {watch_type} is not allowed in agent config")
    shown = _go_map(params)
    try:
        datacenter, token = _string(params, "datacenter"), _string(params, "token")
        watch_type = _string(params, "type")
        if not watch_type:
            raise WatchError("Watch type must be specified")
        _string(params, "handler_type")
        http = None
        if handler_type == "http":
            if "http_handler_config" not in params:
                raise WatchError("Handler type 'http' requires 'http_handler_config' to be set")
            http = _http_handler(params.pop("http_handler_config"))
        has_handler, has_args = "handler" in params, "args" in params
        handler, args = params.pop("handler", None), params.pop("args", None)
        plan = parse_plan(watch_type, params)
    except WatchError as err:
        raise WatchError(f"Failed to parse watch ({shown}): {err}") from None
    if has_handler and not isinstance(handler, str):
        raise WatchError("Watch handler must be a string")
    if has_args and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
        raise WatchError("Watch args must be a list of strings")
    if (has_handler and has_args) or (handler_type == "http" and (has_handler or has_args)):
        raise WatchError("Only one watch handler allowed")
    if not has_handler and not has_args and handler_type != "http":
        raise WatchError("Must define a watch handler")
    if datacenter:
        plan = attrs.evolve(plan, params={**plan.params, "dc": datacenter})
    return AgentWatch(plan, datacenter, token, tuple(args or ()), handler or "", http)


def parse_watches(entries: Sequence[Mapping[str, Any]], *, http_enabled: bool) -> tuple[AgentWatch, ...]:
    """Every ``watches`` entry (reloadWatches: they talk to this agent's HTTP API, so that must be on)."""
    if entries and not http_enabled:
        raise WatchError("watch plans require an HTTP or HTTPS endpoint")
    return tuple(parse_watch(entry) for entry in entries)
