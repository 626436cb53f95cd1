"""The JSON tool-call turn shared by the tool-using text envs (ToolCall, ToolUse, SearchQA,
Reasoning): reading calls from a turn, running them with injected faults, rendering results.

The protocol: an agent turn holds ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
blocks (common JSON slips repaired, see :mod:`thinkgym.envs.common.call_repair`) and/or an
``<answer>...</answer>``; each call's result comes back as one
``<tool_response>{"name": ..., "content": ...}</tool_response>`` (``"error"`` instead of
``"content"`` when it failed, saying what went wrong and how to fix it). Every tool
failure — a ToolError, a timeout, an injected fault, an unknown tool, bad arguments — is
an observation and a :class:`CallLog` with ``ok=False``, never an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thinkgym.envs.common.call_repair import CallParseError, parse_tool_call
from thinkgym.envs.common.text_env import clip_text
from thinkgym.errors import ConfigError, ToolError, ToolTimeout
from thinkgym.protocols import RewardInput, Tool
from thinkgym.rewards import FORMAT_PROTOCOLS, REWARDS, TagProtocol
from thinkgym.spaces import text_charset

__all__ = ["ANSWER", "CALL", "FORMAT_PROTOCOL", "PROTOCOL_TEXT", "ActionPenalty", "CallLog",
           "CallRunner", "FaultConfig", "FaultInjector", "Penalties", "ToolFailures", "TurnResult",
           "check_faults", "tool_specs_json"]

FORMAT_PROTOCOL = "tool_multi"
if FORMAT_PROTOCOL not in FORMAT_PROTOCOLS:
    # The library's "tool" protocol allows one call per turn (C R); these envs allow several.
    FORMAT_PROTOCOLS.register(FORMAT_PROTOCOL, TagProtocol(
        FORMAT_PROTOCOL, {"think": "T", "tool_call": "C", "tool_response": "R", "answer": "A"},
        episode=r"(T?C+R+)*T?A", turn=r"(T?C+R+)*T?C+R*", env_tags=frozenset({"tool_response"}),
        json_tags=frozenset({"tool_call"})))

CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

PROTOCOL_TEXT = (
    "To call a tool, write <tool_call>{\"name\": \"<tool name>\", \"arguments\": {...}}"
    "</tool_call>. You may make several calls in one turn; each result comes back in a "
    "<tool_response> block. Tools sometimes fail: read the error, then retry or get the "
    "result another way. You may think first inside <think>...</think>. When you are done, "
    "write <answer>your final answer</answer>."
)
"""The generic protocol paragraph of a prompt (ToolCall-v0 keeps its store-specific one)."""


def tool_specs_json(tools: Mapping[str, Tool]) -> str:
    """The tools' function-calling schemas as compact JSON, for a prompt."""
    specs = [{"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
             for t in tools.values()]
    return json.dumps(specs, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class CallLog:
    """One parsed call as the env executed it."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    ok: bool = True
    """The call returned a result."""
    injected: bool = False
    """It failed because the env injected a fault (not the agent's doing)."""
    error: str | None = None
    repairs: tuple[str, ...] = ()
    """JSON repair rules the call needed."""
    output: str | None = None
    """The tool's text output (None when the call failed)."""


@dataclass(frozen=True)
class FaultConfig:
    """Injected failures of one tool; each call draws once from the episode's fault stream."""

    error_rate: float = 0.0
    """Probability that a call fails with "temporarily unavailable" (a retry may work)."""
    timeout_rate: float = 0.0
    """Probability that a call times out (a retry may work)."""
    outage_rate: float = 0.0
    """Probability, per episode, that the tool is down for the whole episode (fall back)."""

    def __post_init__(self) -> None:
        for name in ("error_rate", "timeout_rate", "outage_rate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise ConfigError("must be a probability in [0, 1]", field=name, got=v,
                                  fix=f"pass e.g. {name}=0.1")
        if self.error_rate + self.timeout_rate > 1.0:
            raise ConfigError("error_rate + timeout_rate must be <= 1", field="error_rate",
                              got=(self.error_rate, self.timeout_rate), fix="lower one of them")


def check_faults(faults: Mapping[str, Any], known: list[str]) -> dict[str, FaultConfig]:
    """``faults`` as FaultConfigs (dicts of fields accepted), for tools in ``known`` only."""
    out = {k: v if isinstance(v, FaultConfig) else FaultConfig(**v)
           for k, v in dict(faults).items()}
    unknown = sorted(set(out) - set(known))
    if unknown:
        raise ConfigError("faults for unknown tools", field="faults", got=unknown,
                          fix=f"use tool names from {sorted(known)}")
    return out


class FaultInjector:
    """One episode's fault stream: outages drawn at the start, one draw per call after."""

    def __init__(self, faults: Mapping[str, FaultConfig], rng: np.random.Generator) -> None:
        self.faults = faults
        self.rng = rng
        self.down = {name for name, f in faults.items()
                     if f.outage_rate and rng.random() < f.outage_rate}

    def draw(self, name: str) -> ToolError | None:
        """The injected failure of this call of ``name``, or None."""
        spec = self.faults.get(name)
        if spec is None:
            return None
        u = self.rng.random()
        if name in self.down:
            return ToolError("the service is down for maintenance", tool=name,
                             fix="do not retry; get the result another way")
        if u < spec.error_rate:
            return ToolError("service temporarily unavailable (HTTP 503)", tool=name,
                             fix="retry the same call")
        if u < spec.error_rate + spec.timeout_rate:
            return ToolTimeout("no answer within 2 s", tool=name,
                               fix="retry the call, or get the result another way")
        return None


@dataclass(frozen=True)
class TurnResult:
    """What one agent turn did under the multi-call protocol."""

    observation: str
    """The env text of the turn (tool responses and corrections)."""
    calls: tuple[CallLog, ...]
    """Executed calls, in order (malformed ones are not calls)."""
    answer: str | None
    """The last ``<answer>`` of the turn, stripped; None if there was none."""
    penalty: float
    """Sum of the documented per-turn penalties (<= 0)."""


@dataclass(frozen=True)
class Penalties:
    """The documented penalties of the multi-call protocol (all <= 0)."""

    malformed: float = -0.2
    no_action: float = -0.2
    excess_call: float = -0.1


@dataclass(frozen=True)
class ActionPenalty:
    """The env's documented penalties of this turn (malformed calls, no action, excess calls)."""

    name: str = "action_penalty"

    def __call__(self, inp: RewardInput) -> float | None:
        value = inp.metadata.get("penalty")
        return None if value is None else float(value)


class CallRunner:
    """Runs agent tool calls against a tool set and renders each result as an env span.

    Args:
        tools: The tools by name.
        emit: The env's :meth:`~thinkgym.envs.common.text_env.TextEnv.emit` (records the span).
        max_observation_chars: The observation budget, shared by a turn's responses.
        max_calls_per_turn: Calls run per turn; further ones are refused.
    """

    def __init__(self, tools: Mapping[str, Tool], *, emit: Callable[[str], str],
                 max_observation_chars: int, max_calls_per_turn: int) -> None:
        self.tools = tools
        self.emit = emit
        self.max_observation_chars = max_observation_chars
        self.max_calls_per_turn = max_calls_per_turn

    def run_turn(self, action: str, faults: FaultInjector | None,
                 penalties: Penalties) -> TurnResult:
        """Run every call of ``action`` (up to the limit), then read its answer."""
        penalty, problems, out = 0.0, [], []
        bodies = CALL.findall(action)
        answers = ANSWER.findall(action)
        if action.count("<tool_call>") != len(bodies) or action.count("<answer>") != len(
                answers):
            problems.append("an unclosed <tool_call> or <answer> tag")
        logs: list[CallLog] = []
        limit = self.max_calls_per_turn
        if len(bodies) > limit:
            penalty += penalties.excess_call * (len(bodies) - limit)
        for body in bodies[:limit]:
            parsed = parse_tool_call(body)
            if isinstance(parsed, CallParseError):
                penalty += penalties.malformed
                out.append(self.respond(None, error=f"malformed tool call: {parsed.problem}. "
                                        'Write {"name": "<tool>", "arguments": {...}}'))
                continue
            log, text = self.execute(parsed.name, parsed.arguments, parsed.repairs, faults)
            logs.append(log)
            out.append(text)
        if len(bodies) > limit:
            out.append(self.respond(None, error=f"{len(bodies) - limit} call(s) not executed: "
                                    f"at most {limit} calls per turn"))
        if not bodies and not answers:
            penalty += penalties.no_action
            what = problems[0] if problems else "no <tool_call> or <answer> found"
            out.append(self.respond(None, error=f"{what}. Call a tool with <tool_call>"
                                    '{"name": ..., "arguments": {...}}</tool_call> or finish '
                                    "with <answer>...</answer>"))
        answer = answers[-1].strip() if answers else None
        return TurnResult("".join(out), tuple(logs), answer, penalty)

    def execute(self, name: str, arguments: dict[str, Any], repairs: tuple[str, ...] = (),
                faults: FaultInjector | None = None) -> tuple[CallLog, str]:
        """Run one call; every failure becomes an error response, never an exception."""
        from thinkgym.tools import invoke, validate_arguments

        try:
            if name in self.tools:
                validate_arguments(self.tools[name].parameters, arguments, tool=name)
                fault = faults.draw(name) if faults is not None else None
                if fault is not None:
                    return (CallLog(name, arguments, ok=False, injected=True, error=str(fault),
                                    repairs=repairs), self.respond(name, error=str(fault)))
            output = invoke(self.tools, name, arguments).output
        except ToolError as exc:
            return (CallLog(name, arguments, ok=False, error=str(exc), repairs=repairs),
                    self.respond(name, error=str(exc)))
        except Exception as exc:  # a foreign tool breaking the protocol: still an observation
            error = f"tool {name!r}: raised {type(exc).__name__}: {exc}"
            return (CallLog(name, arguments, ok=False, error=error, repairs=repairs),
                    self.respond(name, error=error))
        if not isinstance(output, str):  # a foreign Tool returning a non-string
            output = str(output)
        try:
            content: Any = json.loads(output)
        except ValueError:
            content = output
        return (CallLog(name, arguments, repairs=repairs, output=output),
                self.respond(name, content=content))

    def respond(self, name: str | None, *, content: Any = None, error: str | None = None) -> str:
        """One ``<tool_response>`` (recorded as an env span), cut to its share of the budget."""
        # At most max_calls_per_turn + 1 responses per turn share the observation budget;
        # an over-long part is cut inside the JSON string, so the response stays valid JSON.
        budget = self.max_observation_chars // (self.max_calls_per_turn + 1)
        body: dict[str, Any] = {} if name is None else {"name": name}
        body.update({"error": error} if error is not None else {"content": content})
        text = json.dumps(body, ensure_ascii=False, default=str)
        overflow = len(text) + len("<tool_response></tool_response>") - budget
        if overflow > 0:
            key = "error" if error is not None else "content"
            value = body[key] if isinstance(body[key], str) else json.dumps(
                body[key], ensure_ascii=False, default=str)
            body[key] = clip_text(value, max(16, len(value) - overflow - 8))
            text = json.dumps(body, ensure_ascii=False)
        return self.emit(f"<tool_response>{_printable(text)}</tool_response>")


def _printable(text: str) -> str:
    """JSON text with characters outside the observation space escaped (still valid JSON).

    They can only occur inside JSON strings (the structure is ASCII), where ``\\uXXXX``
    escapes mean the same: a tool returning emoji or control characters stays observable.
    """
    charset = text_charset()
    if all(c in charset for c in text):
        return text
    return "".join(c if c in charset else json.dumps(c)[1:-1] for c in text)


@dataclass(frozen=True)
class ToolFailures:
    """Failed tool calls of the turn, injected faults included (a metric: weight 0).

    Reads ``inp.metadata["tool_failures"]``; None where an env does not set it.
    """

    name: str = "tool_failures"

    def __call__(self, inp: RewardInput) -> float | None:
        value = inp.metadata.get("tool_failures")
        return None if value is None else float(value)


if "tool_failures" not in REWARDS:
    REWARDS.register("tool_failures", ToolFailures())
