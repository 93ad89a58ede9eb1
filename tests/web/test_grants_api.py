"""Standing grants through the API (what the console uses): given with a decision, listed, used, revoked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_grants import TOOLS
from tests.web.conftest import ALICE, BOB, DAVE, Server


async def _server(start_server, fake_redis, tmp_path: Path) -> Server:
    (tmp_path / "tools.toml").write_text(TOOLS.replace("'cli:dana'", "'web:alice'"))
    return await start_server(fake_redis, BOT_TOOLS_FILE=str(tmp_path / "tools.toml"))


async def _deploy(server: Server, version: str) -> dict[str, object]:
    reply = await server.call("POST", "/v1/threads", token=BOB, json={"text": f"/deploy api {version} staging"})
    assert reply.status == 202, reply.body
    await server.drain()
    thread = await server.call("GET", f"/v1/threads/{reply.body['thread_id']}", token=BOB)
    return dict(thread.body)


async def _pending(server: Server) -> list[str]:
    reply = await server.call("GET", "/v1/approvals?status=pending")
    return [approval["approval_id"] for approval in reply.body["approvals"]]


async def test_a_standing_grant_used_and_then_revoked_through_the_api(fake_redis, start_server, tmp_path) -> None:
    server = await _server(start_server, fake_redis, tmp_path)
    await _deploy(server, "1.0")
    [approval_id] = await _pending(server)
    path = f"/v1/approvals/{approval_id}/decision"

    too_long = await server.call("POST", path, json={"decision": "approve", "grant_for": 9 * 3600})
    assert too_long.status == 409 and too_long.code == "grant_refused" and "at most 8h" in too_long.message
    assert await _pending(server) == [approval_id], "nothing was decided"

    assert (await server.call("POST", path, json={"decision": "approve", "grant_for": 4 * 3600})).status == 202
    await server.drain()
    listed = await server.call("GET", "/v1/grants")
    [grant] = listed.body["grants"]
    assert (grant["status"], grant["requester"], grant["granted_by"]) == ("live", "web:bob", "web:alice")
    assert grant["pattern"] == "environment=staging service=api version=*"
    assert [g["grant_id"] for g in (await server.call("GET", "/v1/grants", token=BOB)).body["grants"]] == [
        grant["grant_id"]
    ], "the requester sees the grants given to them"
    assert (await server.call("GET", "/v1/grants", token=DAVE)).body["grants"] == []

    used = await _deploy(server, "1.1")
    assert used["thread"]["status"] == "done"  # type: ignore[index]
    types = [event["type"] for event in used["events"]]  # type: ignore[union-attr]
    assert types.count("grant_used") == 1 and "approval_requested" not in types
    assert await _pending(server) == []

    forbidden = await server.call("DELETE", f"/v1/grants/{grant['grant_id']}", token=DAVE)
    assert forbidden.status == 404 and forbidden.code == "grant_not_found"
    revoked = await server.call("DELETE", f"/v1/grants/{grant['grant_id']}")
    assert revoked.status == 200 and (revoked.body["status"], revoked.body["revoked_by"]) == ("revoked", "web:alice")
    again = await server.call("DELETE", f"/v1/grants/{grant['grant_id']}")
    assert again.status == 409 and "already revoked by" in again.message

    await _deploy(server, "1.2")
    assert len(await _pending(server)) == 1, "revoked: the next call asks again"


async def test_a_standing_grant_given_and_revoked_in_the_console(fake_redis, start_server, tmp_path) -> None:
    """The console: "Grant" on an inbox card approves and grants; the Grants view lists it and revokes it."""
    browser_tests = pytest.importorskip("tests.web.test_console_browser")
    if not browser_tests.CHROMIUM.exists():
        pytest.skip("Debian's chromium is not at /usr/bin/chromium")
    expect = browser_tests.expect
    server = await _server(start_server, fake_redis, tmp_path)
    await _deploy(server, "1.0")
    async with browser_tests.playwright_api.async_playwright() as driver:
        chromium = await driver.chromium.launch(executable_path=str(browser_tests.CHROMIUM), args=browser_tests.ARGS)
        page = await browser_tests.signed_in(chromium, server, ALICE, "web:alice")
        await page.click("[data-nav=approvals]")
        card = page.locator("#approval-list .approval-card")
        await expect(card).to_contain_text("Approval needed: deploy")
        await card.locator(".grant-for").fill("2h")
        await card.get_by_role("button", name="Grant").click()
        await expect(card.locator(".card-status")).to_contain_text("Approved by you")
        await server.drain()

        await page.click("[data-nav=grants]")
        row = page.locator("#grant-rows tr")
        await expect(row).to_contain_text("environment=staging service=api version=*")
        await expect(row.locator(".grant-status")).to_have_text("live")
        used = await _deploy(server, "1.1")
        assert used["thread"]["status"] == "done"  # type: ignore[index]

        await row.get_by_role("button", name="Revoke").click()
        await expect(row.locator(".grant-status")).to_have_text("revoked by alice")
        await chromium.close()
    await _deploy(server, "1.2")
    assert len(await _pending(server)) == 1
