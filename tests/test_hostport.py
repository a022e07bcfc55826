"""agent/hostport.py: host and port in one string, as Go writes them and serf's command line reads them."""

from __future__ import annotations

import pytest

from agent.hostport import is_wildcard, join_host_port, parse_addr, with_default_port


@pytest.mark.parametrize(
    ("host", "port", "joined"),
    [("10.0.0.1", 8300, "10.0.0.1:8300"), ("::1", 8300, "[::1]:8300"), ("node.example", "53", "node.example:53")],
)
def test_join_host_port_brackets_ipv6(host: str, port: int | str, joined: str) -> None:
    assert join_host_port(host, port) == joined


@pytest.mark.parametrize(
    ("addr", "target"),
    [
        ("10.0.0.1", "10.0.0.1:8301"),
        ("10.0.0.1:9000", "10.0.0.1:9000"),
        ("node.example", "node.example:8301"),
        ("::1", "[::1]:8301"),
        ("[::1]", "[::1]:8301"),
        ("[::1]:9000", "[::1]:9000"),
    ],
)
def test_a_join_address_without_a_port_gets_the_lan_port(addr: str, target: str) -> None:
    assert with_default_port(addr, 8301) == target


def test_parse_addr_reads_serfs_forms() -> None:
    assert parse_addr("10.0.0.1") == ("10.0.0.1", 7946)
    assert parse_addr(" 10.0.0.1:1234 ") == ("10.0.0.1", 1234)
    assert parse_addr("[::1]:1234") == ("::1", 1234)
    assert parse_addr("[::1]") == ("::1", 7946)
    assert parse_addr("::1", 8301) == ("::1", 8301)
    assert is_wildcard("0.0.0.0") and is_wildcard("::") and not is_wildcard("127.0.0.1")
