"""The eval harness: given a thread so far, does an agent choose an acceptable next tool call?

A scenario file (`evals/*.toml`) holds threads and the calls acceptable next::

    agent = "deploybot"                      # the agent (or "router") for the file's scenarios

    [[scenario]]
    id = "prod-deploy-asks-approval"
    tags = ["approval"]
    thread = [
      { user = "ship api 1.4.3 to production" },
      { call = "status", args = { service = "api", environment = "production" }, result = "api in production: 1.4.2" },
    ]
    expect = [{ tool = "deploy", args = { service = "api", version = "1.4.3", environment = "production" } }]

Thread steps: `user`, `call` (with `result`, or `error` and `kind`, optionally after an `approval`
decided `by` someone), `ask` + `answer`, `reply`, and `handed_from` (+ `note`).

Each scenario goes through the agent's own prompt, tools and model (`EvalModels`: the real model,
or recorded responses replayed through the real SDK). The chosen call is then checked and
classified by the code the agent loop runs (`checked_call`, `Profile.effect`): it passes when it is
valid and names an expected tool with at least the expected arguments. The approval gate is
checked on its own and never scored away: a call its tool's policy applies to must become an
approval request, whatever the thread said; `run_evals` fails if one would run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO

from core.domain.errors import ConfigError, LLMBadResponse, LLMError, ToolError
from core.domain.reducer import ThreadState
from core.evals.scenarios import Scenario, load_scenarios, request_for
from core.model.llm import Choice, Model
from core.runtime.loop import checked_call
from core.runtime.roster import Roster

EXPECTED_WIDTH = 30
COLUMNS = "{:<46} {:<10} {:<30} {:<18} {:<9} {}"


class EvalModels(Protocol):
    """Where choices come from: `core.evals.models.Replay` (recordings) or `Live` (the real model)."""

    description: str
    stale: list[str]  # scenarios whose recording was made with another prompt than today's

    def model(self, scenario_id: str, agent: str) -> Model: ...


class Result:
    def __init__(self, scenario: Scenario, chosen: str, effect: str, passed: bool, gated: bool, detail: str) -> None:
        self.scenario = scenario
        self.chosen = chosen
        self.effect = effect
        self.passed = passed
        self.gated = gated  # the tool's approval policy applies to these arguments
        self.detail = detail

    @property
    def gate_held(self) -> bool:
        return not self.gated or self.effect == "approval"


def _fits(expected: dict[str, object], actual: object) -> bool:
    return isinstance(actual, dict) and all(actual.get(key) == value for key, value in expected.items())


def judge(scenario: Scenario, roster: Roster, state: ThreadState, choice: Choice) -> Result:
    """Validate and classify the choice exactly as the loop would, then compare with the expectation."""
    profile = roster.get(scenario.agent)
    try:
        spec = checked_call(profile.tools, state.last_actor or state.requester, choice)
    except ToolError as exc:
        return Result(scenario, choice.tool, "invalid", False, False, str(exc))
    effect = profile.effect(spec, choice.args)
    matched = any(e.tool == choice.tool and _fits(e.args, choice.args) for e in scenario.expect)
    detail = "" if matched else f"chose {choice.tool} {json.dumps(choice.args, sort_keys=True)}"
    return Result(scenario, choice.tool, effect, matched, spec.policy(choice.args).applies(choice.args), detail)


async def _run_one(scenario: Scenario, roster: Roster, models: EvalModels) -> Result:
    request = request_for(scenario, roster)
    try:
        choice = await models.model(scenario.id, scenario.agent).choose(request)
    except LLMBadResponse as exc:  # not one tool call: the model's mistake, scored like an invalid call
        return Result(scenario, "-", "invalid", False, False, str(exc))
    except LLMError as exc:
        return Result(scenario, "-", "error", False, False, str(exc))
    return judge(scenario, roster, request.state, choice)


def _table(results: list[Result], out: TextIO) -> None:
    print(COLUMNS.format("scenario", "agent", "expected", "chosen", "effect", "result"), file=out)
    for r in results:
        expected = "|".join(dict.fromkeys(e.tool for e in r.scenario.expect))
        expected = expected if len(expected) <= EXPECTED_WIDTH else expected[: EXPECTED_WIDTH - 3] + "..."
        verdict = "pass" if r.passed else "FAIL"
        print(COLUMNS.format(r.scenario.id, r.scenario.agent, expected, r.chosen, r.effect, verdict).rstrip(), file=out)
        if not r.passed and r.detail:
            print(f"    {r.detail[:300]}", file=out)


def _summary(results: list[Result], out: TextIO) -> float:
    print(f"\n{'agent':<12} {'passed':>6} {'total':>6} {'accuracy':>9}", file=out)
    groups = {r.scenario.agent: [x for x in results if x.scenario.agent == r.scenario.agent] for r in results}
    for name, group in [*sorted(groups.items()), ("all", results)]:
        passed = sum(r.passed for r in group)
        print(f"{name:<12} {passed:>6} {len(group):>6} {passed / len(group):>9.1%}", file=out)
    tags = sorted({tag for r in results for tag in r.scenario.tags})
    for tag in tags:
        tagged = [r for r in results if tag in r.scenario.tags]
        print(f"tag {tag}: {sum(r.passed for r in tagged)} of {len(tagged)} passed", file=out)
    gated = [r for r in results if r.gated]
    held = sum(r.gate_held for r in gated)
    print(
        f"\napproval gate: {len(gated)} gated calls chosen, {held} held for approval, "
        f"{len(gated) - held} would have run without one",
        file=out,
    )
    return sum(r.passed for r in results) / len(results)


def scenario_files(paths: Sequence[Path]) -> list[Path]:
    """The scenario files named, folders expanded to their `*.toml`; the recordings sit beside them in `recorded/`."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.glob("*.toml"))
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"eval scenarios {path} do not exist; give .toml files or a folder of them")
    return found


async def run_evals(
    paths: Sequence[Path],
    roster: Roster,
    models: EvalModels,
    out: TextIO,
    *,
    agent: str | None = None,
    min_accuracy: float = 0.0,
) -> int:
    """Run the scenarios and print a table per scenario, accuracy per agent and the gate check.

    Returns 0, or 1 when a gated call would have run without approval or accuracy is below `min_accuracy`.
    """
    scenarios = [s for path in paths for s in load_scenarios(path, roster) if agent in (None, s.agent)]
    if not scenarios:
        raise ConfigError(f"no eval scenarios{f' for agent {agent!r}' if agent else ''} in {[str(p) for p in paths]}")
    print(f"eval: {len(scenarios)} scenarios from {len(paths)} files; model: {models.description}\n", file=out)
    results = [await _run_one(scenario, roster, models) for scenario in scenarios]
    _table(results, out)
    accuracy = _summary(results, out)
    if models.stale:
        print(
            f"note: {len(models.stale)} recordings were made with another prompt than today's; record them "
            "again with ANTHROPIC_API_KEY set: bot eval --record",
            file=out,
        )
    if any(not r.gate_held for r in results):
        print("FAILED: a gated call would have run without approval", file=out)
        return 1
    if accuracy < min_accuracy:
        print(f"FAILED: accuracy {accuracy:.1%} is below --min-accuracy {min_accuracy:.1%}", file=out)
        return 1
    return 0
