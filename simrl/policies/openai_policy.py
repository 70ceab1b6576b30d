"""An LLM policy behind any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp server, OpenAI).

Each turn the whole episode is sent as one chat-completions request with tool calling:

* **system**: :data:`DEFAULT_SYSTEM_PROMPT` (how to use the tools; the final answer goes inside
  ``<answer>...</answer>``, or is a markdown table for a table task);
* **user**: the initial observation's text (the task prompt);
* per earlier turn: an **assistant** message with ``tool_calls`` (OpenAI format; ids kept, or
  ``call_<turn>_<k>`` when the action had none), then one **tool** message per result with the matching
  ``tool_call_id``; a turn with neither tool calls nor an answer becomes an assistant message with its
  text and a user message with the environment's reply;
* ``tools=initial.tools`` (the environment's schemas).

A reply with tool calls becomes ``Action(tool_calls=...)`` (arguments parsed from JSON; text that is not
a JSON object becomes ``{"_raw": text}``, so the environment answers with an error observation); a
reply without becomes ``Action.final(content)``. The policy sees only ``task_view`` (id, type,
prompt) and observations, never a task's gold or simulation facts.

Transient endpoint errors (connection errors, timeouts, HTTP 408 / 409 / 429 / 5xx) are retried
``max_retries`` times by the ``openai`` SDK itself (exponential backoff with jitter, 0.5 s doubling up
to 8 s; a ``Retry-After`` of up to 60 s is honoured); then, or at once for other HTTP errors,
:class:`PolicyError` names the URL. A policy failure is not
an environment failure: :func:`simrl.rollout.run_episode` lets it propagate.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from simrl.config import ENDPOINT_RETRIES
from simrl.errors import SimrlError
from simrl.types import Action, Observation, ToolCall, Turn

DEFAULT_SYSTEM_PROMPT = """\
You are a research agent. Solve the user's task by calling the tools you are given: search, read the
pages that look relevant, and check facts before you rely on them. Call tools as often as you need;
you see each tool's output before your next step.

When you are done, reply without any tool call and give your final answer:
- for a question, put the answer inside <answer>...</answer>, e.g. <answer>Paris</answer>;
- for a task that asks for a table, reply with one markdown table with exactly the requested columns.
If you cannot find the answer, say so inside <answer>...</answer>."""
"""The policy's default system prompt (our wording)."""



class PolicyError(SimrlError):
    """The policy's endpoint failed (unreachable after retries, or an HTTP error); names the URL."""

    exit_code = 1


def _call_id(turn: int, k: int, call: ToolCall) -> str:
    return call.call_id or f"call_{turn}_{k}"


def history_messages(turns: list[Turn]) -> list[dict[str, Any]]:
    """The chat messages of the earlier ``turns`` (assistant tool calls, then their tool results)."""
    messages: list[dict[str, Any]] = []
    for t, turn in enumerate(turns):
        action, obs = turn.action, turn.step.observation
        if action.is_final:
            messages.append({"role": "assistant", "content": action.text or action.answer or ""})
            continue
        if not action.tool_calls:
            messages.append({"role": "assistant", "content": action.text})
            messages.append({"role": "user", "content": obs.text})
            continue
        ids = [_call_id(t, k, c) for k, c in enumerate(action.tool_calls)]
        messages.append({"role": "assistant", "content": action.text or None, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for i, c in zip(ids, action.tool_calls)]})
        messages += _tool_messages(ids, action.tool_calls, obs)
    return messages


def chat_messages(system_prompt: str, initial: Observation, turns: list[Turn], prompt: str = "") -> list[dict[str, Any]]:
    """A policy's chat messages: ``system_prompt``, the task (``initial.text``, else ``prompt``) as the
    user turn, then :func:`history_messages` of ``turns`` (OpenAI chat format)."""
    return [{"role": "system", "content": system_prompt},
            {"role": "user", "content": initial.text or prompt}, *history_messages(turns)]


def _tool_messages(ids: list[str], calls: list[ToolCall], obs: Observation) -> list[dict[str, Any]]:
    """One ``tool`` message per call: its result by ``call_id``, else by position, else the obs text."""
    by_id = {r.call_id: r for r in obs.results if r.call_id}
    out = []
    for k, (i, call) in enumerate(zip(ids, calls)):
        result = by_id.get(call.call_id) if call.call_id else None
        if result is None and k < len(obs.results) and len(obs.results) == len(calls):
            result = obs.results[k]
        content = result.content if result is not None else (obs.text if k == 0 else "(no result)")
        out.append({"role": "tool", "tool_call_id": i, "content": content})
    return out


def parse_arguments(text: str | None) -> dict[str, Any]:
    """Tool-call arguments from the model's JSON text: a dict, ``{}`` for empty, else ``{"_raw": text}``."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def parse_reply(message: Any, turn: int) -> Action:
    """The :class:`Action` of an OpenAI chat-completion ``message`` (tool calls, else a final answer)."""
    content = message.content or ""
    calls = [c for c in (message.tool_calls or []) if getattr(c, "function", None) is not None]
    if not calls:
        return Action.final(content)
    return Action(text=content, tool_calls=[
        ToolCall(name=c.function.name, arguments=parse_arguments(c.function.arguments),
                 call_id=c.id or f"call_{turn}_{k}") for k, c in enumerate(calls)])


class OpenAIPolicy:
    """A policy that asks an OpenAI-compatible chat endpoint for each action (with tool calling).

    Args:
        base_url: the endpoint's base URL, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name; ``None``: the first model the endpoint lists (``GET /models``).
        api_key: sent as the bearer token (local servers ignore it).
        temperature: sampling temperature (0 = greedy where the server supports it).
        max_tokens: most tokens per reply.
        system_prompt: replaces :data:`DEFAULT_SYSTEM_PROMPT`.
        max_retries: the SDK's retries of a transient failure (so ``max_retries + 1`` tries in all).
        timeout: seconds per request.
    """

    def __init__(self, base_url: str, model: str | None = None, api_key: str = "EMPTY", temperature: float = 0.0,
                 max_tokens: int = 1024, system_prompt: str = DEFAULT_SYSTEM_PROMPT, *, max_retries: int = ENDPOINT_RETRIES,
                 timeout: float = 600.0) -> None:
        self.base_url, self.model, self.api_key = base_url.rstrip("/"), model, api_key
        self.temperature, self.max_tokens, self.system_prompt = temperature, max_tokens, system_prompt
        self.max_retries, self.timeout = max_retries, timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: Any = None

    def _client(self) -> Any:
        """The ``AsyncOpenAI`` client of the running event loop (remade for a new loop), with the SDK's retries."""
        from openai import AsyncOpenAI

        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._loop = loop
            self._http = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=self.max_retries,
                                     timeout=self.timeout)
        return self._http

    def messages(self, initial: Observation, turns: list[Turn], prompt: str = "") -> list[dict[str, Any]]:
        """The request's chat messages: system, the task prompt, then the history of ``turns``."""
        return chat_messages(self.system_prompt, initial, turns, prompt)

    async def resolve_model(self) -> str:
        """The model name: the one given, else the first the endpoint lists (cached).

        Raises:
            PolicyError: the endpoint lists no model or cannot be reached.
        """
        if self.model is None:
            page = await self._with_retries("list models", lambda c: c.models.list())
            ids = [m.id for m in page.data]
            if not ids:
                raise PolicyError(f"the policy endpoint {self.base_url} lists no model; name one as URL#MODEL")
            self.model = ids[0]
        return self.model

    async def act(self, task_view: dict[str, str], initial: Observation, turns: list[Turn]) -> Action:
        """The next action for the episode so far (see the module doc for the request layout).

        Raises:
            PolicyError: the endpoint failed (after retries, for transient errors).
        """
        model = await self.resolve_model()
        request: dict[str, Any] = {"model": model, "temperature": self.temperature, "max_tokens": self.max_tokens,
                                   "messages": self.messages(initial, turns, task_view.get("prompt", ""))}
        if initial.tools:
            request["tools"] = initial.tools
        reply = await self._with_retries("chat completion", lambda c: c.chat.completions.create(**request))
        if not reply.choices:
            raise PolicyError(f"the policy endpoint {self.base_url} returned no choices")
        return parse_reply(reply.choices[0].message, len(turns))

    async def _with_retries(self, what: str, call: Any) -> Any:
        """``await call(client)``; the SDK has retried transient failures. Failures -> :class:`PolicyError`."""
        import openai

        try:
            return await call(self._client())
        except openai.APIStatusError as err:
            raise PolicyError(f"policy endpoint {self.base_url}: {what} failed with HTTP {err.status_code} "
                              f"(transient errors retried up to {self.max_retries} times): {err.message}") from err
        except openai.APIConnectionError as err:  # includes timeouts
            raise PolicyError(f"cannot reach the policy endpoint {self.base_url} ({what}) after "
                              f"{self.max_retries + 1} tries: {err}; is the server running?") from err

    async def close(self) -> None:
        """Close the HTTP client (idempotent)."""
        client, loop, self._http, self._loop = self._http, self._loop, None, None
        if client is not None and loop is asyncio.get_running_loop():
            await client.close()


def parse_policy_spec(spec: str, **options: Any) -> OpenAIPolicy:
    """An :class:`OpenAIPolicy` from ``openai:URL`` or ``openai:URL#MODEL``.

    Without ``#MODEL`` the model is the endpoint's first listed model (asked on the first action).
    ``options`` go to :class:`OpenAIPolicy` (``api_key``, ``temperature``, ...).

    Raises:
        SimrlError: the spec is not ``openai:`` followed by an http(s) URL.
    """
    kind, _, rest = spec.partition(":")
    url, _, model = rest.partition("#")
    if kind != "openai" or not url.startswith(("http://", "https://")):
        raise SimrlError(f"bad policy spec {spec!r}; use openai:http://HOST:PORT/v1 or openai:URL#MODEL")
    return OpenAIPolicy(url, model or None, **options)
