"""Modular rewards: components, composition with gates, the ledger, detectors, TRL adapter.

How an environment uses it
--------------------------
An env keeps its default weights as a :class:`RewardSpec`, merges the user's
overrides, and builds one :class:`Composer` in ``__init__``. Components are named
(registered) or passed as instances; weight ``0.0`` logs a metric without
optimising it; a gate makes one component count only if another passed::

    from thinkgym.rewards import Composer, RewardSpec, StepReward
    from thinkgym.protocols import RewardInput

    DEFAULTS = RewardSpec(weights={"exact_match": 1.0, "format": 0.2, "search_cost": 1.0,
                                   "f1": 0.0},
                          gates={"exact_match": "format"})

    class SearchQAEnv(TextEnv):
        def __init__(self, config):
            spec = DEFAULTS.override(config.reward_weights, config.reward_gates)
            self.composer = Composer(spec, instances=config.reward_components)
            ...

        def _step_episode(self, action):
            ...
            inp = RewardInput(completion=self.transcript.text, answer=answer,
                              references=self.item.answers, protocol="search",
                              env_spans=tuple(self.transcript.env_spans),
                              num_searches=searched_this_turn, done=terminated)
            result = self.composer.score(inp, turn=self.turn)   # RewardError on failure
            info["reward_components"] = result.components         # plain JSON
            return obs, result.total, terminated, truncated, info

Conventions for the inputs: per-turn inputs carry *this turn's* counts
(``valid_steps``, ``num_searches``, ``tool_calls``), with ``prior_searches`` /
``prior_tool_calls`` saying how many came before, so per-turn rewards sum to the
episode's. Components that need a field the env left empty return ``None``.

A run saves a :class:`Ledger` (``Ledger.from_infos`` or ``ledger.record(result)``)
as JSONL; :func:`rescore` recomputes totals under new weights without re-running the
policy (``thinkgym rescore RUN_DIR --weights exact_match=1,format=0``).

A user component is a plain function::

    >>> from thinkgym.rewards import Composer, reward_component
    >>> from thinkgym.protocols import RewardInput
    >>> @reward_component("doc_says_please", replace=True)
    ... def says_please(inp: RewardInput) -> float:
    ...     return 1.0 if "please" in inp.completion.lower() else 0.0
    >>> composer = Composer({"doc_says_please": 0.5, "steps": 1.0})
    >>> result = composer.score(RewardInput(completion="Please.", valid_steps=2), turn=0)
    >>> round(result.total, 6), result.components["doc_says_please"]
    (0.7, {'raw': 1.0, 'weight': 0.5, 'weighted': 0.5, 'gated': False})

Nothing here imports torch, transformers or trl at import time; the TRL adapter and
the tokenizer-based masking import them inside the functions that need them.
"""

from __future__ import annotations

from thinkgym.rewards.base import (
    REWARDS,
    FunctionComponent,
    call_component,
    get_component,
    register_component,
    resolve_component,
    reward_component,
)
from thinkgym.rewards.compose import Composer, RewardSpec, ScoreResult, gate_open
from thinkgym.rewards.correctness import (
    answer_match,
    boxed_answer,
    exact_match,
    is_hedged,
    last_number,
    lenient_match,
    normalize_answer,
    numbers_equal,
    parse_number,
    token_f1,
)
from thinkgym.rewards.detectors import (
    AnswerCollapse,
    AnswerGuessing,
    DetectorReport,
    FormatGaming,
    GroupStats,
    LengthGaming,
    ShapedCorrectness,
    answer_entropy,
    format_reward_share,
    group_stats,
    reward_length_correlation,
)
from thinkgym.rewards.format import (
    FORMAT_PROTOCOLS,
    FormatCheck,
    FormatReward,
    JsonValidity,
    TagProtocol,
    check_format,
)
from thinkgym.rewards.ledger import LEDGER_FILENAME, Ledger, LedgerEntry, rescore
from thinkgym.rewards.masking import env_token_mask, partial_mask, span_token_mask
from thinkgym.rewards.steps import StepReward, StepTokenReward, check_mix
from thinkgym.rewards.tokens import TokenReward
from thinkgym.rewards.tools import CTMTickCost, SearchCost, ToolEfficiency
from thinkgym.rewards.trl import build_reward_input, to_trl_reward_funcs

__all__ = [
    "FORMAT_PROTOCOLS",
    "LEDGER_FILENAME",
    "REWARDS",
    "AnswerCollapse",
    "AnswerGuessing",
    "CTMTickCost",
    "Composer",
    "DetectorReport",
    "FormatCheck",
    "FormatGaming",
    "FormatReward",
    "FunctionComponent",
    "GroupStats",
    "JsonValidity",
    "Ledger",
    "LedgerEntry",
    "LengthGaming",
    "RewardSpec",
    "ScoreResult",
    "SearchCost",
    "ShapedCorrectness",
    "StepReward",
    "StepTokenReward",
    "TagProtocol",
    "TokenReward",
    "ToolEfficiency",
    "answer_entropy",
    "answer_match",
    "boxed_answer",
    "build_reward_input",
    "call_component",
    "check_format",
    "check_mix",
    "env_token_mask",
    "exact_match",
    "format_reward_share",
    "gate_open",
    "get_component",
    "group_stats",
    "is_hedged",
    "last_number",
    "lenient_match",
    "normalize_answer",
    "numbers_equal",
    "parse_number",
    "partial_mask",
    "register_component",
    "rescore",
    "resolve_component",
    "reward_component",
    "reward_length_correlation",
    "span_token_mask",
    "to_trl_reward_funcs",
    "token_f1",
]
