"""The slice of Consul's Go API client that `kv` and `lock` use: api/kv.go and api/session.go over AgentClient.

Requests are the Go client's, byte for byte where the agent could tell (query parameters, Content-Type, how a key
lands in the path), and so are the results: a missing key is ``None`` (a 404 is not an error), a write answers
whether the agent said ``true``, and errors are ClientError with the Go client's text.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.cli_client import AgentClient, ClientError, Reply, path_escape

#: api.LockFlagValue: the Flags a lock's key carries, so a lock and a semaphore on one prefix notice each other.
LOCK_FLAG_VALUE = 0x2DDCCBC058A50C18


@dataclass(frozen=True)
class KVPair:
    """api.KVPair: the value is bytes (``b""`` when the agent said null)."""

    key: str
    value: bytes = b""
    flags: int = 0
    create_index: int = 0
    modify_index: int = 0
    lock_index: int = 0
    session: str = ""

    @classmethod
    def from_json(cls, raw: Any) -> KVPair:
        if not isinstance(raw, Mapping):
            raise ClientError("json: cannot unmarshal into Go value of type api.KVPair")
        try:
            value = base64.b64decode(raw.get("Value") or "", validate=True)
        except (binascii.Error, TypeError) as err:
            raise ClientError(f"illegal base64 data in Value of {raw.get('Key')!r}: {err}") from None
        return cls(
            key=str(raw.get("Key") or ""),
            value=value,
            flags=int(raw.get("Flags") or 0),
            create_index=int(raw.get("CreateIndex") or 0),
            modify_index=int(raw.get("ModifyIndex") or 0),
            lock_index=int(raw.get("LockIndex") or 0),
            session=str(raw.get("Session") or ""),
        )


@dataclass(frozen=True)
class QueryOptions:
    """The api.QueryOptions the CLI uses; ``wait`` is seconds (sent as Go's milliseconds, `15000ms`)."""

    stale: bool = False
    consistent: bool = False
    index: int = 0
    wait: float | None = None

    def params(self) -> dict[str, str]:
        params = {}
        if self.stale:
            params["stale"] = ""
        if self.consistent:
            params["consistent"] = ""
        if self.index:
            params["index"] = str(self.index)
        if self.wait is not None:
            params["wait"] = f"{round(self.wait * 1000)}ms"
        return params

    def timeout(self) -> float:
        """How long to wait for the answer: the agent may hold a blocking query for wait + wait/16."""
        return 30.0 if self.wait is None else self.wait * 17 / 16 + 10.0


def go_path_join(*parts: str) -> str:
    """path.Join: the non-empty parts joined by `/` and Cleaned ("" when all are empty)."""
    joined = "/".join(p for p in parts if p)
    if not joined:
        return ""
    cleaned = posixpath.normpath(joined)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _index_of(reply: Reply) -> int:
    try:
        return int(reply.headers.get("x-consul-index", "0"))
    except ValueError:
        return 0


class KV:
    """api.KV: reads, writes, deletes and the lock verbs of /v1/kv."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client

    # ---- reads

    def get(self, key: str, options: QueryOptions = QueryOptions()) -> tuple[KVPair | None, int]:
        """KV().Get: the pair or None, and X-Consul-Index (a blocking query when options.index is set)."""
        reply = self._read(key, {}, options)
        if reply.status == 404:
            return None, _index_of(reply)
        entries = reply.json()
        if not isinstance(entries, list):
            raise ClientError("json: cannot unmarshal object into Go value of type []*api.KVPair")
        return (KVPair.from_json(entries[0]) if entries else None), _index_of(reply)

    def list(self, prefix: str, options: QueryOptions = QueryOptions()) -> tuple[list[KVPair], int]:
        """KV().List: every pair under the prefix, in the agent's (key) order, and X-Consul-Index."""
        reply = self._read(prefix, {"recurse": ""}, options)
        if reply.status == 404:
            return [], _index_of(reply)
        entries = reply.json()
        if not isinstance(entries, list):
            raise ClientError("json: cannot unmarshal object into Go value of type api.KVPairs")
        return [KVPair.from_json(e) for e in entries], _index_of(reply)

    def keys(self, prefix: str, separator: str, options: QueryOptions = QueryOptions()) -> list[str]:
        """KV().Keys: the key names under the prefix, folded at the separator when one is given."""
        params = {"keys": ""}
        if separator:
            params["separator"] = separator
        reply = self._read(prefix, params, options)
        if reply.status == 404:
            return []
        keys = reply.json()
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ClientError("json: cannot unmarshal into Go value of type []string")
        return keys

    def _read(self, key: str, params: dict[str, str], options: QueryOptions) -> Reply:
        """GET /v1/kv/<key> (the Go client strips one leading slash); a 404 is an answer, other statuses raise."""
        path = "/v1/kv/" + path_escape(key.removeprefix("/"))
        reply = self.client.call("GET", path, {**params, **options.params()}, timeout=options.timeout())
        return reply if reply.status == 404 else reply.ok()

    # ---- writes: each answers whether the agent said true

    def put(self, key: str, value: bytes, flags: int = 0) -> bool:
        return self._write(key, value, self._flags(flags))

    def cas(self, key: str, value: bytes, flags: int, modify_index: int) -> bool:
        return self._write(key, value, {**self._flags(flags), "cas": str(modify_index)})

    def acquire(self, key: str, value: bytes, flags: int, session: str) -> bool:
        return self._write(key, value, {**self._flags(flags), "acquire": session})

    def release(self, key: str, value: bytes, flags: int, session: str) -> bool:
        return self._write(key, value, {**self._flags(flags), "release": session})

    @staticmethod
    def _flags(flags: int) -> dict[str, str]:
        return {"flags": str(flags)} if flags else {}

    def _write(self, key: str, value: bytes, params: dict[str, str]) -> bool:
        if key.startswith("/"):
            raise ClientError(f"Invalid key. Key must not begin with a '/': {key}")
        reply = self.client.call(
            "PUT", "/v1/kv/" + path_escape(key), params, value, headers={"Content-Type": "application/octet-stream"}
        )
        return b"true" in reply.ok().body

    # ---- deletes

    def delete(self, key: str) -> bool:
        return self._delete(key, {})

    def delete_cas(self, key: str, modify_index: int) -> bool:
        return self._delete(key, {"cas": str(modify_index)})

    def delete_tree(self, prefix: str) -> bool:
        return self._delete(prefix, {"recurse": ""})

    def _delete(self, key: str, params: dict[str, str]) -> bool:
        reply = self.client.call("DELETE", "/v1/kv/" + path_escape(key.removeprefix("/")), params)
        return b"true" in reply.ok().body


class Sessions:
    """api.Session: what a lock needs (create, renew, destroy)."""

    def __init__(self, client: AgentClient) -> None:
        self.client = client

    def create(self, name: str, ttl: str, lock_delay: float | None = None, behavior: str = "") -> str:
        """Session().Create with the fields the Go client sends only when set; returns the new ID."""
        body: dict[str, Any] = {}
        if name:
            body["Name"] = name
        if lock_delay:
            body["LockDelay"] = f"{round(lock_delay * 1000)}ms"
        if behavior:
            body["Behavior"] = behavior
        if ttl:
            body["TTL"] = ttl
        answer = self.client.call("PUT", "/v1/session/create", None, json.dumps(body).encode()).ok().json()
        if not isinstance(answer, Mapping) or not isinstance(answer.get("ID"), str):
            raise ClientError(f"unexpected answer to a session create: {answer!r}")
        return answer["ID"]

    def renew(self, session: str) -> Mapping[str, Any] | None:
        """Session().Renew: the session's entry, or None when the agent no longer knows it (404)."""
        reply = self.client.call("PUT", "/v1/session/renew/" + path_escape(session))
        if reply.status == 404:
            return None
        entries = reply.ok().json()
        return entries[0] if isinstance(entries, list) and entries and isinstance(entries[0], Mapping) else None

    def destroy(self, session: str) -> None:
        self.client.call("PUT", "/v1/session/destroy/" + path_escape(session)).ok()
