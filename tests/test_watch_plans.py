"""`python -m agent watch`: Consul's watch plans (agent/watch_plans.py, sans-IO) and the command on a real agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from consul_agents import ENV, Cluster
from procs import Proc, wait_for

from agent.events import uuid_to_uint64
from agent.watch_plans import MAX_BACKOFF, PlanState, WatchError, parse_plan

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("watch_type, params, path, query", [
    ("key", {"key": "a/b c"}, "/v1/kv/a/b%20c", {}),
    ("keyprefix", {"prefix": "app/", "stale": True}, "/v1/kv/app/", {"recurse": "", "stale": ""}),
    ("services", {}, "/v1/catalog/services", {}),
    ("nodes", {}, "/v1/catalog/nodes", {}),
    ("service", {"service": "web", "tag": "v1", "passingonly": "true"}, "/v1/health/service/web",
     {"tag": "v1", "passing": "1"}),
    ("checks", {}, "/v1/health/state/any", {}),
    ("checks", {"state": "critical"}, "/v1/health/state/critical", {}),
    ("checks", {"service": "web"}, "/v1/health/checks/web", {}),
    ("event", {"name": "deploy"}, "/v1/event/list", {"name": "deploy"}),
])
def test_plans_ask_consuls_endpoints(watch_type: str, params: dict[str, Any], path: str,
                                     query: dict[str, str]) -> None:
    plan = parse_plan(watch_type, params)
    assert (plan.path, dict(plan.params)) == (path, query)


@pytest.mark.parametrize("watch_type, params, text", [
    ("bogus", {}, "Unsupported watch type: bogus"),
    ("key", {}, "Must specify a single key to watch"),
    ("keyprefix", {}, "Must specify a single prefix to watch"),
    ("service", {}, "Must specify a single service to watch"),
    ("checks", {"service": "a", "state": "any"}, "Cannot specify service and state"),
    ("services", {"key": "x", "name": "y"}, "Invalid parameters: [key name]"),
    ("service", {"service": "a", "passingonly": "maybe"}, "Failed to parse passingonly"),
])
def test_plan_errors_are_consuls(watch_type: str, params: dict[str, Any], text: str) -> None:
    with pytest.raises(WatchError) as err:
        parse_plan(watch_type, params)
    assert str(err.value).startswith(text)


def test_key_results_missing_is_null_and_pairs_take_api_kvpair_shape() -> None:
    plan = parse_plan("key", {"key": "k"})
    assert plan.result(404, None, None) is None
    entry = {"LockIndex": 0, "Key": "k", "Flags": 3, "Value": "dg==", "CreateIndex": 5, "ModifyIndex": 6}
    assert list(plan.result(200, [entry], None).items()) == [
        ("Key", "k"), ("CreateIndex", 5), ("ModifyIndex", 6), ("LockIndex", 0), ("Flags", 3), ("Value", "dg=="),
        ("Session", "")]
    assert parse_plan("keyprefix", {"prefix": "k"}).result(404, None, None) is None


def test_event_results_are_pruned_to_those_after_the_last_seen() -> None:
    ids = [f"00000000-0000-0000-0000-00000000000{i}" for i in range(1, 4)]
    events = [{"ID": i, "Name": "e"} for i in ids]
    plan = parse_plan("event", {})
    assert plan.result(200, events, None) == events
    assert plan.result(200, events, uuid_to_uint64(ids[0])) == events[1:]
    assert plan.result(200, events, uuid_to_uint64(ids[2])) == []
    assert plan.result(200, events, 12345) == events  # the last seen fell out of the ring: all of them


def test_plan_state_fires_on_first_answer_then_only_on_new_index_and_result() -> None:
    state = PlanState()
    assert state.query_index() == 0
    assert state.answered(10, "a") is True and state.query_index() == 10
    assert state.answered(10, "b") is False  # same index: nothing happened
    assert state.answered(11, "a") is False  # new index, same result
    assert state.answered(12, "c") is True and state.query_index() == 12
    assert state.answered(5, "d") is True and state.query_index() == 0  # backwards: reset to a non-blocking query
    assert state.answered(5, "d") is False and state.query_index() == 5


def test_event_plans_never_reset_their_index_when_it_goes_down() -> None:
    """uuidToUint64 is random: a lower index is a new event, not a restart (Consul issues 3443/3742)."""
    state = PlanState(monotonic=parse_plan("event", {}).monotonic)
    assert state.answered(10, ["a"]) is True
    assert state.answered(5, ["b"]) is True and state.query_index() == 5
    assert state.answered(5, ["a", "b"]) is False  # no non-blocking re-query that would hand over both again


def test_plan_state_backs_off_quadratically_up_to_the_cap() -> None:
    state = PlanState()
    assert [state.failed() for _ in range(8)] == [5, 20, 45, 80, 125, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    state.answered(1, None)
    assert state.failed() == 5


# --------------------------------------------------------------------------- against a real agent


def watch_cli(addr: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "watch", f"-http-addr={addr}", *args],
                          capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)


def test_watch_prints_one_result_and_exits(cluster: Cluster) -> None:
    agent = cluster.start("w1", server=True)
    base = f"http://{agent.http_addr}"
    wait_for(lambda: requests.put(f"{base}/v1/kv/app/a", data=b"one", timeout=5).json() is True, timeout=30,
             what="a KV write once there is a leader", diagnostics=cluster.diagnostics)
    missing = watch_cli(agent.http_addr, "-type", "key", "-key", "app/missing")
    assert (missing.returncode, missing.stdout) == (0, "null\n"), missing.stderr
    key = watch_cli(agent.http_addr, "-type", "key", "-key", "app/a")
    assert key.returncode == 0, key.stderr
    pair = json.loads(key.stdout)
    assert pair["Key"] == "app/a" and pair["Value"] == "b25l" and pair["Session"] == ""
    assert key.stdout.startswith('{\n    "Key": "app/a",')  # MarshalIndent, 4 spaces, api.KVPair's order
    services = watch_cli(agent.http_addr, "-type", "services")
    assert json.loads(services.stdout) == {"consul": []}
    nodes = watch_cli(agent.http_addr, "-type", "nodes")
    assert [n["Node"] for n in json.loads(nodes.stdout)] == ["w1"]
    bad = watch_cli(agent.http_addr, "-type", "key")
    assert (bad.returncode, bad.stderr) == (1, "Error: Must specify a single key to watch\n")
    untyped = watch_cli(agent.http_addr)
    assert untyped.returncode == 1 and untyped.stderr.startswith("Must specify watch type\n")
    down = watch_cli("127.0.0.1:1", "-type", "services")
    assert down.returncode == 1 and down.stderr.startswith("Error querying Consul agent: ")


def test_watch_handler_runs_on_each_change_with_json_on_stdin(cluster: Cluster, tmp_path: Path) -> None:
    agent = cluster.start("w2")
    out = tmp_path / "handled.jsonl"
    handler = f"{sys.executable} -c \"import json,os,sys; print(json.dumps([os.environ['CONSUL_INDEX'], " \
              f"json.load(sys.stdin)]), file=open('{out}', 'a'), flush=True)\""
    proc = Proc("watch", [sys.executable, "-m", "agent", "watch", f"-http-addr={agent.http_addr}", "-type", "event",
                          "-name", "deploy", handler], tmp_path / "watch.log", env=ENV)
    try:
        def lines() -> list[Any]:
            return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

        wait_for(lambda: len(lines()) == 1, timeout=20, what="the handler's first run (no events yet)",
                 diagnostics=lambda: proc.log_tail())
        assert lines()[0] == ["1", []]
        fired = []
        for payload in (b"one", b"two"):
            reply = requests.put(f"http://{agent.http_addr}/v1/event/fire/deploy", data=payload, timeout=5)
            fired.append(reply.json()["ID"])
            runs = len(fired) + 1
            wait_for(lambda runs=runs: len(lines()) >= runs, timeout=20, what=f"handler run {runs}",
                     diagnostics=lambda: proc.log_tail())
        requests.put(f"http://{agent.http_addr}/v1/event/fire/other", timeout=5)  # not watched: no run
        third = requests.put(f"http://{agent.http_addr}/v1/event/fire/deploy", data=b"3", timeout=5).json()["ID"]
        fired.append(third)
        wait_for(lambda: any(third in json.dumps(line) for line in lines()), timeout=20, what="the third event's run",
                 diagnostics=lambda: proc.log_tail())
        runs = lines()  # handler runs are sequential: one for "other" would sit before the third event's
        assert len(runs) == 4
        for (index, events), event_id in zip(runs[1:], fired, strict=True):
            assert index == str(uuid_to_uint64(event_id))
            assert [e["ID"] for e in events] == [event_id]  # only the new event, as Consul's eventWatch prunes
        assert proc.alive()
    finally:
        proc.send_signal(15)
        code = proc.wait(10)
        proc.close()
    assert code == 0  # SIGTERM stops the watch cleanly, as consul watch's shutdown
