"""Reading config files: one file or a directory's ``*.json``/``*.hcl`` files, parsed and checked source by source.

JSON is read strictly (no NaN); HCL through python-hcl2, its blocks kept apart (``Blocks``) so that Consul's
"several blocks merge" and "one block is an object" rules can be applied.  Errors carry the file name and Go's
wording (``open <path>: no such file or directory``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from typing import Any

from agent.config_errors import ConfigError
from agent.config_schema import Blocks, check_source, go_type
from agent.goerrors import go_os_error
from agent.hcl_text import HclSyntaxError, load_hcl

__all__ = ["nonempty", "parse_source", "read_path"]



def _read_json(name: str, text: str) -> Any:
    def no_constants(token: str) -> Any:
        raise ValueError(f"invalid JSON value {token}")

    try:
        return json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"failed to parse {name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"failed to parse {name}: {exc}") from None


def _read_hcl(name: str, text: str) -> Any:
    try:
        data = load_hcl(text)
    except HclSyntaxError as exc:
        where = f" at line {exc.line}, column {exc.column}" if exc.line is not None else ""
        raise ConfigError(f"failed to parse {name}: invalid HCL{where}: {exc.what}") from None
    return _from_hcl(data)


def _from_hcl(value: Any) -> Any:
    """python-hcl2's output in JSON's shapes: block lists become ``Blocks``, block markers go."""
    if isinstance(value, dict):
        return {k: _from_hcl(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        items = [_from_hcl(v) for v in value]
        if value and all(isinstance(v, dict) and v.get("__is_block__") for v in value):
            return Blocks(items)
        return items
    return value


def parse_source(name: str, text: str, fmt: str) -> dict[str, Any] | None:
    """One file's validated values; None for an empty file (Consul skips those)."""
    if not text.strip():
        return None
    data = _read_json(name, text) if fmt == "json" else _read_hcl(name, text)
    if not isinstance(data, dict):
        kind = "array" if isinstance(data, list) else go_type(data)
        raise ConfigError(f"failed to parse {name}: json: cannot unmarshal {kind} into Go value of type "
                          "map[string]interface {}")  # fmt: skip
    return check_source(name, data)


def _format_of(path: str, forced: str | None) -> str | None:
    if forced:
        return forced
    return "json" if path.endswith(".json") else "hcl" if path.endswith(".hcl") else None


def read_path(path: str, forced: str | None, warnings: list[str]) -> list[dict[str, Any]]:
    """A file, or a directory's files (byte-wise name order, no recursion, symlinks followed)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"config: Open failed on {path}. {go_os_error('open', path, exc)}") from None
    if not stat.S_ISDIR(info.st_mode):
        fmt = _format_of(path, forced)
        if fmt is None:
            raise ConfigError(f"file {path} has unknown extension; must be .hcl or .json, or config format must be set")
        return nonempty([_read_file(path, fmt)])
    try:
        names = sorted(os.listdir(path), key=os.fsencode)
    except OSError as exc:
        raise ConfigError(f"config: Readdir failed on {path}. {go_os_error('readdirent', path, exc)}") from None
    sources = []
    for entry in names:
        full = os.path.join(path, entry)
        if os.path.isdir(full):
            continue
        fmt = _format_of(full, forced)
        if fmt is None:
            warnings.append(f"skipping file {full}, extension must be .hcl or .json, or config format must be set")
            continue
        sources.append(_read_file(full, fmt))
    return nonempty(sources)


def nonempty(sources: Iterable[dict[str, Any] | None]) -> list[dict[str, Any]]:
    return [s for s in sources if s is not None]


def _read_file(path: str, fmt: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"config: failed to read {path}: {go_os_error('open', path, exc)}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"failed to parse {path}: invalid UTF-8 at byte {exc.start}") from None
    return parse_source(path, text, fmt)
