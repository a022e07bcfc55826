"""Raft, sans-IO: the core of triumvir's servers (etcd-io/raft's RawNode shape). See docs/raft.md."""
