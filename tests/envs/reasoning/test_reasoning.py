"""Reasoning-v0 (generators, exact checking, boxed edge cases, detectors) and ReasoningGym-v0."""

from __future__ import annotations

import doctest
import importlib.util
import itertools
import re
from fractions import Fraction
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import thinkgym  # noqa: F401  (registers the envs)
from thinkgym.agents import reasoning as reasoning_agents
from thinkgym.agents.reasoning import GuessingPolicy, OracleReasoningPolicy, RandomReasoningPolicy
from thinkgym.envs import ENVS
from thinkgym.envs.reasoning import env as reasoning
from thinkgym.envs.reasoning import problems as reasoning_problems
from thinkgym.envs.reasoning import reasoning_gym_adapter
from thinkgym.envs.reasoning.env import (
    ReasoningEnv,
    _fraction_equal,
    _normalise_expression,
    _sympy_equal,
    expressions_equal,
)
from thinkgym.envs.reasoning.problems import (
    PROBLEM_KINDS,
    Problem,
    generate_problem,
    make_problem,
    render_number,
)
from thinkgym.errors import ConfigError, DependencyNotInstalled
from thinkgym.rewards import parse_number


# -- generators: answers re-derived independently from the question text ---------------------------
def _eval_fractions(expr: str) -> Fraction:
    expr = expr.replace("[", "(").replace("]", ")")
    if not re.fullmatch(r"[\d\s+\-*/().]+", expr):
        raise ValueError(expr)
    return eval(re.sub(r"\d+", lambda m: f"Fraction({m.group(0)})", expr),
                {"Fraction": Fraction, "__builtins__": {}})


def _check_linear(p: Problem) -> None:
    lhs, rhs = p.question.removeprefix("Solve for x: ").split(".")[0].split(" = ")
    x = Fraction(p.answer)

    def value(side: str) -> Fraction:
        side = re.sub(r"(\d)(x|\()", r"\1*\2", side)
        return _eval_fractions(side.replace("x", f"({x})"))

    assert value(lhs) == value(rhs)


def _check_expand(p: Problem) -> None:
    sympy = pytest.importorskip("sympy")
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    tr = (*standard_transformations, implicit_multiplication_application, convert_xor)
    factors = p.question.removeprefix("Expand and simplify ").split(" as ")[0]
    assert sympy.expand(parse_expr(factors, transformations=tr)
                        - parse_expr(p.answer, transformations=tr)) == 0


def _check_sequence(p: Problem) -> None:
    q, ans = p.question, Fraction(p.answer)
    terms = [int(t) for t in re.findall(r"-?\d+", q.split("?")[0].split("of ")[-1])]
    if p.difficulty == 2:
        n = int(re.search(r"term number (\d+)", q).group(1))
        seq = [int(t) for t in q.split("sequence ")[1].split(", ...")[0].split(", ")]
        assert ans == seq[0] + (n - 1) * (seq[1] - seq[0])
    elif p.difficulty == 5:
        n, a0, a1 = (int(v) for v in re.search(r"first (\d+) terms of (-?\d+), (-?\d+)",
                                               q).groups())
        assert ans == sum(a0 + i * (a1 - a0) for i in range(n))
    else:  # next term: constant difference, ratio, or second difference
        d1 = [b - a for a, b in itertools.pairwise(terms)]
        d2 = [b - a for a, b in itertools.pairwise(d1)]
        if len(set(d1)) == 1:
            assert ans == terms[-1] + d1[-1]
        elif len(set(d2)) == 1:
            assert ans == terms[-1] + d1[-1] + d2[-1]
        else:
            assert ans == terms[-1] * (terms[-1] // terms[-2])


def _check_shopping(p: Problem) -> None:
    items = re.findall(r"(\d+) \w+ at \$([\d.]+) each", p.question)
    total = sum(int(q) * Fraction(price) for q, price in items)
    bill = re.search(r"pays with \$(\d+)", p.question)
    assert Fraction(p.answer) == (Fraction(bill.group(1)) - total if bill else total)


@pytest.mark.parametrize("difficulty", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", PROBLEM_KINDS)
def test_answers_are_right(kind: str, difficulty: int) -> None:
    for index in range(15):
        p = make_problem(11, index, kind, difficulty)
        assert (p.kind, p.difficulty) == (kind, difficulty)
        if kind == "arithmetic":
            expr = p.question.removeprefix("Compute ").removesuffix(".")
            assert _eval_fractions(expr) == parse_number(p.answer)
        elif kind == "fractions":
            assert _eval_fractions(p.question.split("Compute ")[1].split(" and ")[0]) == \
                Fraction(p.answer)
        elif kind == "linear_equation":
            _check_linear(p)
        elif kind == "expand":
            _check_expand(p)
        elif kind == "sequence":
            _check_sequence(p)
        elif kind == "shopping":
            _check_shopping(p)
        else:
            assert parse_number(p.answer) is not None
        assert p.answer in p.solution


def test_items_are_reproducible_by_index_and_streams_differ() -> None:
    assert make_problem(1, 5, "arithmetic", 3) == make_problem(1, 5, "arithmetic", 3)
    questions = {make_problem(1, i, "arithmetic", 3).question for i in range(20)}
    assert len(questions) == 20
    assert make_problem(1, 0, "arithmetic", 3) != make_problem(2, 0, "arithmetic", 3)


def test_difficulty_grows_the_problems() -> None:
    def mean_ops(d: int) -> float:
        qs = [make_problem(0, i, "arithmetic", d).question for i in range(40)]
        return float(np.mean([len(re.findall(r" [+\-*/] ", q)) for q in qs]))

    ops = [mean_ops(d) for d in range(1, 6)]
    assert ops == sorted(ops)
    assert ops[0] == 1
    assert ops[-1] == 5
    assert all("(" not in make_problem(0, i, "linear_equation", 1).question for i in range(10))
    assert all(make_problem(0, i, "expand", 5).question.count("(") == 3 for i in range(10))


@pytest.mark.parametrize("bad", [0, 6, True, 2.0])
def test_bad_difficulty_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError, match="difficulty"):
        generate_problem(np.random.default_rng(0), "arithmetic", bad)
    with pytest.raises(ConfigError, match="difficulty"):
        ReasoningEnv(difficulty=bad)


def test_render_number() -> None:
    cases = {Fraction(7): "7", Fraction(-1, 8): "-0.125", Fraction(1, 3): "1/3",
             Fraction(154_4985, 10_000): "154.4985", Fraction(-5, 2): "-2.5"}
    assert {k: render_number(k) for k in cases} == cases


# -- symbolic equivalence --------------------------------------------------------------------------
EQUAL = ["x^2 + 5x + 6", "(x+2)(x+3)", "6 + 5x + x^{2}", "x**2+5*x+6", "p(x) = x^2+5x+6",
         r"\left(x+2\right)\cdot\left(x+3\right)", r"\frac{2x^2 + 10x + 12}{2}", "X^2+5X+6"]
UNEQUAL = ["x^2 + 5x + 7", "x^2 + 5x", "", "y^2 + 5y + 6", "__import__('os')", "x**2**3",
           "9^99", "x^2 + 5x + 6 + sin(x)", "x^2+5x+6, x+1"]


@pytest.mark.parametrize("text", EQUAL)
def test_equivalent_expressions(text: str) -> None:
    assert expressions_equal(text, "x^2 + 5x + 6")


@pytest.mark.parametrize("text", UNEQUAL)
def test_inequivalent_or_refused_expressions(text: str) -> None:
    assert not expressions_equal(text, "x^2 + 5x + 6")


def test_fraction_fallback_agrees_with_sympy() -> None:
    pytest.importorskip("sympy")
    want = _normalise_expression("x^2 + 5x + 6")
    for text in [*EQUAL, "x^2+5x+7", "(x+2)(x+4)", "x^3 - x", "1/x"]:
        got = _normalise_expression(text)
        if got is not None:
            assert _fraction_equal(got, want) == _sympy_equal(got, want), text


def test_expressions_equal_without_sympy(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(reasoning.importlib.util, "find_spec",
                        lambda name, *a: None if name == "sympy" else real(name, *a))
    assert expressions_equal("(x+1)(x-2)", "x^2 - x - 2")
    assert not expressions_equal("(x+1)(x+2)", "x^2 - x - 2")


# -- boxed answers as they reach the env -----------------------------------------------------------
_ENV: list[ReasoningEnv] = []


def _score(answer: str, response: str, answer_type: str = "number") -> dict[str, Any]:
    if not _ENV:  # one env for all cases: building the text spaces is the slow part
        _ENV.append(ReasoningEnv())
    env = _ENV[0]
    env.reset(seed=0)
    env.problem = Problem("rates", 1, "q", answer, answer_type, "s")  # type: ignore[arg-type]
    _, reward, terminated, truncated, info = env.step(response)
    assert terminated
    assert not truncated
    return {"reward": reward, **info}


@pytest.mark.parametrize(("answer", "response", "correct"), [
    ("3/4", r"so \boxed{\frac{3}{4}}", True),             # nested braces
    ("3/4", r"\boxed{\dfrac{3}{4}}", True),
    ("3/4", r"\boxed{0.75}", True),
    ("3/4", r"first \boxed{3/4}, checked: \boxed{0.75}", True),  # several boxes, one value
    ("3/4", r"\boxed{3/4} or maybe \boxed{1/2}", False),  # several different boxes
    ("3/4", r"\boxed{\frac{3}{4}", False),                # unclosed box
    ("3/4", r"\boxed{}", False),
    ("3/4", "3/4", False),                                # no box
    ("123", r"\boxed{123 km}", True),                     # units
    ("123", r"\boxed{123\text{ km}}", True),
    ("123", r"\boxed{1234}", False),                      # never substring credit
    ("1234", r"\boxed{123}", False),
    ("123", r"\boxed{123, 124}", False),
    ("73.00", r"\boxed{\$73}", True),
    ("-7/3", r"\boxed{x = -\frac{7}{3}}", True),
    ("38.6", r"\boxed{38.6\%}", True),
])
def test_boxed_edge_cases(answer: str, response: str, correct: bool) -> None:
    info = _score(answer, response)
    assert info["correct"] is correct
    assert info["reward_components"]["correctness"]["raw"] == float(correct)


@pytest.mark.parametrize(("response", "correct"), [
    (r"\boxed{(x+1)(x-2)}", True), (r"\boxed{x^{2}-x-2}", True), (r"\boxed{x^2 - x - 3}", False),
    (r"\boxed{x^2 - x - 2 + y}", False)])
def test_expression_answers_are_checked_symbolically(response: str, correct: bool) -> None:
    assert _score("x^2 - x - 2", response, "expression")["correct"] is correct


def test_format_needs_exactly_one_boxed_answer() -> None:
    comps = _score("5", r"<think>2+3</think> \boxed{5}")["reward_components"]
    assert comps["format"]["raw"] == 1.0
    assert _score("5", "5")["reward_components"]["format"]["raw"] == 0.0


# -- detectors and baselines -----------------------------------------------------------------------
def test_detectors_are_reported_per_episode() -> None:
    env = gym.make("Reasoning-v0", difficulty=3)
    obs, _ = env.reset(seed=1)
    _, _, _, _, oracle = env.step(OracleReasoningPolicy(env).act(obs))
    assert oracle["correct"]
    assert oracle["detectors"] == {"answer_guessing": [], "format_gaming": [],
                                   "length_gaming": []}
    obs, _ = env.reset(seed=1)
    _, _, _, _, guess = env.step(GuessingPolicy(env).act(obs))
    assert guess["correct"]
    assert "short_reasoning" in guess["detectors"]["answer_guessing"]
    assert guess["reward_components"]["answer_guessing"]["raw"] == 1.0
    assert guess["reward_components"]["shaped_correctness"]["raw"] == 0.5
    env.reset(seed=1)
    filler = ("Let me think carefully. " * 3 + "\n" * 4 + "x" * 120
              + f" \\boxed{{{guess['answer']}}}")
    _, _, _, _, gaming = env.step(filler)
    assert "filler_phrase" in gaming["detectors"]["format_gaming"]


def test_baselines_on_mixed_difficulty() -> None:
    env = gym.make("Reasoning-v0", difficulty=None)
    oracle, rand = OracleReasoningPolicy(env), RandomReasoningPolicy(seed=0)
    difficulties, oracle_ok, random_ok = set(), 0, 0
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        difficulties.add(info["difficulty"])
        oracle_ok += env.step(oracle.act(obs))[4]["correct"]
        obs, _ = env.reset(seed=seed)
        random_ok += env.step(rand.act(obs))[4]["correct"]
    assert difficulties == {1, 2, 3, 4, 5}
    assert oracle_ok == 40
    assert random_ok <= 4


def test_reasoning_config_errors() -> None:
    with pytest.raises(ConfigError, match="kinds"):
        ReasoningEnv(kinds=("calculus",))
    with pytest.raises(ConfigError, match="unknown Reasoning-v0 argument"):
        ReasoningEnv(dificulty=2)


@pytest.mark.parametrize("module", [reasoning, reasoning_problems, reasoning_agents])
def test_docstring_examples(module: Any) -> None:
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


# -- ReasoningGym-v0 -------------------------------------------------------------------------------
def test_reasoning_gym_is_registered_exactly_when_installed() -> None:
    installed = importlib.util.find_spec("reasoning_gym") is not None
    assert ("ReasoningGym-v0" in [e.id for e in ENVS]) == installed


def test_reasoning_gym_missing_raises_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reasoning_gym_adapter, "reasoning_gym_available", lambda: False)
    with pytest.raises(DependencyNotInstalled, match=r"thinkgym\[reasoning-gym\]"):
        reasoning_gym_adapter.ReasoningGymEnv()


@pytest.fixture
def rg() -> Any:
    return pytest.importorskip("reasoning_gym")


@pytest.mark.parametrize("dataset", ["basic_arithmetic", "chain_sum", "letter_counting"])
def test_reasoning_gym_scores_with_the_dataset_scorer(rg: Any, dataset: str) -> None:
    env = gym.make("ReasoningGym-v0", dataset=dataset, size=50)
    prompt, info = env.reset(seed=0)
    assert "<answer>" in prompt
    _, reward, terminated, _, right = env.step(f"Reasoning...\n<answer>{info['answer']}</answer>")
    assert terminated
    assert right["dataset_score"] == 1.0
    assert reward == pytest.approx(1.1)
    env.reset(seed=0)
    _, _, _, _, wrong = env.step("<answer>definitely not it</answer>")
    assert wrong["dataset_score"] < 1.0
    assert "detectors" in wrong


def test_reasoning_gym_boxed_format_and_determinism(rg: Any) -> None:
    env = gym.make("ReasoningGym-v0", dataset="basic_arithmetic", answer_format="boxed")
    first, info = env.reset(seed=3)
    assert gym.make("ReasoningGym-v0", dataset="basic_arithmetic",
                    answer_format="boxed").reset(seed=3)[0] == first
    _, _, _, _, out = env.step(f"\\boxed{{{info['answer']}}}")
    assert out["dataset_score"] == 1.0


def test_reasoning_gym_unknown_dataset_suggests_names(rg: Any) -> None:
    with pytest.raises(ConfigError, match="basic_arithmetic"):
        reasoning_gym_adapter.ReasoningGymEnv(dataset="basic_arithmetik")


def test_instruction_shows_no_example_value_and_lenient_sees_unboxed_answers() -> None:
    env = gym.make("Reasoning-v0", difficulty=1, kinds=("arithmetic",))
    prompt, info = env.reset(seed=3)
    assert "\\boxed{4" not in prompt
    assert "e.g." not in prompt
    _, reward, _, _, info = env.step(f"Working it out, the result is {info['answer']}.")
    comps = info["reward_components"]
    assert comps["correctness"]["raw"] == 0.0  # not boxed: no exact credit
    assert comps["lenient_match"]["raw"] == 1.0  # but the last number is right
    assert comps["lenient_match"]["weight"] == 0.0
    assert info["agent_answer"] is None
    assert reward == 0.0


def test_lenient_reads_the_last_equation_of_a_polynomial_reply() -> None:
    env = gym.make("Reasoning-v0", difficulty=1, kinds=("expand",))
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(f"Multiplying out: (...) = {info['answer']}")
    assert info["reward_components"]["lenient_match"]["raw"] == 1.0
