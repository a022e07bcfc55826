"""``/ui/`` in a real browser: Debian's Chromium driven by Playwright (from PyPI; it never downloads a browser).

Three real agents on loopback; the page must show three alive rows, then, with no reload, turn the killed agent's
row ``failed``; then survive a dropped connection by resuming with ``?index=``.  Its other views follow the cluster
by blocking queries: the nodes with their health (the killed one critical), a service registered on a client whose
TTL check turns from critical to passing with no reload, the KV browser (a folder, a key, its value updated live),
and the network view (the alive-members chart and each other node's estimated RTT from network coordinates).  The
page may load nothing but the agent's own URLs.  One screenshot per view is kept under the test's tmp_path and
copied to paths printed in the output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import consul
import pytest
from procs import wait_for

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("TRIUMVIR_ARTIFACTS", Path(tempfile.gettempdir()) / "triumvir-artifacts"))

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} not found: `make test` installs Debian's chromium when run as root (apt-get install chromium)",
)


def test_ui_shows_the_cluster_live_and_a_killed_agent_turns_failed(
    cluster: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    server = cluster.start("ui-s1", server=True, extra={"ui": True})  # type: ignore[attr-defined]
    clients = [cluster.start(name) for name in ("ui-c2", "ui-c3")]  # type: ignore[attr-defined]
    for client in clients:
        out = client.cli("join", server.serf_addr)
        assert out.returncode == 0, out.stderr
    wait_for(
        lambda: [row[1] for row in server.member_rows().values()] == ["alive"] * 3,
        timeout=30,
        what="three alive members on the server",
        diagnostics=cluster.diagnostics,  # type: ignore[attr-defined]
    )
    origin = f"http://{server.http_addr}"
    foreign: list[str] = []
    problems: list[str] = []
    shots: list[Path] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            chromium_sandbox=False,
            viewport={"width": 1200, "height": 640},
        )
        try:
            page = browser.new_page()
            page.on("request", lambda r: r.url.startswith(("http://", "ws://")) and server.http_addr not in r.url
                    and foreign.append(r.url))
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(origin + "/", wait_until="load")
            assert page.url == origin + "/ui/"  # GET / is a 301 to /ui/
            page.evaluate("window.__sameDocument = true")  # gone if the page reloads
            expect = sync_api.expect
            expect(page.locator("#rows tr[data-status='alive']")).to_have_count(3, timeout=15_000)
            expect(page.locator("#n-alive")).to_have_text("3")

            clients[1].proc.kill()  # SIGKILL: peers detect it by probing
            failed = page.locator("#rows tr[data-name='ui-c3'][data-status='failed']")
            expect(failed).to_have_count(1, timeout=60_000)
            assert page.evaluate("window.__sameDocument") is True
            expect(page.locator("#n-alive")).to_have_text("2")
            expect(page.locator("#n-failed")).to_have_text("1")
            expect(page.locator("#last-change")).to_contain_text("ui-c3 failed")
            cells = failed.locator("td").all_inner_texts()
            assert cells[0] == "ui-c3" and cells[1] == clients[1].serf_addr and cells[2] == "failed"
            assert cells[3] == "client" and cells[6] == "dc1", cells

            # A dropped connection: the page says so, reconnects by itself and resumes by index.
            page.evaluate("triumvir.drop()")
            expect(page.locator("#note")).to_contain_text("resumed from index", timeout=15_000)
            expect(page.locator("#conn")).to_have_text("live")
            expect(page.locator("#rows tr")).to_have_count(3)
            shots.append(tmp_path / "ui-members.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

            # Nodes: the catalog's three, the killed one critical by its serfHealth check.
            page.click("nav button[data-view='nodes']")
            expect(page.locator("#node-rows tr[data-name]")).to_have_count(3, timeout=15_000)
            expect(page.locator("#node-rows tr[data-name='ui-c3'][data-health='critical']")).to_have_count(1)
            expect(page.locator("#node-rows tr[data-name='ui-c2'][data-health='passing']")).to_have_count(1)
            shots.append(tmp_path / "ui-nodes.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

            # Services: a service registered on a client appears, and its TTL check turning passing shows live.
            page.click("nav button[data-view='services']")
            api = clients[0].client()
            assert api.agent.service.register("web", service_id="web-1", port=8080, tags=["v1"],
                                              check=consul.Check.ttl("60s"))
            web = page.locator("#service-rows tr[data-service='web'][data-node='ui-c2']")
            expect(web).to_have_attribute("data-health", "critical", timeout=30_000)
            api.agent.check.ttl_pass("service:web-1")
            expect(web).to_have_attribute("data-health", "passing", timeout=30_000)
            expect(page.locator("#service-rows tr[data-service='consul']")).to_have_count(1)
            shots.append(tmp_path / "ui-services.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

            # Key/Value: a folder, then its key and value; a new value shows without a reload.
            kv = server.client().kv
            assert kv.put("app/config", "hello")
            page.click("nav button[data-view='kv']")
            page.locator("#kv-rows tr[data-key='app/'] a").click(timeout=15_000)
            page.locator("#kv-rows tr[data-key='app/config'] a").click(timeout=15_000)
            expect(page.locator("#kv-value")).to_have_text("hello", timeout=15_000)
            assert kv.put("app/config", "hello again")
            expect(page.locator("#kv-value")).to_have_text("hello again", timeout=15_000)
            shots.append(tmp_path / "ui-kv.png")
            page.screenshot(path=str(shots[-1]), full_page=True)

            # Network: the alive chart, and an RTT bar for the live client from this agent's coordinate.
            page.click("nav button[data-view='network']")
            expect(page.locator("#alive-line")).to_have_count(1, timeout=15_000)
            expect(page.locator("#rtt-chart g.rtt-bar[data-node='ui-c2']")).to_have_count(1, timeout=30_000)
            shots.append(tmp_path / "ui-network.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
        finally:
            browser.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = []
    for shot in shots:
        kept.append(ARTIFACTS / shot.name)
        shutil.copyfile(shot, kept[-1])
    with capsys.disabled():
        print(f"\n[test_ui_browser] screenshots: {', '.join(map(str, kept))} (also under {tmp_path})")
    assert not foreign, f"the page loaded something from elsewhere: {foreign}"
    assert not problems, f"console errors: {problems}"


def test_with_acls_the_page_shows_nothing_until_a_token_is_typed(cluster: object, tmp_path: Path) -> None:
    # issue 13: the page itself holds no cluster data (served to anyone, as Consul's UI assets); its stream and
    # its API reads need a token that may read every node; the token typed in the page reaches both
    import requests

    sync_api = pytest.importorskip("playwright.sync_api")
    recovery = "6b1f0a2c-0000-4000-8000-0000000000ee"  # node_prefix "" read on this agent, no server needed
    server = cluster.start("ui-acl", server=True, token=recovery, extra={  # type: ignore[attr-defined]
        "ui": True, "acl": {"enabled": True, "default_policy": "deny", "tokens": {"agent_recovery": recovery}}})
    origin = f"http://{server.http_addr}"
    assert requests.get(origin + "/ui/", timeout=5).status_code == 200
    assert requests.get(origin + "/v1/stream/members", timeout=5).status_code == 403  # anonymous: no members
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            chromium_sandbox=False)  # fmt: skip
        try:
            page = browser.new_page()
            page.goto(f"{origin}/ui/", wait_until="load")
            expect = sync_api.expect
            row = page.locator("#rows tr[data-name='ui-acl'][data-status='alive']")
            expect(page.locator("#conn")).not_to_have_text("live", timeout=5_000)
            assert row.count() == 0  # refused: nothing shown
            page.fill("#token", recovery)
            page.dispatch_event("#token", "change")
            expect(row).to_have_count(1, timeout=15_000)
            expect(page.locator("#conn")).to_have_text("live")
            assert recovery not in page.locator("body").inner_text()  # the secret is never shown
        finally:
            browser.close()
