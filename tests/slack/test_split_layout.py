"""The README's production layout as real processes: `bot serve` (web), `bot channels` and `bot worker`
on one embedded Redis, with Slack in HTTP mode talking to `FakeSlack`.

Slack posts to serve's /slack/events (a slash command, an Events API mention, a button), which
acknowledges and enqueues; a worker answers; the `channels` process's renderer posts the answer and
the card, and edits the card: serve runs no renderer, and the worker renders nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from adapters.slack.blocks import APPROVE
from tests.e2e.chat_driver import DEADLINE_SECONDS, REPO_ROOT, BotProcesses, Chat, bot_env
from tests.eventually import eventually
from tests.slack.conftest import APPROVER, SECRET, block_actions, command_form, event_envelope, signed_headers
from tests.slack.fake_slack import BOT_USER, TEAM, Call, FakeSlack

ROOT = "1700000001.000100"
# Every bot start imports the SDKs and joins or starts a redis-server: seconds, not milliseconds.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


class Layout:
    """The processes of one test on one data directory; `close()` stops them all, then the redis-server."""

    def __init__(self, data_dir: Path, fake: FakeSlack) -> None:
        self.bots = BotProcesses(data_dir)
        self.env = {
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_SIGNING_SECRET": SECRET,  # HTTP mode: no SLACK_APP_TOKEN
            "SLACK_API_URL": fake.api_url,
            "BOT_GROUP_ONCALL": f"slack:{TEAM}:U1,slack:{TEAM}:{APPROVER}",
            "BOT_HTTP_PORT": "0",
        }
        self.processes: list[Chat] = []

    async def start(self, command: str) -> Chat:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            command,
            cwd=REPO_ROOT,
            env=bot_env(self.bots.data_dir, **self.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started = Chat(process, f"bot {command}")
        self.processes.append(started)
        return started

    async def stop(self, process: Chat) -> None:
        """SIGTERM, as a supervisor stops it: it finishes and exits 0."""
        with contextlib.suppress(ProcessLookupError):
            process.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(DEADLINE_SECONDS):
                await process.process.wait()
        except TimeoutError:
            raise AssertionError(f"{process.name} ignored SIGTERM\n{process.transcript()}") from None
        assert process.process.returncode == 0, f"{process.name} exited badly\n{process.transcript()}"

    async def close(self) -> None:
        for process in self.processes:
            await process.kill()  # a no-op for one that exited
        await self.bots.close()


@pytest.fixture
async def layout(tmp_path: Path, fake_slack: FakeSlack) -> AsyncIterator[Layout]:
    started = Layout(tmp_path / "data", fake_slack)
    try:
        yield started
    finally:
        await started.close()


def cards(fake: FakeSlack) -> list[Call]:
    return [c for c in fake.called("chat.postMessage") if "blocks" in c.args]


def logged(process: Chat, text: str) -> bool:
    return any(text in line for line in process.errors)


async def test_web_receives_slack_and_channels_renders_the_answer(layout: Layout, fake_slack: FakeSlack) -> None:
    """A slash command to `bot serve`'s /slack/events is acked there; `bot channels` posts the answer."""
    web = await layout.start("serve")
    channels = await layout.start("channels")
    worker = await layout.start("worker")
    base = (await web.expect(r"^web console: (http://[^/\s]+)/"))[1]
    await eventually(lambda: logged(channels, "slack: HTTP mode"), "`bot channels` to render the slack outbox")
    await eventually(lambda: logged(worker, "worker "), "`bot worker` to start")

    body = command_form(fake_slack, "/ops", "status api staging")
    headers = signed_headers(body, "application/x-www-form-urlencoded")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/slack/events", data=body.encode(), headers=headers) as response:
            assert response.status == 200, await response.text()
            assert "Working on `/status api staging`" in await response.text()
        async with session.get(f"{base}/readyz") as ready:
            readiness = await ready.json()
    assert ready.status == 200 and "slack" not in readiness["checks"], "serve does not run the channel"

    def answered() -> bool:  # a streamed answer's message exists before its text is appended: wait for the text
        said = fake_slack.answers()
        return len(said) == 2 and "api in staging" in said[-1]["text"]

    await eventually(answered, "the opener and the answer's text shown in Slack")
    (opener,) = fake_slack.posts()
    assert (opener.args["channel"], opener.args["text"]) == ("C1", "<@U1> used `/ops status api staging`")
    answer = fake_slack.answers()[-1]
    assert answer["thread_ts"] == opener.result["ts"] and "api in staging" in answer["text"]

    # An Events API mention asks for a gated deploy: serve acks, the worker asks, channels posts the card.
    mention = {
        "type": "app_mention",
        "user": "U1",
        "text": f"<@{BOT_USER}> /deploy api 1.4.2 production",
        "ts": ROOT,
        "channel": "C1",
    }
    body = json.dumps(event_envelope(mention))
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base}/slack/events", data=body.encode(), headers=signed_headers(body, "application/json")
        ) as response,
    ):
        assert response.status == 200, await response.text()
    await eventually(lambda: bool(cards(fake_slack)), "the approval card posted in the mention's thread")
    (card,) = cards(fake_slack)
    assert card.args["thread_ts"] == ROOT

    # The approver's click goes to serve too; the card becomes a record and the deploy's answer comes.
    click = block_actions(card, APPROVE, APPROVER, "1700000600.000001")
    async with aiohttp.ClientSession() as session:
        headers = signed_headers(click, "application/x-www-form-urlencoded")
        async with session.post(f"{base}/slack/events", data=click.encode(), headers=headers) as response:
            assert response.status == 200, await response.text()
    await eventually(
        lambda: any("deployed api 1.4.2" in m["text"] for m in fake_slack.answers(thread_ts=ROOT)),
        "the approved deploy's answer in the thread",
    )
    (edit,) = fake_slack.called("chat.update")
    assert edit.args["ts"] == card.result["ts"] and f"Approved by <@{APPROVER}>" in edit.args["text"]

    for process in (web, channels, worker):
        await layout.stop(process)
    assert not any(re.search(r"^web console:", line) for line in channels.lines + worker.lines)
