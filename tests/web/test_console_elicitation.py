"""An MCP server's question during a call, answered in the console's form (Chromium, the real page)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.domain import events as ev
from tests.mcp.servers.harness import SECRET, stdio_server, tools_file
from tests.web.conftest import ALICE, Server
from tests.web.test_console_browser import CHROMIUM, browser, signed_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not at /usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect
__all__ = ["browser"]  # a fixture used by name below


@pytest.fixture
async def mcp_console(fake_redis, start_server, tmp_path: Path) -> AsyncIterator[Server]:
    """The console on a core whose tools include the test MCP server's, with one worker, as `bot run` has."""
    path = tools_file(tmp_path, stdio_server())
    server = await start_server(fake_redis, BOT_TOOLS_FILE=str(path), OPS_MCP_CRED=SECRET)
    wiring = server.harness.wiring
    assert wiring.mcp is not None
    await wiring.mcp.start()
    worker = wiring.worker("console-worker")
    working = asyncio.create_task(worker.run(block_ms=100))
    yield server
    worker.stop()
    await working
    await wiring.mcp.aclose()


async def test_a_server_form_is_filled_in_the_console_and_its_answer_reaches_the_server(
    mcp_console: Server, browser
) -> None:
    page = await signed_in(browser, mcp_console, ALICE, "web:alice", viewport={"width": 390, "height": 844})
    await page.fill("#message", "/ops__rollout api")
    await page.click("#send")
    asked = page.locator("#transcript .msg.question")
    await expect(asked).to_contain_text(
        "MCP server ops asks, for ops__rollout: Which version of api should I roll out?"
    )
    form = asked.locator("form.elicit")
    await expect(form.get_by_label("Version *")).to_be_visible()
    await expect(asked.get_by_role("button", name="Decline")).to_be_visible()
    await form.get_by_label("Version *").fill("2.4.1")
    await form.get_by_label("Canary").select_option("yes")
    await form.get_by_role("button", name="Send answer").click()
    await expect(form.get_by_role("button", name="Send answer")).to_be_disabled()
    await expect(page.locator("#transcript .msg.bot").last).to_contain_text("rolled out api 2.4.1 (canary: True)")
    overflow = await page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
    assert not overflow, "the form fits a 390px screen"

    [thread] = await mcp_console.harness.wiring.store.list_threads()
    events = await mcp_console.harness.wiring.store.load_events(thread.thread_id)
    answered = next(e for e in events if isinstance(e, ev.ServerAnswered))
    assert (answered.actor, answered.content) == ("web:alice", {"version": "2.4.1", "canary": True})
