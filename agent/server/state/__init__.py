"""The servers' replicated state machine: Consul's KV, sessions, locks, transactions and catalog registrations.

Everything here is deterministic and free of I/O: a committed Raft entry's bytes go in (`store.StateStore.apply`),
a new immutable `tables.State` comes out.  Only servers hold it (hence its place under `agent.server`); it knows
nothing of Raft's driver or of HTTP.  See docs/state.md.

Modules, one concern each: `tables` (the records and the versioned snapshot), `commands` (the entries' encoding),
`kvs`, `sessions`, `catalog`, `txn` (Consul's rules, pure functions on a `Tx`), `apply` (one command on a state),
`codec` (snapshot bytes), `reads` (what a query reads and the index it reports), `views` (Consul's JSON),
`watch` (blocking queries: trio-free hub, thin trio wait), `leader` (the leader's side: session TTL timers,
session-create parsing, lock-delay decoding), `store` (the current version, the Raft adapter).
"""
