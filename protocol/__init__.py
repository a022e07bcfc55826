"""triumvir's gossip library: memberlist and Serf, wire-compatible, sans-IO.

Nothing in this package touches a socket, a clock or trio: time and randomness come in as arguments.
"""
