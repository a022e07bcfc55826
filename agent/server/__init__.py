"""The trio side of a server: the Raft log on disk (`raftstore`), the server-port transport (`transport`).

See docs/raft.md ("On disk", "Transport").
"""
