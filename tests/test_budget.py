"""The model budget: past BOT_RATE_MODEL calls a requester's thread waits, the request kept; others go on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from core.domain import events as ev
from core.domain.errors import ConfigError
from core.model.llm import ModelRequest
from tests import conftest
from tests.conftest import Harness, ScriptedModel, call


def replying(request: ModelRequest) -> object:
    return call("reply", message=f"hello {request.state.requester}")


async def test_a_requester_past_the_model_budget_waits_and_others_go_on(
    redis_client: aioredis.Redis, make_harness: Callable[..., Harness]
) -> None:
    model = ScriptedModel(replying)  # type: ignore[arg-type]
    h = make_harness(redis_client, model, BOT_RATE_MODEL="2/hour")
    for n in range(3):
        h.conversation = f"operator/{n}"
        await h.say("how are things?")
    h.conversation = "dana/1"
    await h.say("how are things?", sender="cli:dana")

    asked_for = [request.state.requester for request in model.requests]
    assert asked_for == ["cli:operator", "cli:operator", "cli:dana"], "the third call of cli:operator was not made"
    notices = [o for o in await h.outbox() if isinstance(o, ev.Notice) and o.level == "warning"]
    assert len(notices) == 1 and notices[0].conversation == "operator/2"
    assert "cli:operator made more than 2 model calls per 1 hour; retry in " in notices[0].text
    assert "Your request is saved" in notices[0].text
    (waiting,) = [t for t in await h.wiring.store.list_threads() if t.conversation == "operator/2"]
    assert waiting.status == "awaiting_human"
    assert h.wiring.metrics.registry.get_sample_value("bot_rate_limited_total", {"limit": "model"}) == 1


@pytest.mark.parametrize("rate", ["lots", "5 per fortnight"])
def test_a_budget_that_is_not_a_rate_is_a_config_error(tmp_path, rate: str) -> None:
    with pytest.raises(ConfigError, match="BOT_RATE_MODEL.*is not a rate like 60/minute"):
        conftest.test_settings(tmp_path, BOT_RATE_MODEL=rate)


async def test_off_means_no_budget(redis_client, make_harness) -> None:
    model = ScriptedModel(replying)  # type: ignore[arg-type]
    h = make_harness(redis_client, model, BOT_RATE_MODEL="off")
    for n in range(3):
        h.conversation = f"operator/{n}"
        await h.say("how are things?")
    assert len(model.requests) == 3 and not [o for o in await h.outbox() if isinstance(o, ev.Question)]
