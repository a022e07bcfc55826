"""The gossip layer's IO: the trio driver around the sans-IO machine (driver.py), and ``python -m agent.gossip``,
a bare node (__main__.py) with its members file (members_file.py)."""

from agent.gossip.driver import Addr, DriverStats, GossipDriver, Machine, parse_addr

__all__ = ["Addr", "DriverStats", "GossipDriver", "Machine", "parse_addr"]
