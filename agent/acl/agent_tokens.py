"""The agent's own ACL tokens (hashicorp/consul ``agent/token/store.go`` and ``persistence.go``).

`AgentTokens` is one immutable snapshot of them: ``default`` (the token of requests that carry none, Consul's
"user" token), ``agent`` (what the agent presents for its own calls to the servers), ``agent_recovery``,
``replication``, ``dns`` and ``config_file_service_registration``, each with whether it was set through the API.
`TokenStore` holds the current snapshot and swaps in a new one on every update (readers never see a half-done
change), and, with ``acl.enable_token_persistence``, writes the tokens set through the API to
``<data_dir>/acl-tokens.json`` (Consul's file and keys, mode 0600, replaced atomically) and reads them back at
start, where they win over the configuration's, as Consul's.

`KINDS` maps each name ``PUT /v1/agent/token/<name>`` accepts, Consul's legacy ones included (``acl_token``,
``acl_agent_token``, ``acl_agent_master_token``, ``agent_master``, ``acl_replication_token``, ``dns_token``), to
the token it sets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from agent.config import ACLConfig, ACLTokens

if TYPE_CHECKING:
    from agent.datadir import DataDir

__all__ = ["KINDS", "PERSIST_FILE", "AgentTokens", "TokenFileError", "TokenStore", "load_persisted", "load_token_store"]

PERSIST_FILE = "acl-tokens.json"
log = logging.getLogger("agent")

#: PUT /v1/agent/token/<name> -> the field of AgentTokens it sets (agent_endpoint.go ``AgentToken``).
KINDS: Mapping[str, str] = {
    "default": "default", "acl_token": "default",
    "agent": "agent", "acl_agent_token": "agent",
    "agent_recovery": "agent_recovery", "agent_master": "agent_recovery", "acl_agent_master_token": "agent_recovery",
    "replication": "replication", "acl_replication_token": "replication",
    "config_file_service_registration": "config_file_service_registration",
    "dns": "dns", "dns_token": "dns",
}  # fmt: skip

#: The keys of Consul's persisted file, by field (``persistedTokens``); ``agent_master`` is read as well.
_FILE_KEYS = {"default": "default", "agent": "agent", "agent_recovery": "agent_recovery",
              "replication": "replication", "config_file_service_registration": "config_file_service_registration",
              "dns": "dns"}  # fmt: skip


class TokenFileError(Exception):
    """``acl-tokens.json`` cannot be read or decoded: the agent does not start (Consul's texts)."""


def _secret() -> Any:
    return attrs.field(default="", repr=False)


@attrs.frozen
class AgentTokens:
    """One snapshot of the agent's tokens; ``from_api`` names the fields set through the API (the persisted ones)."""

    default: str = _secret()
    agent: str = _secret()
    agent_recovery: str = _secret()
    replication: str = _secret()
    dns: str = _secret()
    config_file_service_registration: str = _secret()
    from_api: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, tokens: ACLTokens) -> AgentTokens:
        return cls(default=tokens.default, agent=tokens.agent, agent_recovery=tokens.agent_recovery,
                   replication=tokens.replication, dns=tokens.dns)  # fmt: skip

    def for_agent(self) -> str:
        """What the agent presents for its own calls (anti-entropy, the catalog mirror): ``agent``, else
        ``default`` (Consul's ``AgentToken()``)."""
        return self.agent or self.default

    def set(self, field: str, token: str) -> AgentTokens:
        """This snapshot with ``field`` set through the API."""
        return attrs.evolve(self, **{field: token}, from_api=self.from_api | {field})

    def persisted_json(self) -> dict[str, str]:
        """Consul's ``persistedTokens``: the non-empty tokens set through the API."""
        return {key: getattr(self, field) for field, key in _FILE_KEYS.items()
                if field in self.from_api and getattr(self, field)}  # fmt: skip


def load_persisted(tokens: AgentTokens, path: Path) -> AgentTokens:
    """``tokens`` with those of ``path`` over them (no file: unchanged); TokenFileError with Consul's text."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return tokens
    except OSError as err:
        raise TokenFileError(f'failed reading tokens file "{path}": {err.strerror or err}') from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise TokenFileError(f'failed to decode tokens file "{path}": {err}') from None
    if not isinstance(data, dict):
        raise TokenFileError(f'failed to decode tokens file "{path}": expected a JSON object, got '
                             f"{type(data).__name__}")  # fmt: skip
    if "agent_master" in data and not data.get("agent_recovery"):  # Consul's fallbackPersistedTokens
        data = {**data, "agent_recovery": data["agent_master"]}
    for field, key in _FILE_KEYS.items():
        value = data.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            raise TokenFileError(f'failed to decode tokens file "{path}": "{key}" must be a string')
        tokens = tokens.set(field, value)
    return tokens


class Writer(Protocol):
    def atomic_write(self, relpath: str, data: bytes, mode: int = 0o600) -> Path: ...


class TokenStore:
    """The current `AgentTokens`, swapped whole on each update; persisted through ``writer`` when given."""

    def __init__(self, tokens: AgentTokens, writer: Writer | None = None) -> None:
        self.current = tokens
        self.writer = writer

    def update(self, name: str, token: str) -> bool:
        """Set the token ``name`` (a key of `KINDS`) names; whether its value changed.  KeyError for an unknown
        name; OSError when persisting fails (the snapshot is then left as it was)."""
        field = KINDS[name]
        new = self.current.set(field, token)
        if self.writer is not None:
            self.writer.atomic_write(PERSIST_FILE, json.dumps(new.persisted_json()).encode())
        changed = getattr(self.current, field) != token
        self.current = new
        return changed


def load_token_store(acl: ACLConfig, datadir: DataDir | None) -> TokenStore:
    """The agent's tokens at start: the config's acl.tokens; with enable_token_persistence (and a data dir), those
    set through the API before a restart over them (<data_dir>/acl-tokens.json), and every later update written
    there."""
    tokens = AgentTokens.from_config(acl.tokens)
    if not acl.enable_token_persistence or datadir is None:
        return TokenStore(tokens)
    tokens = load_persisted(tokens, datadir.path / PERSIST_FILE)
    if tokens.from_api:
        log.info("agent: loaded persisted ACL tokens: %s", ", ".join(sorted(tokens.from_api)))
    return TokenStore(tokens, datadir)
