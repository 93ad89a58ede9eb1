"""A thread's audit trail over HTTP: read as the thread is, by whoever may read the thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.eventually import eventually
from tests.web import test_console_browser as browsers
from tests.web.conftest import ALICE, BOB, DAVE, Server
from tests.web.test_console_browser import browser, console  # noqa: F401 - their fixtures, shared


async def test_a_thread_audit_trail_is_read_like_the_thread(server: Server) -> None:
    launched = await server.call("POST", "/v1/threads", token=BOB, json={"text": "/deploy api 1.4.2 production"})
    await server.drain()
    (approval,) = (await server.call("GET", "/v1/approvals", token=ALICE)).body["approvals"]
    decided = f"/v1/approvals/{approval['approval_id']}/decision"
    assert (await server.call("POST", decided, token=ALICE, json={"decision": "approve"})).status == 202
    await server.drain()
    path = f"/v1/threads/{launched.body['thread_id']}/audit"
    trail = await server.call("GET", path, token=BOB)
    assert trail.status == 200, trail.body
    records = trail.body["records"]
    assert [r["fact"] for r in records] == ["previewed", "requested", "approved", "started", "result"]
    assert [(r["who"], r["channel"]) for r in records[:3]] == [
        ("tool:deploy", "api"),
        ("web:bob", "api"),
        ("web:alice", "api"),
    ]
    assert all(len(r["hash"]) == 64 for r in records) and records[1]["prev"] == records[0]["hash"]
    refused = await server.call("GET", path, token=DAVE)
    assert (refused.status, refused.code) == (403, "forbidden")
    missing = await server.call("GET", "/v1/threads/nothere/audit", token=ALICE)
    assert (missing.status, missing.code) == (404, "thread_not_found")


@pytest.mark.skipif(not browsers.CHROMIUM.exists(), reason="no /usr/bin/chromium; apt-get install chromium")
async def test_the_console_shows_a_thread_audit_trail(console: Server, browser: Any, tmp_path: Path) -> None:  # noqa: F811 - the imported fixtures
    """The thread view lists the records: time, fact, who, channel (a real headless Chromium)."""
    web, chromium = console, browser
    launched = await web.call("POST", "/v1/threads", token=BOB, json={"text": "/deploy api 1.4.2 production"})
    (approval,) = (await _eventually_listed(web)).body["approvals"]
    decided = f"/v1/approvals/{approval['approval_id']}/decision"
    assert (await web.call("POST", decided, token=ALICE, json={"decision": "approve"})).status == 202
    page = await browsers.signed_in(chromium, web, BOB, "web:bob")
    await page.goto(f"{web.url}/#thread/{launched.body['thread_id']}")
    rows = page.locator("#audit tbody tr")
    await browsers.expect(rows).to_have_count(5)
    await browsers.expect(rows.nth(0)).to_contain_text("previewed")
    await browsers.expect(rows.nth(1)).to_contain_text("requested")
    await browsers.expect(rows.nth(2)).to_contain_text("approved")
    await browsers.expect(rows.nth(2)).to_contain_text("alice")
    await browsers.expect(rows.nth(4)).to_contain_text("result: ok")
    # The deploy tool's dry run, whole, in the thread's picture (the card shows its first lines).
    await browsers.expect(page.locator("pre.output", has_text="plan: deploy api 1.4.2 to production")).to_have_count(1)
    await page.screenshot(path=str(tmp_path / "audit-trail.png"), full_page=True)


async def _eventually_listed(web: Server) -> Any:
    async def listed() -> Any:
        reply = await web.call("GET", "/v1/approvals", token=ALICE)
        return reply if reply.body["approvals"] else None

    return await eventually(listed, "the approval listed")
