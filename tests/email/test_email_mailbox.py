"""The IMAP watcher survives dropped connections and dead servers, and never skips or repeats mail."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from tests.email.conftest import FAST, MailWorld, attempt_within, reconnect_within
from tests.email.mails import SAM, new_mail, text
from tests.email.servers import Dovecot


async def marks(client: aioredis.Redis) -> dict[str, int]:
    return {key.decode(): int(await client.get(key)) async for key in client.scan_iter("email:uid:*")}


def no_duplicates_seen(caplog: pytest.LogCaptureFixture) -> bool:
    return not [r for r in caplog.records if "duplicate trigger" in r.getMessage() or "already" in r.getMessage()]


async def replies(w: MailWorld, n: int) -> list[str]:
    found = await w.until(lambda: w.smtp.to(SAM)[n - 1 :])
    await w.settle()
    return [text(m) for m in w.smtp.to(SAM)] if found else []


async def test_a_dropped_connection_reconnects_without_repeating_or_missing_mail(make_world, caplog) -> None:
    w = await make_world()
    await w.deliver(new_mail(SAM, "/status api staging"))
    await w.until(lambda: w.smtp.to(SAM))
    assert w.channel is not None and w.channel.mailbox.sessions == 1
    assert w.channel.healthy
    await asyncio.to_thread(w.dovecot.kick, w.settings.imap_user or "")  # the server drops our connections
    await w.until(lambda: w.channel.mailbox.sessions == 2 and w.channel.healthy)
    await w.deliver(new_mail(SAM, "/status web staging"))
    assert len(await replies(w, 2)) == 2
    assert no_duplicates_seen(caplog)
    assert list((await marks(w.h.wiring.redis)).values()) == [2]


async def test_mail_that_arrives_while_the_server_is_down_is_taken_after_it_returns(
    make_world, own_dovecot: Dovecot, caplog
) -> None:
    w = await make_world(server=own_dovecot)
    await w.deliver(new_mail(SAM, "/status api staging"))
    await w.until(lambda: w.smtp.to(SAM))
    await asyncio.to_thread(own_dovecot.crash)
    await w.until(lambda: w.channel is not None and not w.channel.healthy, drain=False)
    own_dovecot.deliver_offline(w.settings.imap_user or "", bytes(new_mail(SAM, "/status web staging")))
    await asyncio.to_thread(own_dovecot.start)
    texts = await replies(w, 2)
    assert len(texts) == 2 and "web" in texts[1]
    assert w.channel is not None and w.channel.mailbox.sessions == 2
    assert no_duplicates_seen(caplog)


async def test_the_watcher_re_idles_and_still_sees_new_mail(make_world) -> None:
    w = await make_world(timing=dataclasses.replace(FAST, idle_seconds=0.05))
    assert w.channel is not None
    await w.until(lambda: w.channel.mailbox.checks >= 4)  # several IDLE periods passed without mail
    await w.deliver(new_mail(SAM, "/status api staging"))
    assert len(await replies(w, 1)) == 1
    assert w.channel.mailbox.sessions == 1


async def test_mail_marked_read_by_a_person_is_still_processed_once(make_world) -> None:
    w = await make_world()
    await w.stop()
    await w.deliver(new_mail(SAM, "/status api staging"), flags=r"(\Seen)")  # read before the bot ran
    await w.start()
    await w.until(lambda: w.smtp.to(SAM))
    await w.deliver(new_mail(SAM, "/status web staging"), flags=r"(\Seen)")
    await w.until(lambda: w.smtp.to(SAM)[1:])
    await w.stop()  # a restarted channel starts at the high-water mark: nothing again
    await w.start()
    await w.until(lambda: w.channel is not None and w.channel.mailbox.sessions)
    await w.deliver(new_mail(SAM, "/status worker staging"))
    texts = await replies(w, 3)
    assert len(texts) == 3 and "worker" in texts[2]


# An attempt that began while Dovecot was still starting waits for its greeting instead of timing out
# and going round again: on a loaded machine Dovecot's first greeting can take several seconds.
PATIENT = dataclasses.replace(FAST, timeout=10)
REFUSALS = 3


# `own_dovecot` first, so it is stopped after the world: a server stopping under a live IDLE session
# waits for it while the test's event loop is paused in the fixture's teardown.
@pytest.mark.timeout(REFUSALS * (attempt_within(PATIENT) + PATIENT.backoff_max) + reconnect_within(PATIENT) + 60)
async def test_a_server_that_is_not_there_is_retried_with_backoff(own_dovecot: Dovecot, make_world) -> None:
    """The channel starts while IMAP is down, keeps trying, and works once the server is up."""
    await asyncio.to_thread(own_dovecot.crash)
    w = await make_world(server=own_dovecot, timing=PATIENT)
    await w.until(
        lambda: w.channel is not None and w.channel.mailbox.failures >= REFUSALS,
        f"{REFUSALS} refused connections, each retried",
        within=REFUSALS * (attempt_within(PATIENT) + PATIENT.backoff_max),
    )
    await asyncio.to_thread(own_dovecot.start)
    # Deadlines from the watcher's timing, not a guess: a loaded machine only comes closer to them.
    await w.until(
        lambda: w.channel is not None and w.channel.mailbox.sessions == 1,
        "a session once Dovecot is back",
        within=reconnect_within(PATIENT),
    )
    await w.deliver(new_mail(SAM, "/status api staging"))
    assert len(await replies(w, 1)) == 1


async def test_a_mailbox_seen_for_the_first_time_yields_only_recent_mail(make_world) -> None:
    """Pointing the bot at an old mailbox must not replay last month's requests."""
    w = await make_world()
    await w.stop()
    await w.deliver(new_mail(SAM, "/status api production"), when=datetime.now(UTC) - timedelta(days=30))
    await w.deliver(new_mail(SAM, "/status api staging"))
    await w.start()
    texts = await replies(w, 1)
    assert len(texts) == 1 and "staging" in texts[0]
