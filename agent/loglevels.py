"""Consul's log level names as Python logging levels.

Its own module, importing nothing but logging, so that the bare gossip node (``python -m agent.gossip``) can map
the machine's diagnostic levels without loading the agent's configuration model (cattrs and its converters: about
2 MiB of RSS in every gossip process).
"""

from __future__ import annotations

import logging

_PYTHON_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
                  "warning": logging.WARNING, "err": logging.ERROR, "error": logging.ERROR}  # fmt: skip


def python_level(name: str) -> int:
    """A Consul level name as a logging level (``trace`` is DEBUG here); unknown names are INFO."""
    return _PYTHON_LEVELS.get(name.lower(), logging.INFO)
