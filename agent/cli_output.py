"""What the CLI prints, as Go prints it: cli.Ui's two streams, strings.TrimSpace, `%v`, columnize's tables and
net.TCPAddr's text (consul-compat §4).  Stdlib only."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# Go's unicode.IsSpace set, used by strings.TrimSpace (Python's str.strip also strips \x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" + (
    "\u2028\u2029\u202f\u205f\u3000"
)


def _out(text: str) -> None:
    """cli.Ui.Output: a line on stdout."""
    print(text, file=sys.stdout)


def _err(text: str) -> None:
    """cli.Ui.Error: a line on stderr."""
    print(text, file=sys.stderr)


def go_trim(text: str) -> str:
    """strings.TrimSpace."""
    return text.strip(_GO_SPACE)


def go_v(value: Any) -> str:
    """Go's %v of a decoded JSON value, for the few messages that print one (`map[a:1 b:[x y]]`)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_v(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_v(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def columnize(rows: Sequence[Sequence[str]], glue: str = "  ") -> str:
    """ryanuber/columnize: cells trimmed, every cell but a row's last padded to its column's widest, no final newline.

    Padding applies to empty middle cells too, so an `unknown` member's row keeps trailing spaces, as in Consul.
    """
    cells = [[go_trim(c) for c in row] for row in rows]
    widths: list[int] = []
    for row in cells:
        for i, cell in enumerate(row):
            if i == len(widths):
                widths.append(len(cell))
            else:
                widths[i] = max(widths[i], len(cell))
    lines = []
    for row in cells:
        head = "".join(cell.ljust(widths[i]) + glue for i, cell in enumerate(row[:-1]))
        lines.append(head + (row[-1] if row else ""))
    return "\n".join(lines)


def tcp_addr(addr: str, port: int) -> str:
    """Go's net.TCPAddr{IP: net.ParseIP(addr), Port: port}.String(): IPv6 in brackets, unparsable IP -> `:port`."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return f":{port}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"{ip.ipv4_mapped}:{port}"
        return f"[{ip.compressed}]:{port}"
    return f"{ip}:{port}"
