"""A plan on the card: a gated tool's `preview` runs before its approval card is posted, through real
threads on the terminal's channel (`core.runtime.previews`). A preview that fails or times out is shown
as failed and the request is asked all the same; its output is redacted, and cut on the card."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from adapters.terminal import render
from core.domain import events as ev
from core.domain.errors import ConfigError
from core.redis import keys
from core.runtime.previews import CARD_CHARS
from core.tools.registry import load_tools

TOOLS = """
[groups]
oncall = ['cli:alice', 'cli:dana']
[tools.failover]
description = 'Fail over the database.'
executor = {kind='command', argv=['{python}', '-c', 'print("failed over")']}
preview = %s
approval = {required=true, approvers=['group:oncall'], allow_self=false, expires_in=3600}
[tools.failover.parameters]
type = 'object'
required = ['region']
additionalProperties = false
properties.region = {type='string', enum=['eu', 'us']}
"""
SECRET = "hunter2-very-secret"


async def hang(**args: object) -> str:
    """A preview that never answers: only its timeout ends it."""
    await asyncio.Event().wait()
    return "never"


def loud(**args: object) -> str:
    return "\n".join(f"line {n:04d} of the plan for {args['region']}" for n in range(200))


def _tools(tmp_path: Path, preview: str) -> Path:
    path = tmp_path / "tools.toml"
    path.write_text(TOOLS % preview)
    return path


def _harness(make_harness, client, tmp_path: Path, preview: str, **env: str):
    h = make_harness(client, BOT_TOOLS_FILE=str(_tools(tmp_path, preview)), **env)
    h.user = "cli:dana"
    return h


async def _asked(h) -> tuple[ev.ApprovalRequest, list[ev.Event]]:
    await h.say("/failover eu")
    card = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    state = (await h.wiring.store.list_threads())[0]
    return card, await h.wiring.store.load_events(state.thread_id)


def _previewed(events: list[ev.Event]) -> ev.ToolPreviewed:
    return next(e for e in events if isinstance(e, ev.ToolPreviewed))


async def test_the_preview_is_on_the_card_and_in_the_thread(fake_redis, make_harness, tmp_path) -> None:
    preview = (
        """{kind='command', argv=['{python}', '-c', 'import sys; print("plan: fail over", sys.argv[1])', '{region}']}"""
    )
    h = _harness(make_harness, fake_redis, tmp_path, preview)
    card, events = await _asked(h)

    assert (card.preview, card.preview_failed, card.preview_more) == ("plan: fail over eu", False, 0)
    shown = render(card)
    assert "bot>   preview:\nbot>     plan: fail over eu" in shown
    kinds = [type(e).__name__ for e in events]
    assert kinds[-3:] == ["ToolCall", "ToolPreviewed", "ApprovalRequested"], "committed together with the request"
    previewed = _previewed(events)
    assert (previewed.ok, previewed.output, previewed.tool) == (True, "plan: fail over eu", "failover")
    record = await h.wiring.store.get_approval(card.approval_id)
    assert record is not None and record.card_preview["preview"] == "plan: fail over eu", "kept to send the card again"

    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    assert any(isinstance(e, ev.ToolResult) for e in await h.wiring.store.load_events(record.thread_id))


async def test_a_failing_preview_is_shown_as_failed_and_the_request_still_asked(
    redis_client, make_harness, tmp_path
) -> None:
    preview = """{kind='command', argv=['{python}', '-c', 'import sys; print("no state file"); sys.exit(3)']}"""
    h = _harness(make_harness, redis_client, tmp_path, preview)
    card, events = await _asked(h)

    assert card.preview_failed and card.preview == "failover preview exited with status 3: no state file"
    assert "bot>   preview failed: failover preview exited with status 3: no state file" in render(card)
    assert not _previewed(events).ok
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    assert any(isinstance(o, ev.Reply) and "failed over" in o.text for o in await h.outbox()), "the request ran"


async def test_a_preview_that_times_out_is_a_failed_preview(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(make_harness, fake_redis, tmp_path, "{kind='python', target='tests.test_previews:hang', timeout=0.05}")
    card, events = await _asked(h)
    assert card.preview_failed and card.preview == "failover preview timed out after 0.05s"
    assert any(isinstance(e, ev.ApprovalRequested) for e in events)


async def test_a_secret_in_the_preview_is_redacted_on_the_card_the_thread_and_the_record(
    fake_redis, make_harness, tmp_path
) -> None:
    preview = """{kind='command', argv=['{python}', '-c', 'import os; print("token:", os.environ["DB_TOKEN"])'], env=['DB_TOKEN']}"""
    h = _harness(make_harness, fake_redis, tmp_path, preview, DB_TOKEN=SECRET)
    card, events = await _asked(h)
    assert card.preview == "token: [redacted:DB_TOKEN]"
    assert SECRET not in _previewed(events).output
    raw = await fake_redis.hgetall(keys.approval(card.approval_id))
    assert raw and SECRET not in json.dumps({k.decode(): v.decode() for k, v in raw.items()})


async def test_a_long_preview_is_cut_on_the_card_and_whole_in_the_thread(fake_redis, make_harness, tmp_path) -> None:
    h = _harness(
        make_harness,
        fake_redis,
        tmp_path,
        "{kind='python', target='tests.test_previews:loud'}",
        BOT_PUBLIC_URL="https://ops.example.com",
    )
    card, events = await _asked(h)
    whole = loud(region="eu")
    assert len(card.preview) <= CARD_CHARS and whole.startswith(card.preview)
    assert card.preview_more == len(whole) - len(card.preview) > 0
    assert _previewed(events).output == whole
    assert f"more characters; the whole preview is in the thread: {card.thread_url}" in render(card)


async def test_the_shipped_deploy_tool_previews_its_dry_run(fake_redis, make_harness) -> None:
    """DeployBot: `deployctl deploy --dry-run` on the card, current version -> new version."""
    h = make_harness(fake_redis)
    await h.say("/deploy api 1.5.0 production")
    card = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    assert card.preview.splitlines()[:2] == ["plan: deploy api 1.5.0 to production", "  version: 1.0.0 -> 1.5.0"]
    assert "open incidents: none" in card.preview


def test_a_preview_is_checked_when_the_tools_load(tmp_path) -> None:
    tools = load_tools(_tools(tmp_path, "{kind='command', argv=['echo', '{region}'], timeout=5}"))
    assert tools.get("failover").preview is not None
    with pytest.raises(ConfigError, match="placeholder {zone}"):
        load_tools(_tools(tmp_path, "{kind='command', argv=['echo', '{zone}']}"))
    with pytest.raises(ConfigError, match="timeout"):
        load_tools(_tools(tmp_path, "{kind='command', argv=['echo'], timeout=0}"))
    ungated = (TOOLS % "{kind='command', argv=['echo']}").replace("required=true, ", "")
    (tmp_path / "tools.toml").write_text(ungated)
    with pytest.raises(ConfigError, match="no call of it needs approval"):
        load_tools(tmp_path / "tools.toml")


async def test_the_card_sent_again_for_a_quorum_keeps_the_preview(fake_redis, make_harness, tmp_path) -> None:
    path = _tools(tmp_path, """{kind='command', argv=['{python}', '-c', 'print("plan: fail over")']}""")
    path.write_text(path.read_text().replace("expires_in=3600", "expires_in=3600, approvals=2"))
    path.write_text(path.read_text().replace("['cli:alice', 'cli:dana']", "['cli:alice', 'cli:bob', 'cli:dana']"))
    h = make_harness(fake_redis, BOT_TOOLS_FILE=str(path))
    h.user = "cli:dana"
    card, _ = await _asked(h)
    await h.say(f"approve {card.approval_id}", sender="cli:alice")
    again = [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)][-1]
    assert again.approved_by == ["cli:alice"] and again.preview == "plan: fail over"


async def test_no_preview_runs_for_a_call_a_change_freeze_refuses(fake_redis, make_harness, tmp_path) -> None:
    """Holds come first: a refused call never reaches the card, so its preview never runs."""
    marker = tmp_path / "previewed"
    preview = f"""{{kind='command', argv=['{{python}}', '-c', 'open("{marker}", "w")']}}"""
    (tmp_path / "calendar.toml").write_text(
        '[freezes.peak]\nstart = 2026-11-20T00:00:00\nend = 2026-11-30T00:00:00\ntimezone = "UTC"\n'
    )
    h = _harness(make_harness, fake_redis, tmp_path, preview, BOT_CALENDAR_FILE=str(tmp_path / "calendar.toml"))
    await h.say("/failover eu")
    outbox = await h.outbox()
    assert not [o for o in outbox if isinstance(o, ev.ApprovalRequest)]
    assert any("peak" in getattr(o, "text", "") for o in outbox), "refused, naming the freeze"
    assert not marker.exists()


async def test_an_edit_previews_the_edited_call_on_the_new_card(fake_redis, make_harness, tmp_path) -> None:
    """The plan on a card is for the arguments it asks about: an edit that waits for more approvals runs
    the preview again for the edited call, and the new card shows that plan."""
    preview = (
        """{kind='command', argv=['{python}', '-c', 'import sys; print("plan: fail over", sys.argv[1])', '{region}']}"""
    )
    path = _tools(tmp_path, preview)
    path.write_text(path.read_text().replace("expires_in=3600", "expires_in=3600, approvals=2"))
    path.write_text(path.read_text().replace("['cli:alice', 'cli:dana']", "['cli:alice', 'cli:bob', 'cli:dana']"))
    h = make_harness(fake_redis, BOT_TOOLS_FILE=str(path))
    h.user = "cli:dana"
    card, _ = await _asked(h)
    assert card.preview == "plan: fail over eu"

    await h.say(f"approve {card.approval_id} region=us", sender="cli:alice")
    new = [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)][-1]
    assert new.approval_id != card.approval_id and new.args == {"region": "us"}
    assert new.preview == "plan: fail over us" and new.approved_by == ["cli:alice"]
    events = await h.wiring.store.load_events((await h.wiring.store.list_threads())[0].thread_id)
    kinds = [type(e).__name__ for e in events]
    assert kinds[-4:] == ["ArgumentsEdited", "ToolPreviewed", "ApprovalRequested", "ApprovalVoted"]
    assert _previewed(events[-4:]).output == "plan: fail over us"
