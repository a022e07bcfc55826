"""triumvir's gossip library: memberlist and Serf, wire-compatible, sans-IO.

Nothing in this package touches a socket, a clock or trio: time and randomness come in as arguments.
The package itself imports nothing: import what you use from its modules (`protocol.node.Node`,
`protocol.serf.Serf`, `protocol.state.NodeState`), so that no module of it depends on the package it sits in.
"""
