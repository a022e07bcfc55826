"""`lock [options] PREFIX CHILD...`: Consul's command/lock -- run a child while holding `PREFIX/.lock`.

The child runs (through $SHELL -c by default) with CONSUL_LOCK_HELD=true once the lock is ours.  It is stopped,
SIGTERM first and SIGKILL after a 5 s grace, when the lock is lost or we are told to shut down (SIGINT/SIGTERM,
which are also forwarded to the child); when it exits by itself the lock is released.  Either way the lock is
released, its session destroyed and the key removed if nobody else holds it.

`-n N` (N > 1) holds one of N slots of a semaphore under PREFIX instead (api/semaphore.go).  `-ttl` is ours:
Consul's lock always asks for a 15 s session TTL.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from agent.cli_command import HTTP_FLAGS, SERVER_FLAGS, Command, _reached_agent
from agent.cli_output import _err, _out
from agent.durations import go_duration, parse_duration
from agent.goflags import Flag, go_int
from agent.kvapi import go_path_join
from agent.lockclient import (
    DEFAULT_SESSION_TTL,
    SEMAPHORE_KEY,
    Lock,
    LockError,
    LockInUseError,
    LockOptions,
    Semaphore,
)

KILL_GRACE = 5.0  # lockKillGracePeriod: SIGTERM, then this long, then SIGKILL
DEFAULT_MONITOR_RETRY = 3
MONITOR_RETRY_TIME = 1.0  # defaultMonitorRetryTime of the command (the API's default is 2 s)
SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _go_duration_flag(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError("parse error") from None


def go_exit_error(returncode: int) -> str:
    """exec.ExitError's text: `exit status 3`, or `signal: killed` for a child ended by a signal."""
    if returncode >= 0:
        return f"exit status {returncode}"
    name = signal.strsignal(-returncode) or f"signal {-returncode}"
    return f"signal: {name[:1].lower()}{name[1:]}"


def child_argv(args: list[str], shell: bool) -> list[str]:
    """exec.Script (`$SHELL -c "args joined"`, /bin/sh by default) or exec.Subprocess (the args themselves)."""
    if shell:
        return [os.environ.get("SHELL") or "/bin/sh", "-c", " ".join(args)]
    return list(args)


@dataclass
class _Run:
    """What the signal handler, the child's watcher and the main thread share."""

    verbose: bool
    wake: threading.Event = field(default_factory=threading.Event)
    shutdown: threading.Event = field(default_factory=threading.Event)
    child: subprocess.Popen[bytes] | None = None
    child_done: threading.Event = field(default_factory=threading.Event)
    child_failed: bool = False

    def info(self, text: str) -> None:
        if self.verbose:
            _out(text)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """Shutdown, and agent.ForwardSignals: the child gets the same signal."""
        self.shutdown.set()
        self.wake.set()
        child = self.child
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except OSError as err:
                _err(f"Warning, could not forward signal: {err}")

    def start_child(self, args: list[str], shell: bool, pass_stdin: bool) -> bool:
        """startChild: spawn, then a watcher thread that reaps it; False (after the error) if it cannot start."""
        self.info("Starting handler")
        argv = child_argv(args, shell)
        if not argv or not argv[0]:
            _err("Error executing handler: need an executable to run")
            return False
        if "/" not in argv[0] and shutil.which(argv[0]) is None:
            _err(f'Error starting handler: exec: "{argv[0]}": executable file not found in $PATH')
            return False
        if pass_stdin:
            self.info("Stdin passed to handler process")
        try:
            self.child = subprocess.Popen(
                argv,
                stdin=None if pass_stdin else subprocess.DEVNULL,
                env={**os.environ, "CONSUL_LOCK_HELD": "true"},
            )
        except OSError as err:
            _err(f"Error starting handler: fork/exec {argv[0]}: {(err.strerror or str(err)).lower()}")
            return False
        threading.Thread(target=self._reap, args=(self.child,), name="lock-child", daemon=True).start()
        return True

    def _reap(self, child: subprocess.Popen[bytes]) -> None:
        returncode = child.wait()
        if returncode != 0:
            self.child_failed = True
            _err(f"Error running handler: {go_exit_error(returncode)}")
        self.child_done.set()
        self.wake.set()

    def kill_child(self) -> None:
        """killChild: SIGTERM, wait out the grace period, then SIGKILL."""
        child = self.child
        if child is None:
            self.info("No child process to kill")
            return
        self.info(f"Terminating child pid {child.pid}")
        if child.poll() is None:
            try:
                child.terminate()
            except OSError as err:
                _err(f"Failed to terminate {child.pid}: {err}")
                return
        if self.child_done.wait(KILL_GRACE):
            self.info("Child terminated")
            return
        self.info(f"Child did not exit after grace period of {go_duration(KILL_GRACE)}")
        self.info(f"Killing child pid {child.pid}")
        try:
            child.kill()
        except OSError as err:
            _err(f"Failed to kill {child.pid}: {err}")
            return
        self.child_done.wait(KILL_GRACE)


def run_lock(values: dict[str, Any], args: list[str]) -> int:
    limit = values.get("n", 1)
    if limit <= 0:
        _err("Lock holder limit must be positive")
        return 1
    if len(args) < 2:
        _err("Key prefix and child command must be specified")
        return 1
    prefix, child_args = args[0].removeprefix("/"), args[1:]
    timeout = values.get("timeout", values.get("try", 0.0))
    if timeout < 0:
        _err("Timeout must be positive")
        return 1
    name = values.get("name") or f"Consul lock for '{' '.join(child_args)}' at '{prefix}'"
    monitor_retry = values.get("monitor-retry", DEFAULT_MONITOR_RETRY)
    if monitor_retry < 0:
        _err("Number for 'monitor-retry' must be >= 0")
        return 1
    reached = _reached_agent(values)
    if reached is None:
        return 1
    client = reached[0]
    run = _Run(verbose=bool(values.get("verbose")))
    if limit == 1:
        key = go_path_join(prefix, SEMAPHORE_KEY)  # as Consul: a lock and a semaphore on one prefix conflict
        run.info(f"Setting up lock at path: {key}")
    else:
        key = prefix
        run.info(f"Setting up semaphore (limit {limit}) at prefix: {key}")
    options = LockOptions(
        key=key,
        limit=limit,
        session_name=name,
        session_ttl=values.get("ttl") or DEFAULT_SESSION_TTL,
        monitor_retries=monitor_retry,
        monitor_retry_time=MONITOR_RETRY_TIME,
        lock_try_once=timeout > 0,
        **({"lock_wait_time": timeout} if timeout > 0 else {}),
    )
    try:
        lock = Lock(client, options) if limit == 1 else Semaphore(client, options)
    except ValueError as err:
        _err(f"Lock setup failed: invalid SessionTTL: {err}")
        return 1
    with _signals_to(run):
        return _hold_and_run(run, lock, child_args, values)


def _hold_and_run(run: _Run, lock: Lock | Semaphore, child_args: list[str], values: Mapping[str, Any]) -> int:
    run.info("Attempting lock acquisition")
    try:
        acquired = lock.acquire(run.shutdown, on_lost=run.wake.set)
    except LockError as err:
        _err(f"Lock acquisition failed: {err}")
        return 1
    if not acquired:
        _err("Shutdown triggered or timeout during lock acquisition")
        return 1
    child_code = 0
    if run.shutdown.is_set():
        _err("Shutdown triggered during lock acquisition")
    elif not run.start_child(child_args, bool(values.get("shell", True)), bool(values.get("pass-stdin"))):
        child_code = 2
    else:
        while not (run.shutdown.is_set() or lock.lost.is_set() or run.child_done.is_set()):
            run.wake.wait(1.0)
            run.wake.clear()
        if run.shutdown.is_set():
            run.info("Shutdown triggered, killing child")
            run.kill_child()
        elif lock.lost.is_set() and not run.child_done.is_set():
            run.info("Lock lost, killing child")
            run.kill_child()
        else:
            child_code = 2 if run.child_failed else 0
            run.info("Child terminated, releasing lock")
    try:
        lock.release()
    except LockError as err:
        _err(f"Lock release failed: {err}")
        return 1
    try:
        lock.destroy()
    except LockInUseError:
        run.info("Cleanup aborted, lock in use")
    except LockError as err:
        _err(f"Lock cleanup failed: {err}")
        return 1
    else:
        run.info("Cleanup succeeded")
    return child_code if values.get("child-exit-code") else 0


class _signals_to:
    """SIGINT/SIGTERM go to ``run.on_signal`` while the lock runs (main thread only), then the old handlers."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in SHUTDOWN_SIGNALS:
                self.saved[sig] = signal.signal(sig, self.run.on_signal)

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


LOCK_FLAGS = (
    Flag("child-exit-code", "Exit 2 if the child process exited with an error if this is true, otherwise this "
         "doesn't propagate an error from the child. The default value is false.", is_bool=True),
    Flag("monitor-retry", "Number of times to retry if Consul returns a 500 error while monitoring the lock. This "
         "allows riding out brief periods of unavailability without causing leader elections, but increases the "
         "amount of time required to detect a lost lock in some cases. The default value is 3, with a 1s wait "
         "between retries. Set this value to 0 to disable retires.", default="3", placeholder="<int>",
         convert=go_int),
    Flag("n", "Optional limit on the number of concurrent lock holders. The underlying implementation switches "
         "from a lock to a semaphore when the value is greater than 1. The default value is 1.", default="1",
         placeholder="<int>", convert=go_int),
    Flag("name", "Optional name to associate with the lock session. It not provided, one is generated based on "
         "the provided child command.", placeholder="<string>"),
    Flag("pass-stdin", "Pass stdin to the child process.", is_bool=True),
    Flag("shell", "Use a shell to run the command (can set a custom shell via the SHELL environment variable).",
         is_bool=True, default="true"),
    Flag("timeout", 'Maximum amount of time to wait to acquire the lock, specified as a duration like "1s" or '
         '"3h". The default value is 0.', default="0s", placeholder="<duration>", convert=_go_duration_flag),
    Flag("try", "DEPRECATED. Use -timeout instead.", default="0s", placeholder="<duration>",
         convert=_go_duration_flag),
    Flag("ttl", "TTL of the lock's session, as a duration (10s to 24h); it is renewed every half TTL. A holder "
         "that dies keeps the lock until the agent invalidates the session (after twice the TTL) plus the "
         "lock-delay. triumvir's addition; Consul always uses 15s. The default value is 15s.", default="15s",
         placeholder="<duration>"),
    Flag("verbose", "Enable verbose (debugging) output.", is_bool=True),
)  # fmt: skip

COMMANDS: Mapping[str, Command] = {
    "lock": Command(
        "lock",
        "Execute a command holding a lock",
        "Usage: consul lock [options] prefix child...\n\n"
        "  Acquires a lock or semaphore at a given path, and invokes a child process\n"
        "  when successful. The child process can assume the lock is held while it\n"
        "  executes. If the lock is lost or communication is disrupted the child\n"
        "  process will be sent a SIGTERM signal and given time to gracefully exit.\n"
        "  After the grace period expires the process will be hard terminated.\n\n"
        "  When -n=1, only a single lock holder or leader exists providing mutual\n"
        "  exclusion. Setting a higher value switches to a semaphore allowing multiple\n"
        "  holders to coordinate.\n\n"
        "  The prefix provided must have write privileges.",
        (*HTTP_FLAGS, *SERVER_FLAGS, *LOCK_FLAGS),
        run_lock,
        uses_server_flags=True,
    ),
}
