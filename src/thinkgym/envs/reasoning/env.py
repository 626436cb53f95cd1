r"""Reasoning-v0: generated arithmetic, algebra and word problems answered in ``\boxed{}``."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from thinkgym.envs.common.text_env import TextEnv
from thinkgym.envs.common.tool_turns import (
    CALL,
    ActionPenalty,
    CallRunner,
    FaultConfig,
    FaultInjector,
    Penalties,
    ToolFailures,
    check_faults,
    tool_specs_json,
)
from thinkgym.envs.reasoning.problems import PROBLEM_KINDS, Problem, generate_problem
from thinkgym.errors import ConfigError, config_from_kwargs
from thinkgym.protocols import RewardComponent, RewardInput, ToolCallRecord
from thinkgym.rewards import Composer, RewardSpec, answer_match, boxed_answer, lenient_match
from thinkgym.rewards.detectors import (
    AnswerGuessing,
    FormatGaming,
    LengthGaming,
    ShapedCorrectness,
)
from thinkgym.rewards.parsing import agent_text

__all__ = ["DETECTORS", "ReasoningConfig", "ReasoningCorrectness", "ReasoningEnv",
           "ReasoningLenient", "expressions_equal"]

INSTRUCTION = ("Solve the problem. Reason step by step, then write the final answer alone "
               "inside \\boxed{} at the end of your reply.")
"""No example value in the instruction: a model copies it (``\\boxed{42}``), and the format
reward pays nothing for a boxed example copied from the prompt anyway."""

TOOLS_TEXT = ("You may call tools before answering: write <tool_call>{{\"name\": \"<tool name>\", "
              "\"arguments\": {{...}}}}</tool_call> (several per turn are fine); the results "
              "come back in <tool_response> blocks. A reply without a tool call is your final "
              "one.\nTools (JSON schemas):\n{schemas}")
"""Added to the instruction when the env offers tools."""

TOOL_REWARDS = {"tool_efficiency": 0.2, "action_penalty": 1.0, "tool_failures": 0.0}
"""Added to the default weights when the env offers tools."""

DETECTORS: tuple[str, ...] = ("answer_guessing", "format_gaming", "length_gaming")
"""Reward-hacking detectors reported per episode in ``info["detectors"]``."""


# -- symbolic equivalence -------------------------------------------------------------------
_LATEX = ((r"\\left|\\right|\\,|\\;|\\!|\$", ""), (r"\\cdot|\\times", "*"), (r"\^", "**"),
          (r"−", "-"))
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_ALLOWED = re.compile(r"^[0-9x+\-*/().\s]*$")
_MAX_EXPR = 200
_POWER = re.compile(r"\s*(\d{1,2})(?!\d|\s*\*\*|\s*\.)")


def _normalise_expression(text: str) -> str | None:
    """LaTeX-ish polynomial text -> explicit Python arithmetic in ``x``; None if not one."""
    s = text.strip()
    if "=" in s:  # "p(x) = ..." or "y = ...": keep the right-hand side
        s = s.rsplit("=", 1)[1]
    s = re.sub(r"\^\s*\{\s*(\d+)\s*\}", r"^\1", s)  # x^{2} -> x^2
    for _ in range(4):
        s = _FRAC.sub(r"((\1)/(\2))", s)
    for pattern, repl in _LATEX:
        s = re.sub(pattern, repl, s)
    s = s.replace("{", "(").replace("}", ")").replace("X", "x")
    if not s.strip() or len(s) > _MAX_EXPR or not _ALLOWED.match(s):
        return None
    s = re.sub(r"(?<=[0-9x)])\s*(?=[x(])", "*", s)  # implicit products: 3x, x(x+1), )(
    s = re.sub(r"(?<=[)])\s*(?=[0-9])", "*", s)
    for m in re.finditer(r"\*\*", s):  # small literal powers only: no 9**9**9 blow-ups
        exp = _POWER.match(s, m.end())
        if exp is None or int(exp.group(1)) > 12:
            return None
    return s.strip()


def _eval_at(node: ast.AST, x: Fraction) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval_at(node.body, x)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not \
            isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.Name) and node.id == "x":
        return x
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _eval_at(node.operand, x)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a, b = _eval_at(node.left, x), _eval_at(node.right, x)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Div):
            return a / b
        if isinstance(node.op, ast.Pow) and b.denominator == 1 and 0 <= b <= 12:
            return a ** int(b)
    raise ValueError(f"unsupported expression node {type(node).__name__}")


_POINTS = tuple(Fraction(v) for v in ("-3", "-1", "0", "2", "5", "7/3", "-11/4", "13"))


def _fraction_equal(a: str, b: str) -> bool:
    """Equal values at 8 rational points (exact for polynomials of degree <= 7)."""
    try:
        ta, tb = ast.parse(a, mode="eval"), ast.parse(b, mode="eval")
        return all(_eval_at(ta, x) == _eval_at(tb, x) for x in _POINTS)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return False


def _sympy_equal(a: str, b: str) -> bool:
    import sympy

    x = sympy.Symbol("x")
    try:  # inputs passed the character whitelist above: only digits, x and operators
        ea = sympy.sympify(a, locals={"x": x}, rational=True)
        eb = sympy.sympify(b, locals={"x": x}, rational=True)
        return bool(sympy.simplify(ea - eb) == 0)
    except (sympy.SympifyError, SyntaxError, TypeError, ZeroDivisionError):
        return False


def expressions_equal(got: str | None, want: str) -> bool:
    r"""Symbolic equivalence of two expressions in ``x`` (sympy if installed, else Fractions).

    Accepts LaTeX-ish input: ``x^2``, implicit products (``3x``, ``(x+1)(x-2)``),
    ``\frac{a}{b}``, ``\cdot``, a leading ``p(x) =``. Anything with other names or
    functions is not an expression here and compares unequal.

    >>> expressions_equal("x^2 + 5x + 6", "(x+2)(x+3)"), expressions_equal("x^2+6", "x^2+5x")
    (True, False)
    """
    if got is None:
        return False
    a, b = _normalise_expression(got), _normalise_expression(want)
    if a is None or b is None:
        return False
    if importlib.util.find_spec("sympy") is not None:
        return _sympy_equal(a, b)
    return _fraction_equal(a, b)


# -- reward components ----------------------------------------------------------------------
@dataclass(frozen=True)
class ReasoningCorrectness:
    """1.0 if the boxed answer equals the reference (numeric or symbolic), else 0.0.

    Reads ``inp.answer`` (the single boxed answer; None if there was none or several
    differ) and ``inp.metadata["answer_type"]``. Never substring credit.
    """

    name: str = "correctness"

    def __call__(self, inp: RewardInput) -> float | None:
        if not inp.done or not inp.references:
            return None
        if inp.metadata.get("answer_type") == "expression":
            return float(expressions_equal(inp.answer, inp.references[0]))
        return answer_match(inp.answer, inp.references)


@dataclass(frozen=True)
class ReasoningLenient:
    """1.0 if the agent's final result is right however it was written, else 0.0.

    Numbers: the boxed answer, else the last number in the reply
    (:func:`~thinkgym.rewards.lenient_match`). Polynomials: the boxed answer, else the
    right-hand side of the last ``=`` in the reply, symbolically equal to the reference.
    Logged at weight 0 so a pure format gain shows up as ``correctness`` rising while
    this stays flat; give it a weight to shape the reward of a model that does not box
    its answers yet.
    """

    name: str = "lenient_match"

    def __call__(self, inp: RewardInput) -> float | None:
        if not inp.done or not inp.references:
            return None
        text = agent_text(inp.completion, inp.env_spans)
        if inp.metadata.get("answer_type") == "expression":
            lines = [ln for ln in text.splitlines() if "=" in ln]
            candidate = inp.answer or (lines[-1].rsplit("=", 1)[1].strip(" .$") if lines
                                       else None)
            return float(expressions_equal(candidate, inp.references[0]))
        return lenient_match(text, inp.answer, inp.references)


@dataclass(frozen=True)
class ReasoningConfig:
    """Arguments of :class:`ReasoningEnv` (all keyword arguments of ``gym.make``)."""

    difficulty: int | None = 2
    """1 (easiest) .. 5; None draws a difficulty uniformly per episode."""
    kinds: tuple[str, ...] = PROBLEM_KINDS
    """Problem kinds an episode is drawn from (uniformly)."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    """Overrides of the component weights (see the env docstring's Rewards section)."""
    tools: Sequence[Any] = ()
    """Tools the agent may call before answering (registry names, Tools, LangChain tools,
    typed functions). The env has no tools of its own, so ``tools`` and ``extra_tools``
    both add. With tools an episode has up to ``max_turns`` turns."""
    extra_tools: Sequence[Any] = ()
    """More tools (same rules as ``tools``)."""
    faults: Mapping[str, FaultConfig] = field(default_factory=dict)
    """Tool name -> injected faults (dicts of FaultConfig fields accepted)."""
    tool_timeout: float | None = 10.0
    """Seconds per call of a function or LangChain tool wrapped here (Tools keep theirs)."""
    max_turns: int = 4
    """Turns per episode when tools are offered (without tools: one turn)."""
    max_calls_per_turn: int = 4
    """Tool calls run per turn; further ones are refused with a penalty each."""
    max_observation_chars: int = 2048
    """Longest observation."""
    max_action_chars: int = 8192
    """Longest response; longer ones are cut (``info["action_truncated"]`` says so)."""

    def __post_init__(self) -> None:
        d = self.difficulty
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 5):
            raise ConfigError("must be an int in 1..5 or None", field="difficulty", got=d,
                              fix="pass difficulty=1 (easiest) ... 5, or None for mixed")
        object.__setattr__(self, "kinds", tuple(self.kinds))
        bad = [k for k in self.kinds if k not in PROBLEM_KINDS]
        if bad or not self.kinds:
            raise ConfigError("unknown or empty problem kinds", field="kinds", got=bad,
                              fix=f"choose from {list(PROBLEM_KINDS)}")
        for name in ("tools", "extra_tools"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise ConfigError("must be a list of tools", field=name, got=value,
                                  fix=f"pass e.g. {name}=['calculator', my_function]")
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "faults", {
            k: v if isinstance(v, FaultConfig) else FaultConfig(**v)
            for k, v in dict(self.faults).items()})
        for name, lo in (("max_observation_chars", 512), ("max_action_chars", 64),
                         ("max_turns", 1), ("max_calls_per_turn", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"must be an int >= {lo}", field=name, got=v,
                                  fix=f"pass {name}={lo * 4}")

    def composer(self, *, with_tools: bool = False) -> Composer:
        """correctness 1.0, format 0.1; detectors, shaped correctness and lenient_match logged
        at weight 0; with tools also :data:`TOOL_REWARDS`."""
        correctness = ReasoningCorrectness()
        instances: list[RewardComponent] = [
            correctness, AnswerGuessing(), FormatGaming(), LengthGaming(),
            ShapedCorrectness(correctness=correctness), ReasoningLenient(), ActionPenalty(),
            ToolFailures()]
        weights = {"correctness": 1.0, "format": 0.1, "shaped_correctness": 0.0,
                   "lenient_match": 0.0, **dict.fromkeys(DETECTORS, 0.0),
                   **(TOOL_REWARDS if with_tools else {})}
        return Composer(RewardSpec(weights=weights).override(self.reward_weights),
                        instances=instances)


class ReasoningEnv(TextEnv):
    r"""Solve a generated problem and put the answer in ``\boxed{}``; checked exactly.

    ## Description
    One problem per episode, drawn from eight procedural generators (arithmetic,
    fractions, linear equations, polynomial expansion, shopping, rates, percent,
    sequences) at a chosen difficulty (1-5). Answers are exact numbers (integers,
    decimals, fractions) or, for ``expand``, a polynomial in ``x``.

    ## Action Space
    Text (``max_action_chars``): the full response, optionally with
    ``<think>...</think>``, holding exactly one distinct ``\boxed{}`` answer.

    ## Observation Space
    Text (``max_observation_chars``). ``reset``: the instruction and the problem;
    ``step``: ``""`` (the episode is over).

    ## Rewards
    Through the rewards library (``info["reward_components"]``): ``correctness``
    (1.0): numeric equivalence (``3/4`` = ``0.75`` = ``\frac{3}{4}``; units and
    ``$`` ignored) or symbolic equivalence for polynomials (sympy if installed,
    else exact evaluation at 8 rational points); no box or several different boxes
    score 0, and there is never substring credit. ``format`` (0.1): the ``boxed``
    protocol; a boxed value the prompt itself shows boxed earns no format reward.
    Logged at weight 0: ``lenient_match`` (the last number of the reply, or the
    boxed answer, is right: a task gain without a format gain shows here; weight it
    to shape the reward of a model that does not box yet), the reward-hacking
    detectors ``answer_guessing``,
    ``format_gaming``, ``length_gaming`` (1.0 = flagged; ``info["detectors"]`` lists
    the rules that fired) and ``shaped_correctness`` (correctness x0.5 when
    guessing, x0.7 when format gaming; switch to it with ``reward_weights``).

    ## Starting State
    Kind, difficulty (if None) and problem drawn from ``self.np_random``.

    ## Episode End
    Terminated after the one response. Never truncated. With tools: a reply holding a
    ``<tool_call>`` runs its calls (results in ``<tool_response>`` blocks) and the
    episode goes on; the first reply without one is final; truncated after
    ``max_turns`` turns.

    ## Arguments
    See :class:`ReasoningConfig`: ``difficulty``, ``kinds``, ``reward_weights``, and
    ``tools`` / ``extra_tools`` (both add tools; the env has none of its own), which
    also add ``tool_efficiency`` (0.2), ``action_penalty`` (1.0) and ``tool_failures``
    (0.0) to the rewards.

    ## Version History
    * v0: initial version. Before 0.2 the instruction showed ``\\boxed{42}`` as an
      example, which small instruct models copied and the format reward paid for;
      the example is gone and ``format`` no longer pays for a boxed prompt example.

    Example::

        >>> import gymnasium as gym
        >>> import thinkgym
        >>> env = gym.make("Reasoning-v0", difficulty=1, kinds=("arithmetic",))
        >>> prompt, info = env.reset(seed=0)
        >>> answer = info["answer"]
        >>> _, reward, terminated, _, info = env.step(f"Adding up: \\boxed{{{answer}}}")
        >>> terminated, info["correct"], info["detectors"]["answer_guessing"]
        (True, True, ['short_reasoning'])
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.config = config_from_kwargs(ReasoningConfig, "Reasoning-v0", kwargs)
        super().__init__(max_observation_chars=self.config.max_observation_chars,
                         max_action_chars=self.config.max_action_chars, render_mode=render_mode)
        from thinkgym.tools.resolve import build_tool_set

        self.tools = build_tool_set({}, self.config.tools, self.config.extra_tools,
                                    env="Reasoning-v0", timeout=self.config.tool_timeout)
        self.faults = check_faults(self.config.faults, list(self.tools))
        self._runner = CallRunner(self.tools, emit=self.emit,
                                  max_observation_chars=self.config.max_observation_chars,
                                  max_calls_per_turn=self.config.max_calls_per_turn)
        self._faults: FaultInjector | None = None
        self.composer = self.config.composer(with_tools=bool(self.tools))
        self.problem: Problem | None = None
        self._turn = 0
        self._prior_calls = 0

    def _reset_episode(self) -> tuple[str, dict[str, Any]]:
        difficulty = self.config.difficulty or int(self.np_random.integers(1, 6))
        self.problem = generate_problem(self.np_random, difficulty=difficulty,
                                        kinds=self.config.kinds)
        self._turn, self._prior_calls = 0, 0
        instruction = INSTRUCTION
        if self.tools:  # drawn only with tools: the default episodes stay as they were
            self._faults = FaultInjector(
                self.faults, np.random.default_rng(int(self.np_random.integers(2**63))))
            instruction += "\n\n" + TOOLS_TEXT.format(schemas=tool_specs_json(self.tools))
        prompt = f"{instruction}\n\nProblem: {self.problem.question}\n"
        return prompt, self._problem_info()

    def _problem_info(self) -> dict[str, Any]:
        p = self.problem
        if p is None:
            return {}
        return {"kind": p.kind, "difficulty": p.difficulty, "answer": p.answer,
                "answer_type": p.answer_type}

    def _step_episode(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        p = self.problem
        if p is None:  # unreachable: TextEnv guards step() before reset()
            raise ConfigError("no problem drawn", fix="call reset() first")
        self._turn += 1
        if self.tools and CALL.search(action):
            return self._tool_turn(action, p)
        answer = boxed_answer(action)
        inp = RewardInput(completion=self.transcript.text, prompt=self._prompt, answer=answer,
                          references=(p.answer,), protocol="boxed", done=True,
                          env_spans=tuple(self.transcript.env_spans),
                          prior_tool_calls=self._prior_calls,
                          metadata={"answer_type": p.answer_type})
        result = self.composer.score(inp, turn=self._turn - 1)
        detectors = {name: self.composer.component(name).reasons(inp) for name in DETECTORS
                     if name in self.composer.names}
        info = {**self._problem_info(), "boxed_answer": answer, "agent_answer": answer,
                "correct": result.components["correctness"]["raw"] == 1.0,
                "detectors": detectors, "reward_components": result.components}
        return "", result.total, True, False, info

    def _tool_turn(self, action: str, p: Problem) -> tuple[str, float, bool, bool, dict]:
        """Run the turn's calls; out of turns, the episode is truncated without an answer."""
        turn = self._runner.run_turn(action, self._faults, Penalties())
        truncated = self._turn >= self.config.max_turns
        caused = [c for c in turn.calls if not c.injected]
        inp = RewardInput(
            completion=self.transcript.text, prompt=self._prompt, answer=None,
            references=(p.answer,) if truncated else (), protocol="boxed", done=truncated,
            truncated=truncated, env_spans=tuple(self.transcript.env_spans),
            tool_calls=tuple(ToolCallRecord(c.name, dict(c.arguments), ok=c.ok, error=c.error)
                             for c in caused), prior_tool_calls=self._prior_calls,
            metadata={"answer_type": p.answer_type, "penalty": turn.penalty,
                      "tool_failures": sum(not c.ok for c in turn.calls)})
        self._prior_calls += len(caused)
        result = self.composer.score(inp, turn=self._turn - 1)
        info: dict[str, Any] = {"turn": self._turn, "reward_components": result.components,
                                "calls": [dataclasses.asdict(c) for c in turn.calls]}
        if truncated:
            info.update(self._problem_info(), boxed_answer=None, agent_answer=None,
                        correct=False)
        return turn.observation, result.total, False, truncated, info
