"""The web console in a real headless Chromium (Debian's, driven by Playwright): chat, approve, timeline.

Each step's screenshot is written under the test's tmp_path. Waits are Playwright's
auto-retrying assertions, each with a deadline; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.domain.events import MessageTrigger
from core.domain.ids import new_id
from tests.web.conftest import ALICE, BOB, CAROL, Server

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEADLINE_MS = 15_000
PAGE = 50  # the console's page size (PAGE in console.js)
PNG = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not at /usr/bin/chromium; install it with apt-get install chromium",
)

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect


@pytest.fixture
async def console(fake_redis, start_server) -> AsyncIterator[Server]:
    """A server with a worker running beside it, as `bot run` has."""
    server = await start_server(fake_redis)
    worker = server.harness.wiring.worker("console-worker")
    working = asyncio.create_task(worker.run(block_ms=100))
    yield server
    worker.stop()
    await working


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as driver:
        chromium = await driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        await chromium.close()


class Shots:
    def __init__(self, page: object, folder: Path) -> None:
        self.page, self.folder, self.paths = page, folder, []

    async def take(self, name: str) -> None:
        path = self.folder / f"{len(self.paths) + 1:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        self.paths.append(path)

    def check(self, count: int) -> None:
        assert len(self.paths) == count
        for path in self.paths:
            data = path.read_bytes()
            assert data.startswith(PNG) and len(data) > len(PNG), f"{path} is not a PNG"


async def signed_in(browser: Any, console: Server, token: str, identity: str, **page_options: object) -> Any:
    """A console page signed in with `token`, once it shows `identity`'s name."""
    page = await browser.new_page(**page_options)
    page.set_default_timeout(DEADLINE_MS)
    await page.goto(f"{console.url}/#token={token}")
    await expect(page.locator("#whoami")).to_have_text(identity.partition(":")[2])
    await expect(page.locator("#whoami")).to_have_attribute("title", f"signed in as {identity}")
    return page


async def test_chat_approve_and_step_through_the_timeline(console: Server, browser, tmp_path: Path) -> None:
    page = await signed_in(browser, console, ALICE, "web:alice", viewport={"width": 1280, "height": 900})
    shots = Shots(page, tmp_path)
    assert "token" not in page.url  # taken out of the address bar and history
    await shots.take("signed-in")

    await page.fill("#message", "/deploy api 1.4.2 production")
    await page.click("#send")
    card = page.locator("#transcript .approval-card")
    await expect(card).to_contain_text("Approval needed: deploy")
    await expect(card).to_contain_text("production")
    await expect(card.get_by_role("button", name="Approve")).to_be_visible()
    await expect(card.locator(".preview pre")).to_contain_text("version: 1.0.0 -> 1.4.2")  # the tool's dry run
    await shots.take("approval-card")

    # Another on-call engineer approves from her inbox (production deploys need someone besides the requester).
    approver = await signed_in(browser, console, CAROL, "web:carol")
    await approver.click("[data-nav=approvals]")
    await expect(approver.locator("#approval-list .approval-card .preview pre")).to_contain_text("plan: deploy api")
    await approver.locator("#approval-list .approval-card").get_by_role("button", name="Approve").click()
    await expect(page.locator("#transcript")).to_contain_text("deployed api 1.4.2 to production")
    await expect(card.locator(".card-status")).to_contain_text("Approved by carol")
    await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    await shots.take("approved-and-deployed")

    await page.locator("#transcript .thread-link").last.click()
    timeline = page.locator("#timeline")
    for text in (
        "Message",
        "/deploy api 1.4.2 production",
        "Preview",
        "plan: deploy api 1.4.2 to production",
        "Approval requested",
        "Approved",
        "by carol",
        "Tool result",
        "Reply",
    ):
        await expect(timeline).to_contain_text(text)
    await expect(page.locator("#thread-status")).to_have_text("done")
    await shots.take("timeline")

    requested = await page.locator(".event.approval_requested").get_attribute("data-seq")
    await page.locator("#step").evaluate(
        "(el, at) => { el.value = at; el.dispatchEvent(new Event('change')); }", requested
    )
    await expect(page.locator("#step-label")).to_have_text(f"as of event {requested} of 10")
    await expect(page.locator(".state-status")).to_have_text("awaiting_approval")
    await expect(page.locator(".event.future")).to_have_count(10 - int(requested))
    await page.click("#step-next")
    await expect(page.locator(".state-last-actor")).to_have_text("alice")  # an approver is not the actor
    await shots.take("as-of-the-approval")

    history = json.loads((tmp_path / "data" / "deployments.json").read_text())["history"]
    assert [(e["action"], e["version"], e["by"]) for e in history] == [("deploy", "1.4.2", "web:alice")]
    shots.check(5)


async def test_reject_asks_for_a_reason_and_the_inbox_shows_every_channel(console: Server, browser, tmp_path) -> None:
    launched = await console.call("POST", "/v1/threads", token=BOB, json={"text": "/restart api production"})
    assert launched.status == 202
    page = await signed_in(browser, console, ALICE, "web:alice")
    shots = Shots(page, tmp_path)
    await page.click("[data-nav=approvals]")
    card = page.locator("#approval-list .approval-card")
    await expect(card).to_contain_text("Approval needed: restart")
    await expect(card).to_contain_text("requested by bob")
    await expect(page.locator("#approval-count")).to_have_text("1")
    await shots.take("inbox")

    await card.get_by_role("button", name="Reject").click()
    await card.locator(".confirm-reject").click()
    await expect(card.locator(".card-status")).to_have_text("a rejection needs a reason")
    await card.locator(".reject-reason").fill("not during the freeze")
    await card.locator(".confirm-reject").click()
    # The card stays, saying what happened, instead of vanishing; the badge counts what is left.
    await expect(card.locator(".card-status")).to_contain_text("Rejected by you at ")
    await expect(card.locator(".card-status")).to_contain_text("not during the freeze")
    await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    await expect(page.locator("#approval-count")).to_be_hidden()
    await shots.take("rejected")

    thread = (await console.call("GET", f"/v1/threads/{launched.body['thread_id']}")).body
    errors = [e for e in thread["events"] if e["type"] == "tool_error"]
    assert errors[-1]["kind"] == "rejected" and "not during the freeze" in errors[-1]["error"]
    shots.check(2)


async def test_threads_load_a_page_at_a_time_and_each_thread_shows_once(console: Server, browser) -> None:
    """More threads than one page: the first 50 show, "Load more" adds the rest, none twice, then hides."""
    harness = console.harness
    for n in range(PAGE + 10):
        harness.clock.advance(1)  # distinct creation times, newest first
        trigger = MessageTrigger(
            id=new_id(), channel="api", conversation=f"paging-{n}", sender="web:alice", text="/list_services"
        )
        await harness.wiring.threads.handle(trigger)
    newest_first = [state.thread_id for state in await harness.wiring.store.list_threads(1000)]
    assert len(newest_first) == PAGE + 10
    page = await signed_in(browser, console, ALICE, "web:alice")
    await page.click("[data-nav=threads]")
    rows = page.locator("#thread-rows tr")
    more = page.get_by_role("button", name="Load more threads")
    await expect(rows).to_have_count(PAGE)
    await expect(more).to_be_visible()
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.threadId)") == newest_first[:PAGE]

    await more.click()
    await expect(rows).to_have_count(PAGE + 10)
    await expect(more).to_be_hidden()
    assert await rows.evaluate_all("rows => rows.map(r => r.dataset.threadId)") == newest_first

    await page.click("#refresh-threads")  # a refresh starts again from the first page
    await expect(rows).to_have_count(PAGE)
    await expect(more).to_be_visible()


async def test_the_approvals_status_filter_shows_an_approved_one_under_approved_only(console: Server, browser) -> None:
    for text in ("/restart api production", "/deploy api 1.4.2 production"):
        assert (await console.call("POST", "/v1/threads", token=BOB, json={"text": text})).status == 202
    page = await signed_in(browser, console, ALICE, "web:alice")
    await page.click("[data-nav=approvals]")
    cards = page.locator("#approval-list .approval-card")
    restart = cards.filter(has_text="Approval needed: restart")
    deploy = cards.filter(has_text="Approval needed: deploy")
    await expect(cards).to_have_count(2)
    await expect(page.locator("#approval-count")).to_have_text("2")
    await restart.get_by_role("button", name="Approve").click()
    await expect(restart.locator(".card-status")).to_contain_text("Approved by you")  # confirmed in place
    await expect(deploy).to_have_count(1)
    await expect(page.locator("#approval-count")).to_have_text("1")

    status = page.get_by_label("Status")
    await status.select_option("approved")
    await expect(restart).to_have_count(1)
    await expect(deploy).to_have_count(0)
    await expect(restart.locator(".card-status")).to_contain_text("Approved by you")
    await expect(restart.get_by_role("button", name="Approve")).to_have_count(0)
    await expect(page.locator("#approval-count")).to_have_text("1")  # the badge counts pending ones only

    await status.select_option("rejected")
    await expect(page.locator("#approval-list")).to_contain_text("no rejected approvals")
    await expect(cards).to_have_count(0)

    await status.select_option("pending")
    await expect(deploy).to_have_count(1)
    await expect(restart).to_have_count(0)
    await expect(page.get_by_role("button", name="Load more approvals")).to_be_hidden()


async def test_the_inbox_filters_by_tool_decides_several_at_once_and_snoozes(console: Server, browser) -> None:
    """Filter to one tool, approve the shown ones at once (each outcome listed), and put another off."""
    for text in ("/restart api production", "/restart web production", "/deploy api 1.4.2 production"):
        assert (await console.call("POST", "/v1/threads", token=BOB, json={"text": text})).status == 202
    page = await signed_in(browser, console, ALICE, "web:alice")
    await page.click("[data-nav=approvals]")
    cards = page.locator("#approval-list .approval-card")
    await expect(cards).to_have_count(3)

    await page.locator("#inbox-tool").fill("restart")
    await page.get_by_role("button", name="Filter").click()
    await expect(cards).to_have_count(2)
    await expect(cards.filter(has_text="Approval needed: deploy")).to_have_count(0)
    await page.locator("#pick-all").check()
    await page.get_by_role("button", name="Approve selected").click()
    await expect(page.locator("#bulk-status")).to_have_text("2 of 2 approvals accepted")
    await expect(page.locator("#bulk-outcomes li.ok")).to_have_count(2)
    await expect(cards.locator(".card-status").first).to_contain_text("Approved by you")
    approved = (await console.call("GET", "/v1/approvals?status=approved")).body["approvals"]
    assert sorted(a["args"]["service"] for a in approved) == ["api", "web"]

    await page.locator("#inbox-tool").fill("")
    await page.get_by_role("button", name="Filter").click()
    deploy = cards.filter(has_text="Approval needed: deploy")
    await expect(cards).to_have_count(1)
    await deploy.get_by_role("button", name="Not now (30 min)").click()
    await expect(deploy.locator(".card-status")).to_contain_text("asked again at")
    await expect(deploy.locator(".snoozed")).to_contain_text("snoozed by you until")
    await page.get_by_label("Status").select_option("snoozed")
    await expect(cards).to_have_count(1)
    await expect(cards.locator(".snoozed")).to_contain_text("snoozed by you until")


async def test_edit_on_a_card_approves_the_edited_call(console: Server, browser, tmp_path) -> None:
    """Edit… opens a form from the tool's schema, filled with the call's arguments; a value the schema
    refuses is refused with the reason and changes nothing; the edited call runs, and the timeline shows
    what changed."""
    launched = await console.call("POST", "/v1/threads", token=BOB, json={"text": "/deploy api 1.4.2 production"})
    assert launched.status == 202
    page = await signed_in(browser, console, ALICE, "web:alice")
    shots = Shots(page, tmp_path)
    await page.click("[data-nav=approvals]")
    card = page.locator("#approval-list .approval-card")
    await expect(card).to_contain_text("Approval needed: deploy")
    await card.get_by_role("button", name="Edit…").click()
    version = card.get_by_label("version *")
    await expect(version).to_have_value("1.4.2")
    await expect(card.get_by_label("environment *")).to_have_value("production")
    await shots.take("edit-form")

    await version.fill("one")
    await card.get_by_role("button", name="Approve with these arguments").click()
    status = card.locator(".card-status")
    await expect(status).to_contain_text("your edit does not fit deploy's parameters")  # the server's check
    await expect(status).to_contain_text("still waits, for the arguments on its card")
    pending = (await console.call("GET", "/v1/approvals?status=pending")).body["approvals"]
    assert [a["args"]["version"] for a in pending] == ["1.4.2"]

    await version.fill("1.4.3")
    await card.get_by_role("button", name="Approve with these arguments").click()
    await expect(card.locator(".card-status")).to_contain_text("your edit of deploy is queued")
    await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    thread_id = launched.body["thread_id"]

    async def deployed() -> dict[str, Any]:
        return dict((await console.call("GET", f"/v1/threads/{thread_id}")).body)

    await page.goto(f"{console.url}/#thread/{thread_id}")
    timeline = page.locator("#timeline")
    await expect(timeline).to_contain_text("Arguments edited")
    await expect(timeline).to_contain_text("version: 1.4.2 → 1.4.3")
    await expect(timeline).to_contain_text("Tool result")
    await shots.take("edited-and-deployed")
    events = (await deployed())["events"]
    [result] = [e for e in events if e["type"] == "tool_result"]
    assert "1.4.3" in result["output"] and "1.4.2 ->" not in result["output"]
    shots.check(2)
