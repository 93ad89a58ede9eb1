"""A plan on the card: a gated tool's `preview` (its plan before apply, as Atlantis shows one) runs
before the approval card is posted, and the card shows what it said.

Rules:
- The preview runs only for a call that reached `Approvals.open`: after the change freezes, windows and
  target locks admitted it (`core.runtime.holds`), never for a refused call.
- It runs through the same `ToolRunner` as the tool (argv, HTTP or Python; its output redacted), with
  its own timeout. It runs under the thread's lease, so a slow preview holds the thread that long and no
  longer: the timeout bounds it.
- A preview never holds the request back: one that fails, times out or is misconfigured is shown as
  "preview failed: <one line>" and the request goes out all the same.
- The thread records the whole text (`ToolPreviewed`, capped at `EVENT_CHARS`); the card shows its first
  `CARD_CHARS` and says how much it leaves out, with the way to the thread in the console.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from core.domain import events as ev
from core.domain.errors import BotError
from core.runtime.run import Run
from core.tools.executors import CallContext, ToolRunner
from core.tools.registry import ToolSpec

log = logging.getLogger(__name__)

CARD_CHARS = 1500  # what a card shows of a preview; Slack's and Discord's blocks hold a little more
EVENT_CHARS = 20_000  # what the thread keeps of it
LINE_CHARS = 300  # a failure's one line


@dataclass(frozen=True)
class Preview:
    """What a preview said: its text (redacted), or the one line saying why it failed."""

    call_id: str
    tool: str
    ok: bool
    text: str
    duration_ms: float

    @property
    def shown(self) -> str:
        """The text a card shows: the first `CARD_CHARS`, cut at a line's end where one is near."""
        if len(self.text) <= CARD_CHARS:
            return self.text
        cut = self.text.rfind("\n", CARD_CHARS // 2, CARD_CHARS)
        return self.text[: cut if cut > 0 else CARD_CHARS]

    @property
    def more(self) -> int:
        """Characters the card leaves out."""
        return len(self.text) - len(self.shown)

    def on_record(self, args_hash: str) -> dict[str, Any]:
        """The approval record's preview fields, for the arguments hashed `args_hash`."""
        return {
            "preview": self.shown,
            "preview_failed": not self.ok,
            "preview_more": self.more,
            "preview_of": args_hash,
        }

    def event(self, run: Run) -> ev.ToolPreviewed:
        return ev.ToolPreviewed(
            **run.meta(f"tool:{self.tool}"),
            call_id=self.call_id,
            tool=self.tool,
            ok=self.ok,
            output=self.text,
            duration_ms=self.duration_ms,
        )


def one_line(text: str) -> str:
    return " ".join(text.split())[:LINE_CHARS] or "no reason given"


class Previews:
    """Runs tools' previews for the approval cards."""

    def __init__(self, runner: ToolRunner) -> None:
        self.runner = runner

    async def run(self, run: Run, call_id: str, args: dict[str, Any], spec: ToolSpec) -> Preview | None:
        """The preview of the call `call_id` with `args` (its arguments, or an approver's edit of them), or
        None when the tool declares none. Never raises for the preview's own failure: that is a failed
        preview, shown on the card."""
        if spec.preview is None:
            return None
        # The tool's spec with the preview as its executor: the runner fills the same placeholders.
        name = f"{spec.name} preview"
        as_tool = spec.model_copy(
            update={"name": name, "executor": spec.preview, "timeout": spec.preview.timeout, "max_output": EVENT_CHARS}
        )
        ctx = CallContext(thread_id=run.state.thread_id, call_id=call_id, requester=run.state.requester)
        started = time.perf_counter()
        ok = True
        try:
            text = (await self.runner.run(as_tool, args, ctx)).text
        except BotError as exc:  # failed, timed out, or misconfigured (no HTTP session, a bad import)
            ok, text = False, one_line(str(exc))
        except Exception as exc:  # a bug in a Python preview's callable must not hold the request back either
            log.exception("the preview of %s failed unexpectedly", spec.name)
            ok, text = False, one_line(f"{name} failed: {type(exc).__name__}: {exc}")
        ms = (time.perf_counter() - started) * 1000
        log.info("preview of %s: %s in %.0f ms", spec.name, "ok" if ok else "failed", ms)
        # The runner redacted what it knows; the run's redactor is the thread's (the record is stored apart).
        return Preview(call_id=call_id, tool=spec.name, ok=ok, text=run.redactor.text(text), duration_ms=ms)
