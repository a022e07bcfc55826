"""Raft, sans-IO: the core of triumvir's servers (etcd-io/raft's RawNode shape). See docs/raft.md.

Modules, each one concern: `types` (the records on disk and on the wire), `storage` (what the core reads),
`log` (storage plus the unstable tail), `progress` (a leader's view of each follower), `quorum`,
`membership` (single-server changes), `read_only` (ReadIndex and the lease), `core` (the state machine),
`node` (RawNode: the driver's surface), `memory` (MemoryStorage, for simulations), `config`, `errors`.
"""

from .config import Config, ReadOnlyOption
from .errors import ConfChangeRejected, ConfigError, NotLeader, ProposalDropped, RaftError
from .membership import bootstrap, conf_at_end
from .memory import MemoryStorage
from .node import RawNode, Status

__all__ = [
    "ConfChangeRejected",
    "Config",
    "ConfigError",
    "MemoryStorage",
    "NotLeader",
    "ProposalDropped",
    "RaftError",
    "RawNode",
    "ReadOnlyOption",
    "Status",
    "bootstrap",
    "conf_at_end",
]
