"""Change freezes and allowed windows as a pure calendar: which instant is held, by what, until when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.settings import CONFIG_DIR
from core.domain.calendar import Calendar, Period, load_calendar
from core.domain.errors import ConfigError

BERLIN = "Europe/Berlin"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def weekend(**fields: object) -> Period:
    """Every Friday 16:00 for 64h in Berlin: to Monday 08:00 on the wall clock."""
    return Period.model_validate(
        {"name": "weekend", "cron": "0 16 * * 5", "duration": "64h", "timezone": BERLIN, **fields}
    )


def business_hours(**fields: object) -> Period:
    return Period.model_validate(
        {"name": "business_hours", "cron": "0 9 * * 1-5", "duration": "8h", "timezone": BERLIN, **fields}
    )


def test_a_one_off_freeze_holds_from_its_start_to_its_end_read_in_its_zone() -> None:
    freeze = Period(
        name="year_end", start=datetime(2026, 12, 21), end=datetime(2027, 1, 4, 9), timezone=BERLIN, reason="year end"
    )
    calendar = Calendar(freezes=[freeze])
    assert calendar.frozen("deploy", utc(2026, 12, 20, 22, 59)) is None
    held = calendar.frozen("deploy", utc(2026, 12, 20, 23, 0))  # midnight in Berlin
    assert held is not None and (held.name, held.kind, held.reason) == ("year_end", "freeze", "year end")
    assert held.ends == held.reopens == utc(2027, 1, 4, 8, 0)
    assert calendar.frozen("deploy", utc(2027, 1, 4, 8, 0)) is None, "the end is not frozen"


def test_a_weekly_freeze_ends_on_the_wall_clock_across_the_autumn_dst_change() -> None:
    """Friday 23 Oct 2026 16:00 CEST + 64h is Monday 26 Oct 08:00 CET: 65 hours, as the clocks went back."""
    calendar = Calendar(freezes=[weekend()])
    assert calendar.frozen("deploy", utc(2026, 10, 23, 13, 59)) is None
    held = calendar.frozen("deploy", utc(2026, 10, 23, 14, 0))
    assert held is not None and held.ends == utc(2026, 10, 26, 7, 0)
    assert held.ends - utc(2026, 10, 23, 14, 0) == timedelta(hours=65)
    assert calendar.frozen("deploy", utc(2026, 10, 26, 6, 59)) is not None
    assert calendar.frozen("deploy", utc(2026, 10, 26, 7, 0)) is None


def test_a_weekly_freeze_ends_on_the_wall_clock_across_the_spring_dst_change() -> None:
    """Friday 27 Mar 2026 16:00 CET + 64h is Monday 30 Mar 08:00 CEST: 63 hours."""
    calendar = Calendar(freezes=[weekend()])
    held = calendar.frozen("deploy", utc(2026, 3, 28, 12, 0))
    assert held is not None and held.ends == utc(2026, 3, 30, 6, 0)
    assert calendar.frozen("deploy", utc(2026, 3, 30, 6, 0)) is None


def test_outside_every_window_a_call_is_held_until_the_next_one_opens() -> None:
    calendar = Calendar(windows=[business_hours()])
    assert calendar.frozen("deploy", utc(2026, 11, 23, 14, 0)) is None, "Monday 15:00 in Berlin"
    evening = calendar.frozen("deploy", utc(2026, 11, 23, 16, 0))  # 17:00 in Berlin: closed
    assert evening is not None and (evening.name, evening.kind) == ("business_hours", "window")
    assert evening.ends == evening.reopens == utc(2026, 11, 24, 8, 0)
    saturday = calendar.frozen("deploy", utc(2026, 11, 28, 12, 0))
    assert saturday is not None and saturday.ends == utc(2026, 11, 30, 8, 0), "Monday 09:00 in Berlin"


def test_freezes_that_run_into_each_other_end_with_the_last_and_a_closed_window_delays_the_reopening() -> None:
    first = Period(name="release", start=datetime(2026, 11, 26, 12), end=datetime(2026, 11, 27, 18), timezone=BERLIN)
    calendar = Calendar(freezes=[first, weekend()], windows=[business_hours()])
    held = calendar.frozen("deploy", utc(2026, 11, 26, 12, 0))
    assert held is not None and held.name == "release"
    assert held.ends == utc(2026, 11, 30, 7, 0), "the weekend freeze starts before the release freeze ends"
    assert held.reopens == utc(2026, 11, 30, 8, 0), "then business hours open at 09:00"


def test_a_period_may_name_the_tools_it_holds() -> None:
    calendar = Calendar(freezes=[weekend(tools=["deploy"])], windows=[business_hours(tools=["rollback"])])
    saturday = utc(2026, 11, 28, 12, 0)
    assert calendar.frozen("deploy", saturday) is not None
    assert calendar.frozen("restart", saturday) is None
    assert calendar.frozen("rollback", saturday) is not None and calendar.frozen("rollback", saturday).kind == "window"


def test_a_window_that_never_opens_again_holds_for_good() -> None:
    once = Period(name="migration", start=datetime(2026, 11, 1), end=datetime(2026, 11, 2), timezone=BERLIN)
    held = Calendar(windows=[once]).frozen("deploy", utc(2026, 11, 23, 14, 0))
    assert held is not None and held.ends is None and held.reopens is None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "calendar.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[freezes.x]\ncron = "0 16 * * 5"\nduration = "1h"\ntimezone = "Mars/Olympus"',
            "'Mars/Olympus' is not an IANA",
        ),
        ('[freezes.x]\ncron = "0 25 * * 5"\nduration = "1h"', "'0 25 * * 5' is not a cron expression"),
        ("[freezes.x]\nstart = 2026-12-02T00:00:00\nend = 2026-12-01T00:00:00", "is not after start"),
        ('[windows.x]\ncron = "0 9 * * 1-5"', "needs a duration"),
        ('[windows.x]\ncron = "0 9 * * 1-5"\nduration = "8 hours"', "is not a duration"),
        ("[freezes.x]\nstart = 2026-12-02T00:00:00", "needs both start and end"),
        ('[freezes.x]\nstart = 2026-12-01T00:00:00\nend = 2026-12-02T00:00:00\ncron = "0 9 * * *"', "not both"),
        ("[freezes.x]\nreason = 'no time given'", "say when"),
        ("[freeze.x]\nreason = 'a typo'", "unknown tables ['freeze']"),
    ],
)
def test_a_bad_calendar_is_a_config_error_that_names_the_period_and_the_fix(tmp_path, body, message) -> None:
    with pytest.raises(ConfigError) as caught:
        load_calendar(_write(tmp_path, body))
    assert message in str(caught.value) and str(tmp_path) in str(caught.value), str(caught.value)


def test_a_period_naming_an_unknown_tool_is_refused(tmp_path) -> None:
    path = _write(tmp_path, '[freezes.x]\ncron = "0 16 * * 5"\nduration = "1h"\ntools = ["deploi"]')
    with pytest.raises(ConfigError, match=r"freeze 'x' .* names unknown tools \['deploi'\]"):
        load_calendar(path, known=lambda tool: tool == "deploy")


def test_a_missing_file_freezes_nothing_and_the_shipped_one_neither(tmp_path) -> None:
    assert load_calendar(tmp_path / "absent.toml") == Calendar()
    shipped = load_calendar(CONFIG_DIR / "calendar.toml")
    assert shipped.frozen("deploy", utc(2026, 12, 4, 12, 0)) is None
