"""Records as the snapshot keeps them: with Consul's CreateIndex/ModifyIndex per node, service and check.

Indexes come from the member table's single counter at the moment a record is applied, so a blocking query on
``X-Consul-Index`` and the per-object ``ModifyIndex`` agree.  An object whose content did not change keeps its
indexes when its node's record is replaced (a check flapping does not "modify" every service of the node).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import immutables

from agent.catalog.record import CheckRecord, NodeCatalog, ServiceRecord

__all__ = ["IndexedNode", "apply_changes", "index_record"]

Indexes = tuple[int, int]  # (create, modify)


@attrs.frozen
class IndexedNode:
    record: NodeCatalog
    create_index: int
    modify_index: int
    services: immutables.Map[str, Indexes]
    checks: immutables.Map[str, Indexes]

    def service_indexes(self, service_id: str) -> Indexes:
        return self.services.get(service_id, (self.create_index, self.modify_index))

    def check_indexes(self, check_id: str) -> Indexes:
        return self.checks.get(check_id, (self.create_index, self.modify_index))


def _reindex(
    old_items: Mapping[str, ServiceRecord | CheckRecord],
    old_indexes: Mapping[str, Indexes],
    new_items: tuple[ServiceRecord, ...] | tuple[CheckRecord, ...],
    index: int,
) -> immutables.Map[str, Indexes]:
    out: dict[str, Indexes] = {}
    for item in new_items:
        before = old_items.get(item.id)
        if before is None:
            out[item.id] = (index, index)
        elif before == item:
            out[item.id] = old_indexes.get(item.id, (index, index))
        else:
            out[item.id] = (old_indexes.get(item.id, (index, index))[0], index)
    return immutables.Map(out)


def index_record(previous: IndexedNode | None, record: NodeCatalog, index: int) -> IndexedNode:
    """``record`` stored at ``index``: unchanged services/checks keep their indexes, changed ones move."""
    if previous is None:
        return IndexedNode(
            record,
            index,
            index,
            immutables.Map({s.id: (index, index) for s in record.services}),
            immutables.Map({c.id: (index, index) for c in record.checks}),
        )
    old = previous.record
    return IndexedNode(
        record,
        previous.create_index,
        index,
        _reindex({s.id: s for s in old.services}, previous.services, record.services, index),
        _reindex({c.id: c for c in old.checks}, previous.checks, record.checks, index),
    )


def apply_changes(
    catalog: immutables.Map[str, IndexedNode], changes: Mapping[str, NodeCatalog | None], index: int
) -> immutables.Map[str, IndexedNode]:
    """The catalog map with ``changes`` applied at ``index``; the same object when nothing changed."""
    if not changes:
        return catalog
    with catalog.mutate() as mm:
        touched = False
        for node, record in changes.items():
            previous = mm.get(node)
            if record is None:
                if previous is not None:
                    del mm[node]
                    touched = True
                continue
            if previous is not None and previous.record == record:
                continue
            mm[node] = index_record(previous, record, index)
            touched = True
        return mm.finish() if touched else catalog
