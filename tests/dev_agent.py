"""One real `python -m agent -dev` for end-to-end tests: a single server that elects itself and serves /v1/kv.

Used by the CLI tests (kv, lock) and, through tests/pyconsul_conftest.py, by the py-consul suite harness.  The
agent gets the address it is given and free ports (started again if one was taken before it bound it), is ready
once a KV write succeeds (the leader is elected and the store applies) and its catalog is announced, and is stopped
by its PID.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import requests
from procs import Proc, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0  # seconds: start, elect itself, apply a first write (generous: the machine is shared)


#: free_port probes a port and lets it go before the agent binds it: another process may take it in between. An
#: agent that exits naming a taken port (``listen tcp IP:PORT: address already in use``) is started again.
PORT_ATTEMPTS = 3
PORT_TAKEN = re.compile(r"listen (?:tcp|udp) \S+:(\d+): address already in use")


class PortTaken(Exception):
    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} was taken")
        self.port = port


@contextlib.contextmanager
def start_dev_agent(workdir: Path, ip: str, *extra: str, http_port: int | None = None) -> Iterator[str]:
    """Run a -dev agent on ``ip`` until the block ends (HTTP on ``http_port``, else a free port); yields its HTTP
    address `ip:port`.

    (No import of tests/conftest.py here: the py-consul harness loads this module next to py-consul's own
    conftest modules, where that name means something else.)
    """
    wanted = http_port
    for attempt in range(PORT_ATTEMPTS):
        port = free_port(ip) if wanted is None else wanted
        log = workdir / (f"dev-{ip}.log" if attempt == 0 else f"dev-{ip}-{attempt}.log")
        proc = _launch(log, ip, port, extra)
        addr = f"{ip}:{port}"
        try:
            _wait_ready(proc, addr)
        except PortTaken as exc:
            proc.close()
            if attempt + 1 == PORT_ATTEMPTS:
                taken = f"the -dev agent found a port taken {PORT_ATTEMPTS} times"
                raise AssertionError(f"{taken}:\n{proc.log_tail()}") from exc
            if exc.port == wanted:
                wanted = None  # the port asked for is held by another process: any free one will do
            continue
        except BaseException:
            proc.stop()
            proc.close()
            raise
        break
    try:
        yield addr
    finally:
        proc.stop()
        proc.close()


def _launch(log: Path, ip: str, http_port: int, extra: tuple[str, ...]) -> Proc:
    serf_port, server_port = free_port(ip), free_port(ip)
    argv = [
        sys.executable, "-m", "agent", "-dev", "-node", f"dev-{ip}", "-bind", ip, "-client", ip,
        "-http-port", str(http_port), "-dns-port", "-1", "-serf-lan-port", str(serf_port),
        "-server-port", str(server_port), *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return Proc(f"dev:{ip}", argv, log, env=env)


def _wait_ready(proc: Proc, addr: str) -> None:
    """Until the agent takes a KV write and has announced its catalog; PortTaken or AssertionError if it exits."""

    def ready() -> bool:
        if not proc.alive():
            return True  # checked below: waiting on a dead agent would only run out the clock
        reply = requests.put(f"http://{addr}/v1/kv/_triumvir_ready", data=b"", timeout=5)
        return reply.status_code == 200 and reply.text.strip() == "true"

    def settled() -> bool:
        """The agent announced its catalog (its ``tcv`` gossip tag, set in its first moments): until then two
        reads of /v1/agent/self and /v1/agent/members may show our member before and after that tag."""
        self_member = requests.get(f"http://{addr}/v1/agent/self", timeout=5).json()["Member"]
        return not proc.alive() or "tcv" in self_member["Tags"]

    for probe, what in ((ready, "accept a KV write"), (settled, "announce its catalog")):
        wait_for(probe, timeout=READY_TIMEOUT, what=f"-dev agent at {addr} to {what}", diagnostics=proc.log_tail)
        if not proc.alive():
            proc.wait(5)
            taken = PORT_TAKEN.search(proc.log_tail())
            if taken:
                raise PortTaken(int(taken[1]))
            raise AssertionError(f"the -dev agent exited {proc.popen.returncode}:\n{proc.log_tail()}")
    requests.delete(f"http://{addr}/v1/kv/_triumvir_ready", timeout=5).raise_for_status()
