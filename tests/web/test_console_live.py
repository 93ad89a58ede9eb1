"""The console in Chromium: live updates over Server-Sent Events, the timeline's layout, the rest of the page.

Waits are Playwright's auto-retrying assertions with a deadline; nothing sleeps. Approvals are created
outside the page (the core called directly, or the API as another person), and the page must show
them without a reload and without asking the server again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.domain.events import MessageTrigger, Question
from core.domain.ids import new_id
from core.redis import keys
from tests.eventually import eventually
from tests.web.conftest import ALICE, BOB, CAROL, Server
from tests.web.test_console_browser import CHROMIUM, Shots, browser, console, signed_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not at /usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect
__all__ = ["browser", "console"]  # fixtures used by name below

LIVE_WITHIN_MS = 1000
WIDTHS = (1280, 390)

# Every element that must stay inside the viewport, unclipped; labels (nowrap) must fit on one line.
LAYOUT = """(selectors) => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > width) {
    problems.push(`the page is ${document.documentElement.scrollWidth}px wide in a ${width}px viewport`);
  }
  for (const selector of selectors) {
    for (const node of document.querySelectorAll(selector)) {
      if (!node.getClientRects().length) continue;  // not shown
      const box = node.getBoundingClientRect();
      const name = `${selector} "${node.textContent.trim().slice(0, 30)}"`;
      if (box.left < -0.5 || box.right > width + 0.5) problems.push(`${name} spans ${box.left}..${box.right}px`);
      if (node.scrollWidth > node.clientWidth + 1) problems.push(`${name} is cut: ${node.scrollWidth} > ${node.clientWidth}`);
    }
  }
  for (const node of document.querySelectorAll(".event .title")) {
    const line = parseFloat(getComputedStyle(node).lineHeight) || 20;
    if (node.getBoundingClientRect().height > line * 1.5) problems.push(`"${node.textContent}" breaks over lines`);
  }
  return problems;
}"""
CHECKED = [
    ".bar h1",
    ".bar nav a",
    "#whoami",
    "#sign-out",
    ".event .title",
    ".event .dur",
    ".event .card-button",
    ".event .lanes",
    ".event .when",
    ".lanes-head",
    ".details",
    ".state",
    ".stepper",
    "#thread-status",
]


def watch(page: Any) -> dict[str, list[str]]:
    """What the page logs as errors and which requests it makes, from now on."""
    seen: dict[str, list[str]] = {"errors": [], "requests": []}
    page.on("console", lambda message: message.type == "error" and seen["errors"].append(message.text))
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    page.on("request", lambda request: seen["requests"].append(request.url))
    return seen


async def live(page: Any) -> None:
    """The page's event stream is connected (the header's dot is on)."""
    await expect(page.locator("#live")).to_be_visible()
    await expect(page.locator("#live")).not_to_have_class("live down")


async def test_a_new_approval_updates_the_badge_and_inbox_within_a_second(console: Server, browser) -> None:
    page = await signed_in(browser, console, ALICE, "web:alice")
    seen = watch(page)
    await page.click("[data-nav=approvals]")
    await live(page)
    await expect(page.locator("#approval-list")).to_contain_text("nothing waiting for approval")
    await page.evaluate("window.stayed = 'no reload'")
    asked_before = len(seen["requests"])

    # Another person's request, committed by the core (as a worker in another process would).
    trigger = MessageTrigger(
        id=new_id(), channel="api", conversation="elsewhere", sender="web:bob", text="/restart api production"
    )
    await console.harness.wiring.threads.handle(trigger)
    await expect(page.locator("#approval-count")).to_have_text("1", timeout=LIVE_WITHIN_MS)
    card = page.locator("#approval-list .approval-card")
    await expect(card).to_contain_text("Approval needed: restart", timeout=LIVE_WITHIN_MS)
    await expect(card).to_contain_text("requested by bob")
    assert await page.evaluate("window.stayed") == "no reload"
    asked = seen["requests"][asked_before:]
    assert not [url for url in asked if "/v1/approvals" in url or "/web/updates" in url], asked  # pushed, not polled

    # Carol rejects it from her own client: Alice's card turns into the record of it, the badge empties.
    approval_id = await card.get_attribute("data-approval-id")
    rejected = await console.call(
        "POST", f"/v1/approvals/{approval_id}/decision", token=CAROL, json={"decision": "reject", "comment": "freeze"}
    )
    assert rejected.status == 202
    await expect(card.locator(".card-status")).to_contain_text("Rejected by carol")
    await expect(card.locator(".card-status")).to_contain_text("freeze")
    await expect(page.locator("#approval-count")).to_be_hidden()
    assert seen["errors"] == []


async def test_the_open_thread_grows_live(console: Server, browser) -> None:
    launched = await console.call("POST", "/v1/threads", token=ALICE, json={"text": "/deploy api 1.4.2 production"})
    page = await signed_in(browser, console, ALICE, "web:alice")
    seen = watch(page)
    await page.goto(f"{console.url}/#thread/{launched.body['thread_id']}")
    await expect(page.locator("#thread-status")).to_have_text("awaiting approval")
    await expect(page.locator(".event.approval_requested .dur")).to_contain_text("waiting")
    approval_id = (await console.call("GET", f"/v1/threads/{launched.body['thread_id']}")).body["thread"][
        "pending_approval"
    ]
    await page.evaluate("window.stayed = 'no reload'")
    approved = await console.call(
        "POST", f"/v1/approvals/{approval_id}/decision", token=CAROL, json={"decision": "approve"}
    )
    assert approved.status == 202
    await expect(page.locator(".event.approval_decided .title")).to_have_text("Approved")
    await expect(page.locator(".event.approval_decided .dur")).to_contain_text("waited")
    await expect(page.locator(".event.agent_reply")).to_contain_text("deployed api 1.4.2 to production")
    await expect(page.locator("#thread-status")).to_have_text("done")
    await expect(page.locator("#step-label")).to_have_text("as of event 10 of 10")
    assert await page.evaluate("window.stayed") == "no reload"
    assert seen["errors"] == []


async def a_thread_with_every_kind_of_event(console: Server) -> str:
    """Deploy, a hand-off to another agent, an approval rejected, a pause and a resume: real steps, via the API."""
    launched = await console.call("POST", "/v1/threads", token=ALICE, json={"text": "/deploy api 1.4.2 staging"})
    thread_id = launched.body["thread_id"]
    path = f"/v1/threads/{thread_id}"

    async def settled(status: str) -> dict[str, Any]:
        for _ in range(500):
            await console.harness.drain()
            reply = await console.call("GET", path)
            detail = reply.body if reply.status == 200 else {"thread": {"status": "", "events": -1}, "events": []}
            if detail["thread"]["status"] == status and detail["thread"]["events"] == len(detail["events"]):
                return detail
        raise AssertionError(f"thread {thread_id} did not become {status}")

    await settled("done")
    assert (await console.call("POST", f"{path}/events", json={"text": "/restart api production"})).status == 202
    detail = await settled("awaiting_approval")
    approval_id = detail["thread"]["pending_approval"]
    decision = {"decision": "reject", "comment": "not during the freeze, ask again on Monday after the review"}
    assert (
        await console.call("POST", f"/v1/approvals/{approval_id}/decision", token=CAROL, json=decision)
    ).status == 202
    await settled("done")
    assert (await console.call("POST", f"{path}/pause", json={"reason": "looking at it"})).status == 202
    await settled("paused")
    assert (await console.call("POST", f"{path}/resume")).status == 202
    await settled("done")
    return thread_id


@pytest.mark.parametrize("width", WIDTHS)
async def test_the_timeline_is_legible_at_desktop_and_phone_widths(
    console: Server, browser, width: int, tmp_path: Path
) -> None:
    thread_id = await a_thread_with_every_kind_of_event(console)
    events = (await console.call("GET", f"/v1/threads/{thread_id}")).body["events"]
    kinds = {event["type"] for event in events}
    assert {"handed_off", "approval_requested", "approval_decided", "tool_error", "paused", "resumed"} <= kinds

    page = await signed_in(browser, console, ALICE, "web:alice", viewport={"width": width, "height": 900})
    seen = watch(page)
    shots = Shots(page, tmp_path)
    await page.goto(f"{console.url}/#thread/{thread_id}")
    timeline = page.locator("#timeline")
    await expect(timeline.locator(".event")).to_have_count(len(events))
    handed = timeline.locator(".event.handed_off")
    await expect(handed.locator(".title")).to_have_text("Handed off")
    await expect(handed).to_contain_text("deploybot → incident")
    await expect(timeline.locator(".event.tool_error .title")).to_have_text("Rejected")
    await expect(timeline.locator(".event.approval_decided")).to_contain_text("by carol: not during the freeze")
    await expect(timeline.locator(".event.approval_decided .dur")).to_contain_text("waited")
    await expect(timeline.locator(".event.tool_result .dur").first).to_contain_text("s")
    text = await timeline.inner_text()
    assert "{" not in text and '":' not in text, "raw JSON in the timeline"  # no event shown as JSON
    for kind in kinds:  # every event type has a readable name, not its identifier
        label = await timeline.locator(f".event.{kind} .title").first.inner_text()
        assert "_" not in label and label, (kind, label)
    await shots.take(f"timeline-{width}")
    assert (problems := await page.evaluate(LAYOUT, CHECKED)) == [], "\n".join(problems)

    # The details of one event on click: its fields and its JSON, formatted, inside the viewport.
    await handed.locator(".card-button").click()
    details = page.locator("#details")
    await expect(details).to_be_visible()
    await expect(details.locator("h3")).to_have_text("Handed off")
    await expect(details.locator("pre.json")).to_contain_text('"to_agent": "incident"')
    wraps = await details.locator("pre.json").evaluate(
        "node => [getComputedStyle(node).whiteSpace, getComputedStyle(node).wordBreak, getComputedStyle(node).overflowWrap]"
    )
    assert wraps == ["pre-wrap", "normal", "normal"]  # lines break at spaces, never inside a token
    await details.scroll_into_view_if_needed()
    await shots.take(f"details-{width}")
    assert (problems := await page.evaluate(LAYOUT, CHECKED)) == [], "\n".join(problems)

    # The header works at this width: every view reachable and Sign out on screen.
    sign_out = page.get_by_role("button", name="Sign out")
    await expect(sign_out).to_be_in_viewport()
    for view in ("chat", "approvals", "threads"):
        await expect(page.locator(f"[data-nav={view}]")).to_be_in_viewport()
    await sign_out.click()
    await expect(page.locator("#view-signin")).to_be_visible()
    shots.check(2)
    assert seen["errors"] == []


async def test_the_empty_chat_shows_what_to_try(console: Server, browser) -> None:
    page = await signed_in(browser, console, BOB, "web:bob", viewport={"width": 390, "height": 800})
    seen = watch(page)
    empty = page.locator("#chat-empty")
    await expect(empty).to_be_visible()
    deploy = empty.get_by_role("button", name="/deploy <service> <version> <environment>")
    await expect(deploy).to_be_visible()
    await expect(empty.locator(".suggestion").filter(has_text="/deploy")).to_contain_text("may need approval")
    await deploy.click()
    await expect(page.locator("#message")).to_have_value("/deploy ")
    await page.fill("#message", "/list_services")
    await page.click("#send")
    await expect(empty).to_be_hidden()
    await expect(page.locator("#transcript .msg.bot")).to_contain_text("api staging=")  # the note "running…" replaced
    assert await page.evaluate(LAYOUT, [".suggestion", "#composer", ".msg"]) == []
    assert seen["errors"] == []


async def test_a_question_with_options_is_answered_with_a_button(console: Server, browser) -> None:
    page = await signed_in(browser, console, ALICE, "web:alice")
    await live(page)
    conversation = await page.evaluate("sessionStorage.getItem('opsbot.conversation')")
    question = Question(
        id=new_id(),
        channel="web",
        conversation=f"web:alice/{conversation}",
        thread_id="t-question",
        question="Which environment, <who:web:alice>?",
        options=["staging", "production"],
        call_id="call-7",
    )
    await console.harness.wiring.bus.send(question)
    asked = page.locator("#transcript .msg.question")
    await expect(asked).to_contain_text("Which environment, alice?")  # the marker is rendered as a name
    before = await console.inbox_length()
    await asked.get_by_role("button", name="production").click()
    await expect(asked.get_by_role("button", name="production")).to_be_disabled()
    await expect(page.locator("#transcript .msg.me")).to_contain_text("production")

    async def answered() -> list[Any]:
        entries = await console.harness.wiring.redis.xrange(keys.INBOX)
        return entries[before:]

    entries = await eventually(answered, "the clicked option to reach the inbox")
    trigger = MessageTrigger.model_validate_json(entries[-1][1][b"t"])
    assert (trigger.text, trigger.answers, trigger.sender) == ("production", "call-7", "web:alice")


async def test_the_sign_in_page_explains_the_setup_and_serves_a_favicon(
    console: Server, browser, start_server, fake_redis
) -> None:
    page = await browser.new_page()
    seen = watch(page)
    await page.goto(f"{console.url}/#token=not-a-token-at-all")
    await expect(page.locator("#signin-error")).to_have_text("That token was not accepted.")
    hint = page.locator("#signin-hint")
    await expect(hint).to_contain_text("BOT_API_TOKENS is not set")  # as configured here: nothing blamed on it
    await expect(hint).to_contain_text("open the newest link")
    icon = await page.evaluate(
        "fetch(document.querySelector('link[rel=icon]').href).then(r => r.headers.get('content-type'))"
    )
    assert icon.startswith("image/svg+xml")
    async with console.session.get(f"{console.url}/console/favicon.svg") as favicon:
        assert favicon.status == 200 and (await favicon.text()).startswith("<svg")

    configured = await start_server(fake_redis, BOT_API_TOKENS=f"{ALICE}=web:alice")
    other = await browser.new_page()
    await other.goto(f"{configured.url}/#token=not-a-token-at-all")
    await expect(other.locator("#signin-hint")).to_contain_text("Paste your token from BOT_API_TOKENS")
    assert [error for error in seen["errors"] if "401" not in error] == []  # the refused /v1/me is the only one


async def test_threads_are_listed_by_last_update_and_filtered(console: Server, browser) -> None:
    first = await console.call("POST", "/v1/threads", token=ALICE, json={"text": "/list_services"})
    console.harness.clock.advance(5)
    second = await console.call("POST", "/v1/threads", token=ALICE, json={"text": "/restart api production"})
    await console.harness.drain()
    console.harness.clock.advance(5)
    again = await console.call("POST", f"/v1/threads/{first.body['thread_id']}/events", json={"text": "/list_services"})
    assert again.status == 202
    await console.harness.drain()
    page = await signed_in(browser, console, ALICE, "web:alice")
    await page.click("[data-nav=threads]")
    rows = page.locator("#thread-rows tr")
    await expect(rows).to_have_count(2)
    order = await rows.evaluate_all("rows => rows.map(r => r.dataset.threadId)")
    assert order == [first.body["thread_id"], second.body["thread_id"]]  # the one written last first

    await page.locator("#filter-status").select_option("awaiting_approval")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-thread-id", second.body["thread_id"])
    await page.locator("#filter-status").select_option("")
    await page.locator("#filter-agent").fill("incident")
    await page.locator("#filter-agent").dispatch_event("change")
    await expect(rows).to_have_count(1)
    await page.locator("#filter-agent").fill("")
    await page.locator("#filter-channel").fill("web")
    await page.locator("#filter-channel").dispatch_event("change")
    await expect(page.locator("#threads-empty")).to_be_visible()
    await expect(rows).to_have_count(0)
