"""Paging threads and events: every thread on exactly one page while others are being created."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.domain.events import MessageTrigger
from core.domain.ids import new_id
from core.redis.paging import Cursor
from tests.conftest import Harness


async def create(h: Harness, label: str, advance: float) -> None:
    h.clock.advance(advance)
    trigger = MessageTrigger(id=new_id(), channel="cli", conversation=label, sender=h.user, text="/list_services")
    await h.wiring.threads.handle(trigger)


# Each step: create some threads (advancing the clock 0 or 1 s each: ties included), then read a page.
steps = st.lists(
    st.tuples(st.lists(st.sampled_from([0.0, 1.0]), max_size=4), st.integers(min_value=1, max_value=5)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.lists(st.sampled_from([0.0, 0.0, 1.0]), min_size=1, max_size=15), plan=steps)
async def test_every_thread_appears_once_across_pages_while_threads_are_created(
    fake_redis, make_harness, initial, plan
) -> None:
    await fake_redis.flushdb()
    h = make_harness(fake_redis)
    for n, advance in enumerate(initial):
        await create(h, f"before-{new_id()}-{n}", advance)
    existing = {state.thread_id for state in await h.wiring.store.list_threads(1000)}
    seen: list[str] = []
    cursor: Cursor | None = None
    for more, page_size in plan:
        for n, advance in enumerate(more):
            await create(h, f"during-{new_id()}-{n}", advance)
        page, cursor = await h.wiring.store.page_threads(page_size, cursor)
        seen += [state.thread_id for state in page]
        if cursor is None:
            break
    while cursor is not None:
        page, cursor = await h.wiring.store.page_threads(5, cursor)
        seen += [state.thread_id for state in page]
    assert len(seen) == len(set(seen)), "no thread on two pages"
    assert existing <= set(seen), "every thread that existed before paging began is on a page"


async def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    cursor = Cursor(1796290000.123456, "tabc")
    assert Cursor.parse(cursor.token()) == cursor
    for forged in ("", "bm90LWEtY3Vyc29y", "!!!"):
        try:
            Cursor.parse(forged)
        except ValueError:
            continue
        raise AssertionError(f"{forged!r} was accepted")


async def test_threads_by_last_write_put_the_latest_written_first(fake_redis, make_harness) -> None:
    h = make_harness(fake_redis)
    for label in ("a", "b", "c"):
        await create(h, label, 1.0)
    h.clock.advance(1.0)
    (first,) = [t for t in await h.wiring.store.list_threads() if t.conversation == "a"]
    await h.wiring.threads.handle(
        MessageTrigger(id=new_id(), channel="cli", conversation="a", sender=h.user, text="/list_services")
    )
    by_creation, _ = await h.wiring.store.page_threads(3)
    by_write, cursor = await h.wiring.store.page_threads(2, by="updated")
    rest, end = await h.wiring.store.page_threads(2, cursor, by="updated")
    assert [t.conversation for t in by_creation] == ["c", "b", "a"]
    assert [t.conversation for t in by_write + rest] == ["a", "c", "b"] and end is None
    assert by_write[0].thread_id == first.thread_id
