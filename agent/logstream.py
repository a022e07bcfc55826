"""The agent's log lines as Consul writes them, and live copies of them for ``/v1/agent/monitor`` watchers.

``LogHub`` is a logging handler the agent installs on the root logger.  Each watcher gets a bounded buffer: a
record is formatted and appended (or counted as dropped when the buffer is full) inside ``emit``, which never
waits, so a slow or stuck monitor client costs the agent nothing but the buffer.  A watcher may ask for a more
verbose level than the agent logs at (Consul's monitor does): the hub lowers the root logger's level while such a
watcher exists and keeps the agent's own output handler at the configured level.

Formats are hclog's, which Consul's log shippers expect: ``2006-01-02T15:04:05.000Z0700 [INFO]  module: message``,
or with ``-log-json`` one object a line with ``@level``, ``@message``, ``@module``, ``@timestamp``.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import trio

from agent.config_model import LOG_LEVELS
from agent.loglevels import python_level

__all__ = [
    "CONSUL_LOG_LEVELS",
    "ConsulLineFormatter",
    "JsonLogFormatter",
    "LogHub",
    "LogWatcher",
    "python_level",
    "valid_log_level",
]

#: Consul's logging.ValidateLogLevel set (case-insensitive): the config's, which checks ``log_level`` with it.
CONSUL_LOG_LEVELS = LOG_LEVELS
WATCHER_BUFFER = 512  # lines held per watcher before newer ones are dropped (Consul's monitor buffers 512)
_HCLOG_LEVEL = {logging.DEBUG: "[DEBUG]", logging.INFO: "[INFO] ", logging.WARNING: "[WARN] ",
                logging.ERROR: "[ERROR]", logging.CRITICAL: "[ERROR]"}  # fmt: skip
_MODULE_PREFIX = re.compile(r"[\w.\-]+: ")  # our messages mostly name their module already ("agent: ...")


def valid_log_level(name: str) -> bool:
    return name.upper() in CONSUL_LOG_LEVELS


def _hclog_time(record: logging.LogRecord) -> str:
    """Go's ``2006-01-02T15:04:05.000Z0700`` in local time (``Z`` when local time is UTC)."""
    local = time.localtime(record.created)
    offset = time.strftime("%z", local)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{int(record.msecs):03d}" + (
        "Z" if offset in ("+0000", "-0000", "") else offset
    )


class ConsulLineFormatter(logging.Formatter):
    """hclog's text line: time, the bracketed level padded to 7, the module, the message."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not _MODULE_PREFIX.match(message):
            message = f"{record.name}: {message}"
        level = _HCLOG_LEVEL.get(record.levelno, "[INFO] ")
        line = f"{_hclog_time(record)} {level} {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonLogFormatter(logging.Formatter):
    """`-log-json`: one JSON object a line, with the keys Consul's hclog writes (@timestamp, @level, @module,
    @message), so log shippers configured for Consul read ours unchanged."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "@level": record.levelname.lower().replace("warning", "warn"),
            "@message": record.getMessage(),
            "@module": record.name,
            "@timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class LogWatcher:
    """One monitor's view: lines at ``level`` or above, in a buffer of ``capacity`` lines; newer lines are dropped
    (and counted) while it is full, as Consul's monitor drops them rather than block the logger."""

    def __init__(self, level: int, formatter: logging.Formatter, capacity: int = WATCHER_BUFFER) -> None:
        self.level = level
        self.formatter = formatter
        self.capacity = capacity
        self.dropped = 0
        self._lines: collections.deque[str] = collections.deque()
        self._wakeup = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()

    def offer(self, record: logging.LogRecord) -> None:
        """From the logging handler, in any thread: never waits."""
        if record.levelno < self.level:
            return
        if len(self._lines) >= self.capacity:
            self.dropped += 1
            return
        self._lines.append(self.formatter.format(record))
        if threading.get_ident() == self._thread:
            self._wakeup.set()
        else:
            with suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._wakeup.set)

    async def next_lines(self) -> list[str]:
        """Wait for lines, then take all of them (after a notice when some were dropped since the last call)."""
        while not self._lines and not self.dropped:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        lines = []
        if self.dropped:
            lines.append(f"Monitor dropped {self.dropped} logs during monitor request")
            self.dropped = 0
        while self._lines:
            lines.append(self._lines.popleft())
        return lines


class LogHub(logging.Handler):
    """Fans records out to the watchers; owns the root logger's level (the configured one, or a watcher's lower)."""

    def __init__(self, level: int, output: logging.Handler | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.base_level = level
        self.output = output
        self._watchers: set[LogWatcher] = set()
        self._root: logging.Logger | None = None

    @contextmanager
    def installed(self, root: logging.Logger | None = None) -> Iterator[LogHub]:
        """Attach to ``root`` (the root logger) for the agent's lifetime."""
        self._root = root or logging.getLogger()
        self._root.addHandler(self)
        self._apply_levels()
        try:
            yield self
        finally:
            self._root.removeHandler(self)
            self._watchers.clear()
            self._apply_levels()
            self._root = None

    def set_base_level(self, level: int) -> None:
        """The configured ``log_level`` (at start, on reload)."""
        self.base_level = level
        self._apply_levels()

    @contextmanager
    def watch(self, level: int, *, as_json: bool = False, capacity: int = WATCHER_BUFFER) -> Iterator[LogWatcher]:
        formatter = JsonLogFormatter() if as_json else ConsulLineFormatter()
        watcher = LogWatcher(level, formatter, capacity)
        self._watchers.add(watcher)
        self._apply_levels()
        try:
            yield watcher
        finally:
            self._watchers.discard(watcher)
            self._apply_levels()

    def _apply_levels(self) -> None:
        if self.output is not None:
            self.output.setLevel(self.base_level)
        if self._root is not None:
            self._root.setLevel(min([self.base_level, *(w.level for w in self._watchers)]))

    def emit(self, record: logging.LogRecord) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.offer(record)
            except Exception:  # a record that cannot be formatted must not break logging elsewhere
                self.handleError(record)
