"""The `hand_to_<agent>` tools: how an agent, the router or a workflow moves a thread to an agent.

A hand-off is a tool call like any other, so the model chooses it with the same validation, and
the loop records it as a `handed_off` event that keeps the thread id and carries a note with
the context the next agent needs.
"""

from __future__ import annotations

from core.tools.registry import ToolSpec

HANDOFF_PREFIX = "hand_to_"
NOTE_MAX_CHARS = 2000


def handoff_tool(agent: str) -> str:
    return f"{HANDOFF_PREFIX}{agent}"


def handoff_spec(agent: str, description: str) -> ToolSpec:
    """The tool that hands the thread to `agent`; its description is the agent's, so the caller can choose."""
    return ToolSpec(
        name=handoff_tool(agent),
        description=f"Hand this thread to the {agent} agent, which {description[0].lower()}{description[1:]}",
        parameters={
            "type": "object",
            "properties": {
                "note": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": NOTE_MAX_CHARS,
                    "description": "what the next agent needs: the request, what was done so far, what is left",
                }
            },
            "required": ["note"],
            "additionalProperties": False,
        },
        idempotent=True,
    )
