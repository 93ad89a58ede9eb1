"""FunctionModel: a Model from a plain function, sync or async, reading the history only when asked."""

from __future__ import annotations

from core import FunctionModel
from core.domain import events as ev
from core.domain.reducer import ThreadState
from core.model.llm import Choice, ModelRequest
from core.tools.registry import ToolRegistry


def _request(loaded: list[int]) -> ModelRequest:
    async def load() -> list[ev.Event]:
        loaded.append(1)
        return []

    return ModelRequest(
        state=ThreadState(thread_id="t1"), tools=ToolRegistry({}, {}), caller="cli:op", load_history=load
    )


async def test_a_sync_function_chooses_without_loading_the_history() -> None:
    loaded: list[int] = []
    model = FunctionModel(lambda request: Choice(tool="reply", args={"message": request.caller}))
    assert await model.choose(_request(loaded)) == Choice(tool="reply", args={"message": "cli:op"})
    assert loaded == []


async def test_an_async_function_that_reads_the_history_gets_it_loaded_once() -> None:
    loaded: list[int] = []

    async def choose(request: ModelRequest) -> Choice:
        return Choice(tool="reply", args={"message": str(len(await request.events()))})

    request = _request(loaded)
    assert (await FunctionModel(choose, reads_history=True).choose(request)).args == {"message": "0"}
    assert loaded == [1] and request.history == []
