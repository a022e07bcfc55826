"""``/v1/agent/metrics`` (issue 12): Consul's JSON shape, and the Prometheus text format parsed with
prometheus-client's own parser; names and types are Consul's; counters move when the thing happens.

The registry is tested on its own with a controlled clock; the rest against real `python -m agent` processes
(a server with DNS and a client), scraped over HTTP and asked with `dig`.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import requests
import test_dns_services as dns_helpers
from consul_agents import Cluster
from procs import wait_for
from prometheus_client.parser import text_string_to_metric_families

from agent.metrics import Metrics

ROUND = 15.0

#: Consul's Prometheus families (telemetry docs; go-metrics' sink: counter -> counter, timer/sample -> summary,
#: gauge -> gauge) that this agent has the figure for.
CONSUL_TYPES = {
    "consul_api_http": "summary",
    "consul_kvs_apply": "summary",
    "consul_raft_apply": "counter",
    "consul_raft_commitTime": "summary",
    "consul_raft_state_leader": "counter",
    "consul_memberlist_msg_alive": "counter",
    "consul_memberlist_probeNode": "summary",
    "consul_serf_member_join": "counter",
    "consul_serf_queue_Intent": "summary",
    "consul_serf_queue_Event": "summary",
    "consul_serf_queue_Query": "summary",
    "consul_dns_domain_query": "summary",
    "consul_dns_ptr_query": "summary",
    "consul_runtime_num_goroutines": "gauge",
    "consul_runtime_alloc_bytes": "gauge",
    "consul_members_servers": "gauge",
    "consul_members_clients": "gauge",
}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_json_is_the_inmem_sinks_last_complete_interval() -> None:
    clock = Clock(1_000_000.0)
    m = Metrics(clock=clock)
    m.incr("consul.kvs.apply.count")
    m.incr("consul.kvs.apply.count", 3)
    m.sample("consul.raft.commitTime", 2.0)
    m.sample("consul.raft.commitTime", 4.0)
    m.sample("consul.api.http", 1.0, {"method": "GET", "path": "v1_kv_"})
    m.gauge("consul.members.servers", 3)
    current = m.to_json()  # only one interval so far: it is shown
    assert [c["Count"] for c in current["Counters"]] == [2]
    clock.now += 10.0  # the next interval starts; the one before is complete
    m.incr("consul.kvs.apply.count")
    shown = m.to_json()
    assert shown["Timestamp"] == "1970-01-12 13:46:40 +0000 UTC" and shown["Points"] == []
    assert shown["Gauges"] == [{"Name": "consul.members.servers", "Value": 3.0, "Labels": {}}]
    assert shown["Counters"] == [{"Name": "consul.kvs.apply.count", "Count": 2, "Rate": 0.4, "Sum": 4.0, "Min": 1.0,
                                  "Max": 3.0, "Mean": 2.0, "Stddev": pytest.approx(1.41421356), "Labels": {}}]
    samples = {s["Name"]: s for s in shown["Samples"]}
    assert samples["consul.raft.commitTime"] | {"Stddev": 0} == {
        "Name": "consul.raft.commitTime", "Count": 2, "Rate": 0.6, "Sum": 6.0, "Min": 2.0, "Max": 4.0, "Mean": 3.0,
        "Stddev": 0, "Labels": {}}  # fmt: skip
    assert samples["consul.api.http"]["Labels"] == {"method": "GET", "path": "v1_kv_"}
    assert m.counter_value("consul.kvs.apply.count") == 5  # the running total, as Prometheus sees it


def test_prometheus_output_parses_and_summaries_carry_quantiles() -> None:
    clock = Clock(5_000.0)
    m = Metrics(clock=clock)
    for value in range(1, 101):
        m.sample("consul.dns.domain_query", float(value), {"node": "n1"})
    m.incr("consul.raft.apply", 7)
    m.gauge("consul.runtime.num_goroutines", 42)
    families = {f.name: f for f in text_string_to_metric_families(m.to_prometheus().decode())}
    assert {n: f.type for n, f in families.items()} == {"consul_dns_domain_query": "summary",
                                                        "consul_raft_apply": "counter",
                                                        "consul_runtime_num_goroutines": "gauge"}  # fmt: skip
    summary = {(s.name, s.labels.get("quantile")): s.value for s in families["consul_dns_domain_query"].samples}
    assert summary[("consul_dns_domain_query_count", None)] == 100
    assert summary[("consul_dns_domain_query_sum", None)] == 5050
    assert summary[("consul_dns_domain_query", "0.5")] == 51 and summary[("consul_dns_domain_query", "0.99")] == 100
    assert [s.value for s in families["consul_raft_apply"].samples] == [7]
    clock.now += 11.0  # quantiles cover the last 10 s only; count and sum are running totals
    families = {f.name: f for f in text_string_to_metric_families(m.to_prometheus().decode())}
    quantiles = [s.value for s in families["consul_dns_domain_query"].samples if "quantile" in s.labels]
    assert len(quantiles) == 3 and all(q != q for q in quantiles)  # NaN, as a Prometheus summary with no data


def scrape(agent: Any) -> dict[str, Any]:
    reply = requests.get(f"http://{agent.http_addr}/v1/agent/metrics?format=prometheus", timeout=5)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(reply.text)}


def count(families: dict[str, Any], family: str, **labels: str) -> float:
    """A counter's value or a summary's _count (0 when absent)."""
    fam = families.get(family)
    if fam is None:
        return 0.0
    for s in fam.samples:
        if s.name in (family, family + "_total", family + "_count") and all(
            s.labels.get(k) == v for k, v in labels.items()
        ):
            return s.value
    return 0.0


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig not installed")
def test_real_agents_metrics_have_consuls_names_and_move(cluster: Cluster) -> None:
    server = cluster.start("s1", server=True, dns=True)
    client = cluster.start("c1")
    assert client.cli("join", server.serf_addr).returncode == 0
    wait_for(lambda: requests.put(f"http://{server.http_addr}/v1/kv/warm", data=b"x", timeout=5).ok, timeout=ROUND,
             what="a leader", diagnostics=cluster.diagnostics)  # fmt: skip
    dns_helpers.dig(server, "consul.service.consul", "SRV")
    dns_helpers.dig(server, "1.0.0.127.in-addr.arpa", "PTR")

    def complete() -> bool:
        families = scrape(server)
        return all(name in families for name in CONSUL_TYPES) and count(families, "consul_serf_member_join") >= 1

    wait_for(complete, timeout=ROUND, what="every metric present", diagnostics=cluster.diagnostics)
    families = scrape(server)
    assert {name: families[name].type for name in CONSUL_TYPES} == CONSUL_TYPES
    assert count(families, "consul_raft_state_leader") == 1
    assert count(families, "consul_memberlist_msg_alive") >= 2
    assert count(families, "consul_members_servers") == 1 and count(families, "consul_members_clients") == 1

    # A KV PUT moves the leader's consul.kvs.apply and raft counters, and its HTTP request the api.http timer.
    before = scrape(server)
    assert requests.put(f"http://{server.http_addr}/v1/kv/app/config", data=b"v1", timeout=5).json() is True
    after = scrape(server)
    assert count(after, "consul_kvs_apply") == count(before, "consul_kvs_apply") + 1
    assert count(after, "consul_raft_apply") == count(before, "consul_raft_apply") + 1
    assert count(after, "consul_raft_commitTime") == count(before, "consul_raft_commitTime") + 1
    assert count(after, "consul_api_http", method="PUT", path="v1_kv_") == (
        count(before, "consul_api_http", method="PUT", path="v1_kv_") + 1)
    # A KV PUT through the client is applied (and counted) by the leader, not the client.
    client_before = scrape(client)
    assert requests.put(f"http://{client.http_addr}/v1/kv/app/other", data=b"v2", timeout=5).json() is True
    assert count(scrape(server), "consul_kvs_apply") == count(after, "consul_kvs_apply") + 1
    assert count(scrape(client), "consul_kvs_apply") == count(client_before, "consul_kvs_apply") == 0

    # A DNS query moves consul.dns.domain_query (labelled by node, as Consul's).
    queries = count(after, "consul_dns_domain_query", node="s1")
    dns_helpers.dig(server, "consul.service.consul", "SRV")
    assert count(scrape(server), "consul_dns_domain_query", node="s1") == queries + 1

    # The JSON view has Consul's shape.
    body = requests.get(f"http://{server.http_addr}/v1/agent/metrics", timeout=5).json()
    assert set(body) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
    assert body["Timestamp"].endswith(" +0000 UTC")
    assert {g["Name"] for g in body["Gauges"]} >= {"consul.runtime.num_goroutines", "consul.members.servers"}
    assert all(set(s) == {"Name", "Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev", "Labels"}
               for s in body["Samples"] + body["Counters"])  # fmt: skip
