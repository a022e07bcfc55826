"""`python -m agent lock` (agent/cli_lock.py, agent/lockclient.py): argument checks, then real processes.

The end-to-end tests run `lock` processes against one real `-dev` agent.  Their children are small shell loops
that record what they see in files and end by themselves within a bounded time; every wait is a condition with a
deadline (the lock key's session, a file appearing, a process exiting), never a fixed sleep.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import next_loopback_ip
from dev_agent import start_dev_agent
from procs import Proc, wait_for
from test_cli import FakeAgent, _clean_env, dead_addr, fake  # noqa: F401 -- fixtures: `fake`, autouse `_clean_env`
from test_cli_kv import run

from agent.kvapi import LOCK_FLAG_VALUE

REPO = Path(__file__).resolve().parent.parent
WAIT = 30.0  # seconds for any one condition; generous, the machine is shared


# --------------------------------------------------------------------------------------------------------------
# Arguments, before anything is created


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        (["-n", "0", "p", "true"], "Lock holder limit must be positive\n"),
        (["p"], "Key prefix and child command must be specified\n"),
        (["-timeout=-1s", "p", "true"], "Timeout must be positive\n"),
        (["-monitor-retry=-1", "p", "true"], "Number for 'monitor-retry' must be >= 0\n"),
    ],
)
def test_argument_errors(capsys: pytest.CaptureFixture[str], argv: list[str], err: str) -> None:
    assert run(capsys, "lock", "-http-addr", dead_addr(), *argv) == (1, "", err)


def test_flag_type_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "lock", "-timeout=soon", "p", "true")
    assert code == 1
    assert err.startswith('invalid value "soon" for flag -timeout: parse error\nUsage: consul lock [options]')
    code, _, err = run(capsys, "lock", "-n=two", "p", "true")
    assert err.startswith('invalid value "two" for flag -n: parse error\n')


def test_unreachable_agent(capsys: pytest.CaptureFixture[str]) -> None:
    addr = dead_addr()
    assert run(capsys, "lock", "-http-addr", addr, "p", "true") == (
        1,
        "",
        f'Error querying Consul agent: Get "http://{addr}/v1/agent/self": dial tcp {addr}: connect: connection '
        "refused\n",
    )


@pytest.mark.parametrize(
    ("argv", "err"),
    [
        (["-ttl=forever", "p", "true"], 'Lock setup failed: invalid SessionTTL: time: invalid duration "forever"\n'),
    ],
)  # fmt: skip
def test_setup_errors_create_nothing(
    fake: FakeAgent, capsys: pytest.CaptureFixture[str], argv: list[str], err: str  # noqa: F811
) -> None:
    fake.answer("GET", "/v1/agent/self", body={"Config": {"NodeName": "n1"}})
    assert run(capsys, "lock", "-http-addr", fake.addr, *argv) == (1, "", err)
    assert [(s.method, s.path) for s in fake.seen] == [("GET", "/v1/agent/self")]


# --------------------------------------------------------------------------------------------------------------
# Against a real agent


@pytest.fixture(scope="module")
def dev_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_dev_agent(tmp_path_factory.mktemp("lockdev"), next_loopback_ip()) as addr:
        yield addr


class Locks:
    """`lock` processes for one test, all stopped by PID at the end."""

    def __init__(self, addr: str, tmp_path: Path) -> None:
        self.addr, self.tmp_path, self.procs = addr, tmp_path, list[Proc]()

    def start(self, *args: str) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
        env.update(CONSUL_HTTP_ADDR=self.addr, PYTHONPATH=str(REPO), SHELL="/bin/sh")
        name = f"lock{len(self.procs)}"
        proc = Proc(name, [sys.executable, "-m", "agent", "lock", *args], self.tmp_path / f"{name}.log", env=env)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.close()

    def kv(self, key: str) -> dict | None:
        reply = requests.get(f"http://{self.addr}/v1/kv/{key}", timeout=10)
        return None if reply.status_code == 404 else reply.json()[0]

    def holder(self, key: str) -> str:
        pair = self.kv(key)
        return (pair or {}).get("Session") or ""

    def sessions(self, prefix: str = "") -> list[dict]:
        """The agent's sessions; with ``prefix``, only those of `lock` processes on it (by their default name)."""
        every = requests.get(f"http://{self.addr}/v1/session/list", timeout=10).json()
        return [s for s in every if s.get("Name", "").endswith(f" at '{prefix}'")] if prefix else every

    def exit_code(self, proc: Proc) -> int:
        code = wait_for(lambda: proc.popen.poll() is not None, timeout=WAIT, what=f"{proc.name} to exit",
                        diagnostics=proc.log_tail) and proc.popen.returncode  # fmt: skip
        assert code is not None
        return code


@pytest.fixture
def locks(dev_agent: str, tmp_path: Path) -> Iterator[Locks]:
    group = Locks(dev_agent, tmp_path)
    yield group
    group.close()


def bounded_wait_for_file(path: Path) -> str:
    """Shell: wait (at most ~30 s) for ``path`` to exist -- the child's stand-in for work."""
    return f'i=0; while [ ! -e "{path}" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done'


def test_child_runs_holding_the_lock_and_everything_is_cleaned_up(locks: Locks, tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    proc = locks.start("-name=job", "jobs/a", f'echo "held=$CONSUL_LOCK_HELD" > {seen}')
    assert locks.exit_code(proc) == 0
    assert seen.read_text() == "held=true\n"
    # Released, the session destroyed and the key removed since nobody else holds it.
    assert locks.kv("jobs/a/.lock") is None
    assert [s for s in locks.sessions() if s.get("Name") == "job"] == []


def test_the_key_is_held_with_the_lock_flag_while_the_child_runs(locks: Locks, tmp_path: Path) -> None:
    release = tmp_path / "release"
    proc = locks.start("jobs/b", bounded_wait_for_file(release))
    holder = wait_for(lambda: locks.holder("jobs/b/.lock"), timeout=WAIT, what="the lock to be held",
                      diagnostics=proc.log_tail)  # fmt: skip
    pair = locks.kv("jobs/b/.lock")
    assert pair is not None and pair["Flags"] == LOCK_FLAG_VALUE
    session = next(s for s in locks.sessions() if s["ID"] == holder)
    assert (session["Name"], session["TTL"], session["Behavior"]) == ("Consul lock for '"
                                                                       + bounded_wait_for_file(release)
                                                                       + "' at 'jobs/b'", "15s", "release")
    release.touch()
    assert locks.exit_code(proc) == 0
    assert locks.kv("jobs/b/.lock") is None


def test_a_second_lock_waits_until_the_first_releases(locks: Locks, tmp_path: Path) -> None:
    log, release1 = tmp_path / "log", tmp_path / "release1"
    first = locks.start("-ttl=10s", "jobs/c", f"echo start1 >> {log}; {bounded_wait_for_file(release1)}; "
                        f"echo stop1 >> {log}")  # fmt: skip
    wait_for(lambda: log.exists(), timeout=WAIT, what="the first child to start", diagnostics=first.log_tail)
    second = locks.start("jobs/c", f"echo start2 >> {log}")
    # The second has its session and is blocked on the key: two sessions, one holder, its child not started.
    wait_for(lambda: len(locks.sessions("jobs/c")) == 2, timeout=WAIT, what="the second lock's session",
             diagnostics=second.log_tail)  # fmt: skip
    assert second.alive()
    assert log.read_text() == "start1\n"
    release1.touch()
    assert locks.exit_code(first) == 0
    assert locks.exit_code(second) == 0
    assert log.read_text() == "start1\nstop1\nstart2\n"
    assert locks.kv("jobs/c/.lock") is None


def test_kill_9_of_the_holders_child_hands_the_lock_on(locks: Locks, tmp_path: Path) -> None:
    pid_file, took = tmp_path / "pid", tmp_path / "took"
    first = locks.start("-child-exit-code", "jobs/d", f"echo $$ > {pid_file}; exec sleep 60")
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=WAIT,
                       what="the child's pid", diagnostics=first.log_tail))  # fmt: skip
    second = locks.start("jobs/d", f"echo took > {took}")
    wait_for(lambda: len(locks.sessions("jobs/d")) == 2, timeout=WAIT, what="the second lock's session")
    os.kill(pid, signal.SIGKILL)
    assert locks.exit_code(first) == 2  # -child-exit-code: the child failed
    assert "Error running handler: signal: killed" in first.log_path.read_text()
    assert locks.exit_code(second) == 0
    assert took.read_text() == "took\n"


def test_a_lost_lock_stops_the_child(locks: Locks, tmp_path: Path) -> None:
    """Destroying the holder's session (what an agent failure does) releases the key: the child gets SIGTERM."""
    started, termed = tmp_path / "started", tmp_path / "termed"
    proc = locks.start("jobs/e", f'trap "echo TERM > {termed}; exit 3" TERM; touch {started}; '
                       f"{bounded_wait_for_file(tmp_path / 'never')}")  # fmt: skip
    holder = wait_for(lambda: started.exists() and locks.holder("jobs/e/.lock"), timeout=WAIT,
                      what="the child to run holding the lock", diagnostics=proc.log_tail)  # fmt: skip
    requests.put(f"http://{locks.addr}/v1/session/destroy/{holder}", timeout=10).raise_for_status()
    assert locks.exit_code(proc) == 0  # without -child-exit-code the child's failure is not ours
    assert termed.read_text() == "TERM\n"


def test_sigterm_stops_the_child_and_releases(locks: Locks, tmp_path: Path) -> None:
    started, termed = tmp_path / "started", tmp_path / "termed"
    proc = locks.start("jobs/f", f'trap "echo TERM >> {termed}; exit 0" TERM; touch {started}; '
                       f"{bounded_wait_for_file(tmp_path / 'never')}")  # fmt: skip
    wait_for(lambda: started.exists() and locks.holder("jobs/f/.lock"), timeout=WAIT, what="the lock to be held",
             diagnostics=proc.log_tail)  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    assert locks.exit_code(proc) == 0
    assert termed.read_text().startswith("TERM\n")  # forwarded, then sent again by the kill sequence
    assert locks.kv("jobs/f/.lock") is None
    assert locks.sessions("jobs/f") == []


def test_timeout_gives_up_while_another_holds(locks: Locks, tmp_path: Path) -> None:
    release = tmp_path / "release"
    holder = locks.start("jobs/g", bounded_wait_for_file(release))
    wait_for(lambda: locks.holder("jobs/g/.lock"), timeout=WAIT, what="the lock to be held",
             diagnostics=holder.log_tail)  # fmt: skip
    waiter = locks.start("-timeout=1s", "jobs/g", "echo never")
    assert locks.exit_code(waiter) == 1
    assert waiter.log_path.read_text() == "Shutdown triggered or timeout during lock acquisition\n"
    release.touch()
    assert locks.exit_code(holder) == 0


# --------------------------------------------------------------------------------------------------------------
# -n N: a semaphore


def test_semaphore_runs_n_at_once_and_the_next_waits(locks: Locks, tmp_path: Path) -> None:
    release = {i: tmp_path / f"release{i}" for i in range(3)}
    started = {i: tmp_path / f"started{i}" for i in range(3)}
    procs = {}
    for i in (0, 1):
        procs[i] = locks.start("-n=2", "sem/a", f"touch {started[i]}; {bounded_wait_for_file(release[i])}")
    wait_for(lambda: started[0].exists() and started[1].exists(), timeout=WAIT, what="two holders at once",
             diagnostics=lambda: procs[0].log_tail() + procs[1].log_tail())  # fmt: skip
    procs[2] = locks.start("-n=2", "sem/a", f"touch {started[2]}; {bounded_wait_for_file(release[2])}")
    # The third is a contender (its key exists, with its session) but not a holder, and its child waits.
    wait_for(lambda: len(locks.sessions("sem/a")) == 3, timeout=WAIT, what="the third contender's session")
    wait_for(lambda: sum(1 for p in requests.get(f"http://{locks.addr}/v1/kv/sem/a/?recurse", timeout=10).json()
                         if p.get("Session")) == 3, timeout=WAIT, what="three contender keys")  # fmt: skip
    state = json.loads(base64.b64decode(locks.kv("sem/a/.lock")["Value"]))
    assert state["Limit"] == 2 and len(state["Holders"]) == 2
    assert not started[2].exists()
    release[0].touch()
    assert locks.exit_code(procs[0]) == 0
    wait_for(started[2].exists, timeout=WAIT, what="the third to take the freed slot", diagnostics=procs[2].log_tail)
    release[1].touch()
    release[2].touch()
    assert locks.exit_code(procs[1]) == 0
    assert locks.exit_code(procs[2]) == 0
    # The last one out removed the coordination key; the contender keys went with their sessions.
    assert requests.get(f"http://{locks.addr}/v1/kv/sem/a/?recurse", timeout=10).status_code == 404


def test_semaphore_conflicts(locks: Locks, tmp_path: Path) -> None:
    release = tmp_path / "release"
    holder = locks.start("-n=2", "sem/b", bounded_wait_for_file(release))
    wait_for(lambda: locks.kv("sem/b/.lock"), timeout=WAIT, what="the semaphore to be set up",
             diagnostics=holder.log_tail)  # fmt: skip
    other_limit = locks.start("-n=3", "sem/b", "echo never")
    assert locks.exit_code(other_limit) == 1
    assert other_limit.log_path.read_text() == (
        "Lock acquisition failed: semaphore limit conflict (lock: 2, local: 3)\n"
    )
    as_lock = locks.start("sem/b", "echo never")  # a lock on a semaphore's prefix: the same .lock key
    assert locks.exit_code(as_lock) == 1
    assert as_lock.log_path.read_text() == "Lock acquisition failed: Existing key does not match lock use\n"
    release.touch()
    assert locks.exit_code(holder) == 0
