"""Models for `bot eval`: Claude itself, or its recorded answers replayed through the real SDK.

Both run `AnthropicModel` with the agent's prompt and tools, so the request is built exactly as in
production. Recordings live beside the scenarios (`evals/recorded/<file>.json`): per scenario id,
the content blocks Claude answered with and the hash of the system prompt it was given. A
recording made with another prompt still replays, and is reported as stale. Imports the SDK:
import this module only to run evals.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2

from core.domain.errors import LLMBadResponse
from core.model.anthropic import AnthropicModel
from core.model.llm import Choice, Model, ModelRequest
from core.model.prompts import PromptLibrary

ABOUT = "_about"
Recording = dict[str, Any]  # {"prompt_sha256": str, "content": [Messages API content blocks]}


def _split(scenario_id: str) -> tuple[str, str]:
    stem, _, key = scenario_id.partition("/")
    return stem, key


class Replay:
    """Serves each scenario's recorded answer to a real `AsyncAnthropic` through an in-memory transport."""

    def __init__(self, directory: Path, prompts: PromptLibrary, *, model: str) -> None:
        self.description = f"replay of recorded responses in {directory}"
        self.recordings: dict[str, Recording] = {}
        for path in sorted(directory.glob("*.json")):
            for key, recording in json.loads(path.read_text()).items():
                if key != ABOUT:
                    self.recordings[f"{path.stem}/{key}"] = recording
        self.stale: list[str] = []
        self._prompts = prompts
        self._model = model
        self._current = ""
        self._ids = itertools.count(1)
        transport = httpx2.MockTransport(self._answer)
        self._client = anthropic.AsyncAnthropic(
            api_key="replay",
            base_url="http://replay.invalid",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
        )

    def model(self, scenario_id: str, agent: str) -> Model:
        self._current = scenario_id
        recording = self.recordings.get(scenario_id)
        prompt = self._prompts.render(agent, agent_name=agent)
        if recording is not None and recording.get("prompt_sha256") != prompt.sha256:
            self.stale.append(scenario_id)
        return AnthropicModel(self._client, self._prompts, model=self._model, agent=agent)

    def _answer(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        recording = self.recordings.get(self._current)
        if recording is None:
            message = (
                f"no recorded response for scenario {self._current}; record one with "
                "ANTHROPIC_API_KEY set: bot eval --record"
            )
            error = {"type": "error", "error": {"type": "not_found_error", "message": message}}
            return httpx2.Response(404, json=error, headers={"x-should-retry": "false"})
        content = recording["content"]
        stop = "tool_use" if any(block["type"] == "tool_use" for block in content) else "end_turn"
        usage = {"input_tokens": 0, "output_tokens": 0}
        return httpx2.Response(
            200,
            json={
                "id": f"msg_replay{next(self._ids):05d}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
            },
        )

    async def aclose(self) -> None:
        await self._client.close()


class _Recorder:
    """Passes the choice through and keeps what Claude answered, for `Live.save`."""

    def __init__(self, model: AnthropicModel, into: dict[str, Recording], scenario_id: str) -> None:
        self._model = model
        self._into = into
        self._id = scenario_id

    async def choose(self, request: ModelRequest) -> Choice:
        try:
            choice = await self._model.choose(request)
        except LLMBadResponse as exc:
            sha = exc.usage.prompt_hash if exc.usage else ""
            self._into[self._id] = {"prompt_sha256": sha, "content": [{"type": "text", "text": str(exc)}]}
            raise
        content: list[dict[str, Any]] = [{"type": "text", "text": choice.reason}] if choice.reason else []
        content.append({"type": "tool_use", "id": choice.call_id, "name": choice.tool, "input": choice.args})
        sha = choice.usage.prompt_hash if choice.usage else ""
        self._into[self._id] = {"prompt_sha256": sha, "content": content}
        return choice


class Live:
    """The real model; with `record`, its answers are written there for offline replay."""

    def __init__(
        self, client: anthropic.AsyncAnthropic, prompts: PromptLibrary, *, model: str, record: Path | None = None
    ) -> None:
        self.description = f"{model} (live)" + (f", recording into {record}" if record else "")
        self.stale: list[str] = []
        self._client = client
        self._prompts = prompts
        self._model = model
        self._record = record
        self.recorded: dict[str, Recording] = {}

    def model(self, scenario_id: str, agent: str) -> Model:
        model = AnthropicModel(self._client, self._prompts, model=self._model, agent=agent)
        return _Recorder(model, self.recorded, scenario_id) if self._record else model

    def save(self) -> list[Path]:
        """Merge the answers into `<record>/<file>.json`, one file per scenario file; returns the files written."""
        if self._record is None:
            return []
        self._record.mkdir(parents=True, exist_ok=True)
        written = []
        for stem in sorted({_split(scenario_id)[0] for scenario_id in self.recorded}):
            path = self._record / f"{stem}.json"
            existing = json.loads(path.read_text()) if path.exists() else {}
            fresh = {_split(sid)[1]: rec for sid, rec in self.recorded.items() if _split(sid)[0] == stem}
            path.write_text(json.dumps(existing | fresh, indent=2, sort_keys=True) + "\n")
            written.append(path)
        return written
