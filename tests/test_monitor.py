"""``/v1/agent/monitor`` and ``python -m agent monitor`` (issue 12): the agent's log lines streamed as they happen.

The HTTP tests serve http_fakes' FakeAgent with a real LogHub installed on the root logger, over real loopback
sockets, and read the chunked response with an h11 client; the CLI test runs ``python -m agent monitor`` against
a real agent process.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import attrs
import h11
import trio
from consul_agents import ENV, Cluster
from http_fakes import FakeAgent, fetch, request_bytes, run, serving
from procs import wait_for

from agent.logstream import ConsulLineFormatter, LogHub, LogWatcher

TIMEOUT = 20
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4}) \[(DEBUG\]|INFO\] |WARN\] |ERROR\]) ")
test_log = logging.getLogger("agent.monitortest")


@attrs.define
class LoggingAgent(FakeAgent):
    logs: LogHub = attrs.Factory(lambda: LogHub(logging.INFO))


class Monitor:
    """A client of one streamed response: the head, then lines as they arrive."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self._pending = b""

    @classmethod
    async def open(cls, addr: tuple[str, int], target: str) -> Monitor:
        stream = await trio.open_tcp_stream(*addr)
        monitor = cls(stream)
        monitor.conn.send(h11.Request(method="GET", target=target, headers=[("Host", "x")]))
        monitor.conn.send(h11.EndOfMessage())
        await stream.send_all(request_bytes("GET", target))
        while monitor.status == 0:
            await monitor._pump()
        return monitor

    async def _pump(self) -> bool:
        """One event; False at the end of the response."""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            if isinstance(event, h11.Response):
                self.status = event.status_code
                self.headers = {k.decode(): v.decode() for k, v in event.headers.raw_items()}
            elif isinstance(event, h11.Data):
                self._pending += bytes(event.data)
                self.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return False
            return True

    async def line(self) -> str:
        while b"\n" not in self._pending:
            if not await self._pump():
                raise EOFError("the monitor response ended")
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    async def line_containing(self, text: str, *, log: logging.Logger | None = None, level: int = 0) -> str:
        """The next line with ``text``; while waiting, logs ``text`` again now and then (the watcher registers
        just after the response head is out)."""
        with trio.fail_after(TIMEOUT):
            while True:
                if log is not None:
                    log.log(level, "%s", text)
                with trio.move_on_after(0.2):
                    while True:
                        line = await self.line()
                        if text in line:
                            return line


def test_monitor_streams_lines_in_consuls_format_filtered_by_level() -> None:
    api = LoggingAgent()

    async def main() -> None:
        with api.logs.installed(), trio.fail_after(TIMEOUT):
            async with serving(api) as addr:
                debug = await Monitor.open(addr, "/v1/agent/monitor?loglevel=debug")
                assert debug.status == 200 and debug.headers.get("Transfer-Encoding") == "chunked"
                line = await debug.line_containing("debug-marker", log=test_log, level=logging.DEBUG)
                assert LINE.match(line) and line.endswith(" [DEBUG] agent.monitortest: debug-marker"), line
                # a message that names its module already keeps it ("agent: ...", as Consul's lines read)
                test_log.info("agent: Synced node info")
                assert (await debug.line_containing("Synced")).split(" ", 1)[1] == "[INFO]  agent: Synced node info"

                warn = await Monitor.open(addr, "/v1/agent/monitor?loglevel=WARN")
                await warn.line_containing("warn-marker", log=test_log, level=logging.WARNING)
                test_log.info("info-skipped")
                test_log.error("error-taken")
                assert (await warn.line()).endswith("[ERROR] agent.monitortest: error-taken")  # no info line between

                as_json = await Monitor.open(addr, "/v1/agent/monitor?logjson")
                entry = json.loads(await as_json.line_containing("json-marker", log=test_log, level=logging.INFO))
                assert (entry["@level"], entry["@module"], entry["@message"]) == ("info", "agent.monitortest",
                                                                                 "json-marker")  # fmt: skip
                bad = await fetch(addr, "GET", "/v1/agent/monitor?loglevel=loud")
                assert (bad.status, bad.body) == (400, b"Unknown log level: loud")
                for monitor in (debug, warn, as_json):
                    await monitor.stream.aclose()
                # every watcher is gone once its client hangs up, and the root level is back at the agent's
                await wait_until(lambda: not api.logs._watchers)
                assert logging.getLogger().level == logging.INFO

    run(main)


async def wait_until(condition: object) -> None:
    with trio.fail_after(TIMEOUT):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.01)


def test_a_reader_that_stops_reading_loses_lines_and_never_blocks_the_agent() -> None:
    api = LoggingAgent()
    lines = 20_000
    padding = "x" * 1000

    async def main() -> None:
        with api.logs.installed(), trio.fail_after(60):
            async with serving(api) as addr:
                stuck = await Monitor.open(addr, "/v1/agent/monitor")
                await stuck.line_containing("ready", log=test_log, level=logging.INFO)
                # 20 MB of log lines while the client reads nothing: logging is synchronous in this trio thread,
                # so if a full buffer or socket made it wait, this loop could never finish.
                for i in range(lines):
                    test_log.info("flood %d %s", i, padding)
                    if i % 1000 == 0:
                        await trio.sleep(0)  # let the server fill the socket meanwhile
                (watcher,) = api.logs._watchers
                assert len(watcher._lines) <= watcher.capacity
                # the agent still answers other requests
                assert (await fetch(addr, "GET", "/v1/status/leader")).status == 200
                # the reader, once it reads again, is told how many lines it lost
                dropped = await stuck.line_containing("Monitor dropped")
                count = int(re.search(r"Monitor dropped (\d+) logs during monitor request", dropped).group(1))
                received = stuck.body.count(b"flood ")
                assert count > 0 and received + count <= lines and received < lines

    run(main)


def test_watcher_buffer_and_root_level() -> None:
    async def main() -> None:
        root = logging.getLogger("monitor-test-root")
        root.setLevel(logging.WARNING)
        output = logging.StreamHandler()
        hub = LogHub(logging.WARNING, output)
        with hub.installed(root):
            assert (root.level, output.level) == (logging.WARNING, logging.WARNING)
            with hub.watch(logging.DEBUG, capacity=3) as watcher:
                assert (root.level, output.level) == (logging.DEBUG, logging.WARNING)  # stderr stays quiet
                for i in range(5):
                    root.debug("line %d", i)
                assert watcher.dropped == 2
                got = await watcher.next_lines()
                assert got[0] == "Monitor dropped 2 logs during monitor request"
                assert [g.rsplit(" ", 1)[1] for g in got[1:]] == ["0", "1", "2"]
                hub.set_base_level(logging.ERROR)
                assert (root.level, output.level) == (logging.DEBUG, logging.ERROR)
            assert root.level == logging.ERROR
        assert hub not in root.handlers

    run(main)


def test_watcher_wakes_from_another_thread() -> None:
    async def main() -> None:
        watcher = LogWatcher(logging.INFO, ConsulLineFormatter())
        record = logging.LogRecord("agent.x", logging.INFO, __file__, 1, "from a thread", None, None)
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, watcher.offer, record)
                lines = await watcher.next_lines()
        assert lines[0].endswith("[INFO]  agent.x: from a thread")

    run(main)


def test_cli_monitor_against_a_real_agent(cluster: Cluster, tmp_path: Path) -> None:
    agent = cluster.start("m1", server=True)
    out_path = tmp_path / "monitor.out"
    with out_path.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "agent", "monitor", f"-http-addr={agent.http_addr}",
                                 "-log-level=debug"], stdout=out, stderr=subprocess.STDOUT, env=ENV)  # fmt: skip
        try:
            # a reload logs at INFO ("Caught: signal=hangup" is not ours: the API reload logs its own lines)
            def seen() -> bool:
                agent.cli("reload")
                return "reload" in out_path.read_text().lower()

            wait_for(seen, timeout=TIMEOUT, what="a reload line in the monitor", diagnostics=cluster.diagnostics)
            lines = [ln for ln in out_path.read_text().splitlines() if ln]
            assert all(LINE.match(ln) for ln in lines), lines[:5]
        finally:
            proc.terminate()
            proc.wait(10)
    bad = agent.cli("monitor", "-log-level=loud")
    assert (bad.returncode, bad.stderr) == (1, "Error starting monitor: Unexpected response code: 400 (Unknown log "
                                               "level: loud)\n")  # fmt: skip
