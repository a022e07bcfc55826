"""A state store driven through the real entry path: command -> bytes -> Raft Entry -> StateStore.apply."""

from __future__ import annotations

from typing import Any

from agent.server.state import commands as c
from agent.server.state.store import StateStore
from agent.server.state.tables import State
from protocol.raft.types import Entry

SEC = 10**9


class Driven:
    """Applies each command at the next Raft index, with a settable leader clock (ns)."""

    def __init__(self, store: StateStore | None = None) -> None:
        self.store = store or StateStore()
        self.index = self.store.current.applied
        self.now = 1_000 * SEC

    def run(self, cmd: c.Command, *, now: int | None = None) -> Any:
        self.index += 1
        stamped = type(cmd)(**{**_fields(cmd), "now": self.now if now is None else now})
        return self.store.apply(Entry(index=self.index, term=1, data=c.encode(stamped)))

    @property
    def state(self) -> State:
        return self.store.current

    def session(self, sid: str, **kw: Any) -> str:
        kw.setdefault("node", "n1")
        return self.run(c.SessionCreate(id=sid, **kw))


def _fields(cmd: c.Command) -> dict[str, Any]:
    import attrs

    return {f.name: getattr(cmd, f.name) for f in attrs.fields(type(cmd))}
