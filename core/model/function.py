"""`FunctionModel`: a `Model` made from a function of the request, for tests, benchmarks and agents whose
next step is plain code (as pydantic-ai's FunctionModel is for its agents)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from core.model.llm import Choice, ModelRequest

ChooseFunction = Callable[[ModelRequest], Choice | Awaitable[Choice]]


class FunctionModel:
    """Chooses with `function` (sync or async). `reads_history`: load the thread's events first, as a
    language model does, so `request.history` holds them for the function (and for a test to inspect)."""

    def __init__(self, function: ChooseFunction, *, reads_history: bool = False) -> None:
        self.function = function
        self.reads_history = reads_history

    async def choose(self, request: ModelRequest) -> Choice:
        if self.reads_history:
            await request.events()
        chosen = self.function(request)
        return await chosen if inspect.isawaitable(chosen) else chosen
