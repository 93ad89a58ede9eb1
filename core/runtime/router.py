"""Which agent takes a message (factor 10): deterministic for commands, a model for free text.

- A trigger that names an agent or a workflow goes to it.
- A command (`core.model.commands.as_command`: `/status api staging`, or `status api staging` when
  that parses as the command's arguments) stays with the thread's agent when that agent has the
  tool; otherwise it goes to the tool's owner (`Roster.owner`), and `/<workflow>` launches that workflow.
- `help` (`/help`, `/ops`, `/ops help`) never goes to the router: the thread's agent, or the default
  one, lists the commands without a model.
- Free text stays with the thread's agent. A new thread, or one a finished workflow holds, goes
  to the router when a language model is configured, else to the default agent (which, without a
  model, answers with the list of commands).
- Only a message that starts a turn is routed: while an approval or a question is pending, or the
  thread is paused, the message is recorded for the agent that holds the thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.domain.reducer import ThreadState
from core.model.commands import HELP, as_command
from core.runtime.roster import Roster


@dataclass(frozen=True)
class Route:
    agent: str
    why: str


def starts_turn(state: ThreadState) -> bool:
    return state.seq == 0 or (not state.paused and state.status not in ("awaiting_approval", "awaiting_human"))


def command_name(text: str) -> str | None:
    """`deploy` for `/deploy api 1.4.2 staging`; None for free text."""
    words = text.strip().split(maxsplit=1)
    if not words or not words[0].startswith("/"):
        return None
    return words[0].removeprefix("/").replace("-", "_") or None


def route(roster: Roster, state: ThreadState, text: str, requested: str = "") -> Route:
    """The agent for a message that starts a turn; `requested` is the trigger's own choice, already checked."""
    current = state.agent if state.seq and state.agent in roster else ""
    if requested:
        return Route(requested, "the trigger asked for it")
    held_by_workflow = bool(current) and roster.get(current).kind == "workflow"
    command = as_command(text, roster.catalog)
    if command == HELP:
        return Route(current if current and not held_by_workflow else roster.default, "")
    name = command_name(command) if command is not None else None
    if name is not None:
        if name in roster and roster.get(name).kind == "workflow":
            return Route(name, f"/{name} launches the {name} workflow")
        if current and not held_by_workflow and name in roster.get(current).tools:
            return Route(current, "")
        owner = roster.owner(name)
        if owner is not None:
            return Route(owner, f"/{name} is a command of the {owner} agent")
    elif current and not held_by_workflow:
        return Route(current, "")
    if (router := roster.router) is not None and name is None:
        return Route(router.name, "a new request: the router picks the agent")
    return Route(current if current and not held_by_workflow else roster.default, "")
