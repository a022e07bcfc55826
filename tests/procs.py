"""Process and waiting helpers for tests that run real agents.

Processes are started by us and stopped by their PID only (never by name), so a test can never hit an agent it
did not start.  Waiting is always "poll a condition until a deadline", never a fixed sleep: a fast machine passes
quickly, and a slow one fails with the last observed value in the message rather than a bare timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class Proc:
    """A child process with its log file; ``stop``/``kill`` act on its PID."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 -- closed in close()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a ^C at the terminal reaches pytest, not the agents
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to our PID if it is still our child (poll() reaps it, so the PID cannot be reused)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL and reap: the process gets no chance to say goodbye."""
        self.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 15.0) -> int:
        """Signal, wait up to ``grace`` seconds, then SIGKILL; returns the exit code."""
        self.send_signal(sig)
        rc = self.wait(grace)
        if rc is None:
            self.kill()
            rc = self.popen.returncode
        return rc

    def close(self) -> None:
        """Make sure it is dead and reaped, and close the log; safe to call twice."""
        if self.popen.poll() is None:
            self.kill()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_for(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy; return that, or fail after ``timeout`` seconds.

    Exceptions from the probe count as "not yet" (an agent's RPC port may not be up), but the last one is
    reported on failure together with the last value and ``diagnostics()``.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    last_exc: BaseException | None = None
    while True:
        try:
            value = probe()
            last_exc = None
            if value:
                return value
            last = value
        except Exception as exc:  # the probe's failure is data, not an error, until the deadline
            last_exc = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    msg = f"timed out after {timeout}s waiting for {what}; last value: {last!r}"
    if last_exc is not None:
        msg += f"; last error: {type(last_exc).__name__}: {last_exc}"
    if diagnostics is not None:
        msg += "\n" + diagnostics()
    raise AssertionError(msg)


def xdist_worker() -> tuple[int, int]:
    """(index, count) of this pytest-xdist worker (``gw3`` of 4 is (3, 4)); (0, 1) in a plain run.

    Parallel workers share the machine's loopback: each takes its own share of addresses and ports from
    ``free_port`` and conftest's ``next_loopback_ip``, so two workers never hand out the same one.
    """
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0
    return index % max(count, 1), max(count, 1)


_issued: set[tuple[str, int]] = set()


def free_port(host: str) -> int:
    """A port free for both TCP and UDP on ``host`` right now (bind both to check, then release).

    Never the same port twice in one test run: the kernel may hand a just-released port out again, and two
    calls in a row (an agent's HTTP and gossip ports) must not collide.  Under pytest-xdist only ports in this
    worker's residue class (``port % workers == index``) are handed out, so a port one worker checked free and
    released is never the next worker's too before its agent binds it.  The kernel's pick is moved up into that
    class rather than waited for: Linux hands out even ports to ``bind(host, 0)`` first, so with an even number
    of workers an odd class could wait in vain.
    """
    index, count = xdist_worker()
    for _ in range(200 * count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            picked = probe.getsockname()[1]
        port = picked + (index - picked) % count
        if port > 65535 or (host, port) in _issued:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind((host, port))
                udp.bind((host, port))
            except OSError:
                continue
            _issued.add((host, port))
            return port
    raise RuntimeError(f"no port free for TCP and UDP on {host}")


def wait_port_open(host: str, port: int, *, timeout: float, what: str) -> None:
    """Wait until a TCP listener accepts on (host, port)."""

    def probe() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_for(probe, timeout=timeout, what=what)
