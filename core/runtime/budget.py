"""The model budget: each requester may spend at most so many model calls per window (BOT_RATE_MODEL).

A runaway loop, a flood of messages or one busy requester cannot spend the whole team's model
budget: past the limit the model is not called, and the thread asks its requester to answer
again later (the request is kept). Counted in Redis, so the budget holds across workers; that
costs one Redis round trip per model call (about 0.1 ms, against a model call's second or more).
"""

from __future__ import annotations

from core.domain.errors import LLMError
from core.model.llm import Choice, Model, ModelRequest
from core.redis.limits import Limit, RateLimits

MODEL_LIMIT = "model"


def model_limit(rate: str) -> dict[str, Limit]:
    return {MODEL_LIMIT: Limit(rate, "model calls")}


class BudgetSpent(LLMError):
    """The requester's model budget is spent for now; the message says when to try again."""


class BudgetedModel:
    """A `Model` that first spends one call of the thread requester's budget."""

    def __init__(self, model: Model, budget: RateLimits) -> None:
        self.model = model
        self.budget = budget

    async def choose(self, request: ModelRequest) -> Choice:
        requester = request.state.requester or request.caller
        refused = await self.budget.hit(MODEL_LIMIT, requester)
        if refused is not None:
            raise BudgetSpent(refused.message)
        return await self.model.choose(request)


def budgeted(model: Model, budget: RateLimits | None) -> Model:
    """`model` spending `budget` first; `model` itself without one (BOT_RATE_MODEL=off)."""
    return model if budget is None else BudgetedModel(model, budget)
