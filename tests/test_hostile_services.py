"""Issue 16 items 5-8 and 13: what one API call or one damaged data dir did to a real agent.

Real `python -m agent` processes on loopback (tests/consul_agents.py), real HTTP; the runner test drives
agent.services.checks on trio's MockClock with a real (refused) TCP dial.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from urllib.parse import quote

import requests
import trio
import trio.testing
from consul_agents import CheckedServer, Cluster, ConsulAgent
from procs import free_port, wait_for

from agent.services.checks import run_check
from agent.services.definitions import CheckDef


def put(agent: ConsulAgent, path: str, body: object = None, *, raw: str | None = None) -> requests.Response:
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return requests.put(f"http://{agent.http_addr}{path}", data=data, timeout=10)


def get(agent: ConsulAgent, path: str) -> dict:
    r = requests.get(f"http://{agent.http_addr}{path}", timeout=10)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def set_config(agent: ConsulAgent, **changes: object) -> None:
    path = agent.config_dir / "agent.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_persisted_script_checks_are_not_rearmed_once_scripts_are_off(cluster: Cluster, tmp_path: Path) -> None:
    """Item 5: an API-registered script check must stop with enable_script_checks off after a restart."""
    a = cluster.start("a", server=True, extra={"enable_script_checks": True})
    marker = tmp_path / "ran"
    script = ["sh", "-c", f"echo x >> {marker}"]
    r = put(a, "/v1/agent/service/register",
            {"Name": "job", "Port": 1, "Check": {"CheckID": "job-script", "Args": script, "Interval": "1s"}})
    assert r.status_code == 200, r.text
    assert put(a, "/v1/agent/check/register", {"Name": "top", "Args": script, "Interval": "1s"}).status_code == 200
    wait_for(lambda: marker.exists() and len(marker.read_text().split()) >= 2, timeout=15, what="scripts ran")

    a.proc.stop()
    set_config(a, enable_script_checks=False)
    a = cluster.start("a", reuse=a)
    assert set(get(a, "/v1/agent/services")) == {"job"}  # the service itself is restored
    assert set(get(a, "/v1/agent/checks")) == set()
    log = a.proc.log_tail(200)
    assert "Failed to restore check, not re-armed and removed: check=job-script" in log
    assert "check=top" in log
    runs = marker.read_text()
    deadline_runs = [runs]
    wait_for(lambda: deadline_runs.append(marker.read_text()) or len(deadline_runs) > 4, timeout=10,
             interval=1.0, what="three check intervals")  # fmt: skip
    assert marker.read_text() == runs, "a script check still runs with scripts disabled"
    # Still gone after another restart (the persisted definitions were purged, as Consul purges them).
    a.proc.stop()
    set_config(a, enable_script_checks=True)
    a = cluster.start("a", reuse=a)
    assert set(get(a, "/v1/agent/checks")) == set()


def test_a_services_dir_replaced_by_a_file(cluster: Cluster) -> None:
    """Item 6: at start a clear exit 1 naming the path; at run time a clear 500 and nothing half-registered."""
    a = cluster.start("a", server=True)
    assert put(a, "/v1/agent/service/register", {"Name": "web", "Port": 80}).status_code == 200
    services = a.data_dir / "services"
    assert services.is_dir()

    # While running: the directory becomes a file.  The next registration fails cleanly.
    shutil.rmtree(services)
    services.write_text("not a directory")
    r = put(a, "/v1/agent/service/register", {"Name": "api", "Port": 81})
    assert r.status_code == 500
    assert set(get(a, "/v1/agent/services")) == {"web"}  # not live in memory either
    assert "failed to persist service 'api'" in r.text
    r = put(a, "/v1/agent/service/deregister/web")
    assert r.status_code == 500 and "failed to persist service 'web'" in r.text
    assert set(get(a, "/v1/agent/services")) == {"web"}
    assert "Traceback" not in a.proc.log_tail(300)

    # At start: exit 1, one line naming the path (Consul: "Failed reading services dir").
    a.proc.stop()
    a = cluster.start("a", reuse=a, wait_up=False)
    assert a.proc.wait(30) == 1
    log = a.proc.log_tail(20)
    assert f"==> Error starting agent: Failed reading services dir '{services}': Not a directory" in log, log


def test_every_registrable_service_id_can_be_deregistered(cluster: Cluster) -> None:
    """Item 7: IDs with `../`, a leading `/`, `//`, `?`, `%`: registered, then deregistered by their escaped
    path (Consul's advice for such IDs); an ID no path can carry is refused at registration."""
    a = cluster.start("a", server=True)
    odd = ["../x", "/lead", "a/b", "a//b", "x/..", "./", "q?x=1#f", "100%", "sp ace", "evil\ufffd", "a/./b"]
    for service_id in odd:
        r = put(a, "/v1/agent/service/register", {"Name": "odd", "ID": service_id, "Port": 1})
        assert r.status_code == 200, (service_id, r.text)
    assert set(get(a, "/v1/agent/services")) == set(odd)
    for service_id in odd:
        escaped = quote(service_id, safe="")
        assert get(a, f"/v1/agent/service/{escaped}")["ID"] == service_id
        r = put(a, f"/v1/agent/service/deregister/{escaped}")
        assert r.status_code == 200, (service_id, r.status_code, r.headers.get("Location"))
    assert get(a, "/v1/agent/services") == {}
    for bad in ("tab\there", "nl\n", "bell\u0007", "ls\u2028", ".", ".."):
        r = put(a, "/v1/agent/service/register", {"Name": "odd", "ID": bad, "Port": 1})
        assert r.status_code == 400 and "Invalid service ID" in r.text, (bad, r.status_code, r.text)
        r = put(a, "/v1/agent/check/register", {"Name": "c", "CheckID": bad, "TTL": "10s"})
        assert r.status_code == 400 and "Invalid check ID" in r.text, (bad, r.status_code, r.text)
    assert get(a, "/v1/agent/services") == {} and get(a, "/v1/agent/checks") == {}


def test_deep_json_bad_check_urls_and_bad_join_targets_are_clean_errors(cluster: Cluster) -> None:
    """Item 8: nesting -> 400 on every JSON endpoint; an HTTP check on port 99999 -> 400; bad join targets ->
    Consul's 500 text; never a traceback in the log."""
    a = cluster.start("a", server=True)
    assert put(a, "/v1/agent/service/register", {"Name": "web", "Port": 1, "Check": {"TTL": "30s"}}).status_code == 200
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/v1/agent/service/register", "/v1/agent/check/register", "/v1/agent/check/update/service:web"):
        r = put(a, path, raw=deep)
        assert r.status_code == 400 and "exceeded max depth" in r.text, (path, r.status_code, r.text[:200])
        r = put(a, path, raw='{"Name": ' + deep + "}")
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
    for url in ("http://127.0.0.1:99999/", "http://:80/", "ftp://127.0.0.1/", "http://[::1/", "http://h:x/"):
        r = put(a, "/v1/agent/check/register", {"Name": "h", "HTTP": url, "Interval": "1s"})
        assert r.status_code == 400 and "Invalid check: HTTP URL" in r.text, (url, r.status_code, r.text)
        r = put(a, "/v1/agent/service/register", {"Name": "s", "Port": 1, "Check": {"HTTP": url, "Interval": "1s"}})
        assert r.status_code == 400, (url, r.status_code, r.text)
    assert set(get(a, "/v1/agent/checks")) == {"service:web"}
    for target in ("no-such-host.invalid", "127.0.0.1:99999", "127.0.0.1:notaport", "[::1", "a..b:80",
                   "x" * 300, "%ff%fe"):  # fmt: skip
        r = put(a, f"/v1/agent/join/{target}")
        assert r.status_code == 500 and r.text.startswith("1 error occurred:"), (target, r.status_code, r.text)
    assert a.proc.alive()
    log = a.proc.log_tail(400)
    assert "Traceback" not in log and "RecursionError" not in log, log


def test_a_check_runner_survives_what_would_have_killed_it() -> None:
    """Item 8: a check whose run raises (here a URL that passed no validation: port 99999) is reported critical
    on every interval, never left dead."""
    for check, expected in (
        (CheckDef(id="h", name="h", http="http://127.0.0.1:99999/", interval=1.0, timeout=1.0), "out of range"),
        # a body that cannot be encoded (a lone surrogate from older persisted state): the runner itself raises
        (CheckDef(id="b", name="b", http="http://127.0.0.1:9/", method="POST", body="\ud800", interval=1.0,
                  timeout=1.0), "check failed to run: UnicodeEncodeError"),
    ):  # fmt: skip
        reports: list[tuple[str, str]] = []

        async def main(check: CheckDef = check, reports: list[tuple[str, str]] = reports) -> None:
            with trio.move_on_after(5.5):
                await run_check(check, lambda s, o: reports.append((s, o)), rng=random.Random(1))

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        assert len(reports) >= 4 and all(status == "critical" for status, _ in reports), reports
        assert expected in reports[0][1], reports[0]


def test_credentials_in_an_http_check_url_are_masked(cluster: Cluster, checked_server: CheckedServer) -> None:
    """Item 13: `user:password@` and `?token=` never appear in a check's Output (passing or failing)."""
    a = cluster.start("a", server=True)
    ok = checked_server.url.replace("http://", "http://alice:hunter2@") + "?token=s3cr3t&view=full"
    closed_port = free_port(a.ip)
    failing = f"http://bob:pa55@{a.ip}:{closed_port}/health?access_token=t0ps3cr3t"
    for check_id, url in (("ok", ok), ("bad", failing)):
        r = put(a, "/v1/agent/check/register", {"CheckID": check_id, "Name": check_id, "HTTP": url, "Interval": "1s"})
        assert r.status_code == 200, r.text

    def outputs() -> dict[str, str]:
        return {i: c["Output"] for i, c in get(a, "/v1/agent/checks").items()}

    wait_for(lambda: all(outputs().values()), timeout=15, what="both checks ran")
    out = outputs()
    for text in out.values():
        for secret in ("hunter2", "s3cr3t", "pa55", "t0ps3cr3t"):
            assert secret not in text, text
    assert "http://alice:***@" in out["ok"] and "token=***&view=full" in out["ok"] and " 200 OK" in out["ok"]
    assert f"http://bob:***@{a.ip}:{closed_port}/health?access_token=***" in out["bad"]
