"""``-pid-file``/``pid_file`` (issue 12) with a real agent process: the PID is there while the agent runs and gone
after SIGTERM, SIGINT and a graceful ``leave``; an unwritable path stops the agent before it binds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from procs import Proc, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
IP = "127.0.0.1"
START_TIMEOUT = 60.0  # generous: the machine is shared


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return env


def _start(tmp_path: Path, *extra: str) -> tuple[Proc, str, Path]:
    http, serf, server = free_port(IP), free_port(IP), free_port(IP)
    pid_path = tmp_path / "run" / "agent.pid"
    pid_path.parent.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "agent", "-dev", "-node", "pid-test", "-bind", IP, "-client", IP,
            "-http-port", str(http), "-dns-port", "-1", "-serf-lan-port", str(serf), "-server-port", str(server),
            "-pid-file", str(pid_path), *extra]  # fmt: skip
    proc = Proc("pid-agent", argv, tmp_path / "agent.log", env=_env())
    addr = f"{IP}:{http}"

    def up() -> bool:
        assert proc.alive(), proc.log_tail()
        return requests.get(f"http://{addr}/v1/agent/self", timeout=5).status_code == 200

    wait_for(up, timeout=START_TIMEOUT, what="the agent's HTTP API", diagnostics=proc.log_tail)
    return proc, addr, pid_path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_pid_file_lives_as_long_as_the_agent(tmp_path: Path, sig: int) -> None:
    proc, _addr, pid_path = _start(tmp_path)
    try:
        assert pid_path.read_text() == str(proc.pid)
        # a -dev server exits without a leave on either signal (Consul's defaults): 1, "Graceful shutdown disabled"
        assert proc.stop(sig, grace=30) == 1, proc.log_tail()
        assert not pid_path.exists()
    finally:
        proc.close()


def test_the_pid_file_goes_after_a_graceful_leave(tmp_path: Path) -> None:
    proc, addr, pid_path = _start(tmp_path)
    try:
        assert pid_path.read_text() == str(proc.pid)
        out = subprocess.run([sys.executable, "-m", "agent", "leave", "-http-addr", addr], env=_env(),
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert proc.wait(30) == 0, proc.log_tail()
        assert not pid_path.exists()
    finally:
        proc.close()


def test_an_unwritable_pid_file_stops_the_agent(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "agent.pid"
    out = subprocess.run(
        [sys.executable, "-m", "agent", "-dev", "-bind", IP, "-client", IP, "-http-port", str(free_port(IP)),
         "-dns-port", "-1", "-pid-file", str(missing)],
        env=_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert f"==> Error starting agent: Could not open pid file: No such file or directory: {missing}" in out.stderr


def test_a_taken_http_port_stops_the_agent_naming_the_address(tmp_path: Path) -> None:
    """A failure to start names the listener it could not open (as Go's net package words it), not only the errno."""
    with socket.socket() as taken:
        taken.bind((IP, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "agent", "-dev", "-bind", IP, "-client", IP, "-http-port", str(port),
             "-dns-port", "-1", "-data-dir", str(tmp_path / "data")],
            env=_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert f"==> Error starting agent: [Errno 98] listen tcp {IP}:{port}: address already in use" in out.stderr
