"""Claude through the official async client (imported only when a model is configured: the SDK
takes seconds to import, and commands never need it)."""

from __future__ import annotations

import time
from typing import Any, cast

import anthropic

from core.domain.errors import LLMBadResponse, LLMError, LLMRateLimited
from core.domain.events import Usage
from core.model import context
from core.model.llm import Choice, ModelRequest
from core.model.prompts import PromptLibrary
from core.obs import tracing
from core.tools.registry import ToolRegistry

PROVIDER = "anthropic"


def _reason(exc: anthropic.APIError) -> str:
    """The API's own error message, not the SDK's "Error code: 529 - {dict}" rendering."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or exc.message)


def _record_response(span: tracing.Span, response: anthropic.types.Message) -> None:
    """The response attributes of the GenAI conventions; their input tokens include the cached ones."""
    usage = response.usage
    cache_read, cache_write = usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0
    span.set_attribute("gen_ai.response.model", response.model)
    span.set_attribute("gen_ai.response.id", response.id)
    if response.stop_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [response.stop_reason])
    span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens + cache_read + cache_write)
    span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
    span.set_attribute("gen_ai.usage.cache_read.input_tokens", cache_read)
    span.set_attribute("gen_ai.usage.cache_creation.input_tokens", cache_write)


class AnthropicModel:
    """Claude with tool use; every answer must be one tool call.

    The system prompt and tool definitions form a stable, cached prefix; the thread follows
    as messages rendered by `core.model.context` under the token budget.
    """

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        prompts: PromptLibrary,
        *,
        model: str,
        agent: str,
        max_tokens: int = 1024,
        budget_tokens: int = 8000,
    ) -> None:
        self._client = client
        self._prompts = prompts
        self._model = model
        self._agent = agent
        self._max_tokens = max_tokens
        self._budget = budget_tokens

    def _span_attributes(self, request: ModelRequest) -> dict[str, tracing.Attribute]:
        """The GenAI semantic conventions' request attributes (no prompt or messages: they can hold secrets)."""
        return {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.system": PROVIDER,  # the older name, still what many backends read
            "gen_ai.request.model": self._model,
            "gen_ai.request.max_tokens": self._max_tokens,
            "gen_ai.agent.name": self._agent,
            "gen_ai.conversation.id": request.state.thread_id,
        }

    def _tools(self, registry: ToolRegistry) -> list[dict[str, Any]]:
        tools = [dict(definition) for definition in registry.definitions()]
        tools[-1]["cache_control"] = {"type": "ephemeral"}
        return tools

    async def choose(self, request: ModelRequest) -> Choice:
        system = self._prompts.render(self._agent, agent_name=self._agent)
        messages = context.render(await request.events(), set(request.tools.names()), self._budget)
        started = time.perf_counter()
        try:
            # Inside the `try`: a failed call's span names the SDK's error (RateLimitError), not ours.
            attributes = self._span_attributes(request) if tracing.on() else None
            with tracing.span(f"chat {self._model}", attributes, kind="client") as span:
                response = await self._client.messages.create(  # type: ignore[call-overload]
                    model=self._model,
                    max_tokens=self._max_tokens,
                    system=[{"type": "text", "text": system.text, "cache_control": {"type": "ephemeral"}}],
                    tools=self._tools(request.tools),
                    tool_choice={"type": "any", "disable_parallel_tool_use": True},
                    messages=messages,
                )
                if span.is_recording():
                    _record_response(span, cast(anthropic.types.Message, response))
        except anthropic.RateLimitError as exc:
            raise LLMRateLimited(f"the model API is rate limiting us after retries: {_reason(exc)}") from exc
        except anthropic.APIStatusError as exc:
            raise LLMError(f"the model API answered {exc.status_code}: {_reason(exc)}") from exc
        except anthropic.APIConnectionError as exc:
            raise LLMError(
                f"cannot reach the model API ({exc.message}); check ANTHROPIC_BASE_URL and the network"
            ) from exc
        except anthropic.APIError as exc:
            raise LLMError(f"the model API gave an unusable response: {exc.message}") from exc
        usage = Usage(
            prompt_name=system.name,
            prompt_hash=system.sha256,
            model=response.model,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            cache_read_tokens=response.usage.cache_read_input_tokens or 0,
            cache_write_tokens=response.usage.cache_creation_input_tokens or 0,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
        response = cast(anthropic.types.Message, response)
        calls = [block for block in response.content if block.type == "tool_use"]
        text = " ".join(block.text for block in response.content if block.type == "text").strip()
        if len(calls) != 1:
            found = f"{len(calls)} tool calls" if calls else f"text instead of a tool call: {text[:200]!r}"
            raise LLMBadResponse(f"the model must answer with exactly one tool call; it gave {found}", usage)
        call = calls[0]
        return Choice(tool=call.name, args=call.input, reason=text, call_id=call.id, usage=usage)
