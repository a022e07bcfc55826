"""The configuration's errors, below every config module (flags, files, interfaces, the build) that raises them."""

from __future__ import annotations

__all__ = ["ConfigError", "HelpRequested"]


class ConfigError(Exception):
    """A configuration the agent refuses to start (or reload) with; ``str(err)`` is the whole message."""


class HelpRequested(ConfigError):
    """``-h``/``-help``: Go's flag package answers with ErrHelp; the caller prints usage and exits 0."""
