"""ReasoningGym-v0: any dataset of the ``reasoning-gym`` package, scored by its own scorer.

Optional: ``pip install thinkgym[reasoning-gym]``. The env id is registered only
when the package is importable (``thinkgym.envs`` checks with
``importlib.util.find_spec``, which imports nothing), and constructing the class
without it raises :class:`thinkgym.errors.DependencyNotInstalled` with the fix.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Literal

from thinkgym.envs.common.text_env import TextEnv
from thinkgym.errors import ConfigError, DependencyNotInstalled, config_from_kwargs
from thinkgym.protocols import RewardInput
from thinkgym.rewards import FORMAT_PROTOCOLS, Composer, RewardSpec, TagProtocol, boxed_answer
from thinkgym.rewards.detectors import AnswerGuessing, FormatGaming, LengthGaming
from thinkgym.rewards.parsing import tag_blocks

__all__ = ["DatasetScore", "ReasoningGymConfig", "ReasoningGymEnv", "reasoning_gym_available"]

ANSWER_PROTOCOL = "answer_tag"
if ANSWER_PROTOCOL not in FORMAT_PROTOCOLS:
    # Free reasoning text, optional <think>, exactly one <answer> block at the end.
    FORMAT_PROTOCOLS.register(ANSWER_PROTOCOL, TagProtocol(
        ANSWER_PROTOCOL, {"think": "T", "answer": "A"}, episode=r"T?A", text_outside=True))

_INSTRUCTIONS = {
    "answer": "Think it through, then give only the final answer inside <answer></answer>.",
    "boxed": "Think it through, then give only the final answer in \\boxed{}.",
}
_DETECTORS = ("answer_guessing", "format_gaming", "length_gaming")


def reasoning_gym_available() -> bool:
    """True if the optional ``reasoning_gym`` package can be imported."""
    return importlib.util.find_spec("reasoning_gym") is not None


@dataclass(frozen=True)
class DatasetScore:
    """The dataset's own score of the answer (reasoning-gym's ``score_answer``, in [0, 1])."""

    name: str = "dataset_score"

    def __call__(self, inp: RewardInput) -> float | None:
        value = inp.metadata.get("dataset_score")
        return None if value is None or not inp.done else float(value)


@dataclass(frozen=True)
class ReasoningGymConfig:
    """Arguments of :class:`ReasoningGymEnv` (all keyword arguments of ``gym.make``)."""

    dataset: str = "basic_arithmetic"
    """A reasoning-gym dataset name (``reasoning_gym.factory.DATASETS``)."""
    dataset_config: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the dataset's config (difficulty ranges etc.)."""
    size: int = 10_000
    """Items in the dataset; an episode draws an index in ``[0, size)``."""
    dataset_seed: int = 0
    """Seed of the dataset itself (item ``i`` is fixed by ``dataset_seed`` and ``i``)."""
    answer_format: Literal["answer", "boxed"] = "answer"
    r"""Where the agent puts its answer: ``<answer>...</answer>`` or ``\boxed{}``."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    """Overrides of the component weights (``dataset_score`` 1.0, ``format`` 0.1)."""
    max_observation_chars: int = 16_384
    """Longest observation (some datasets have long questions)."""
    max_action_chars: int = 8192
    """Longest response."""

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError("must be a dataset name", field="dataset", got=self.dataset,
                              fix="pass e.g. dataset='basic_arithmetic'")
        if self.answer_format not in _INSTRUCTIONS:
            raise ConfigError("unknown answer_format", field="answer_format",
                              got=self.answer_format, fix="use 'answer' or 'boxed'")
        for name, lo in (("size", 1), ("max_observation_chars", 512), ("max_action_chars", 64)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"must be an int >= {lo}", field=name, got=v,
                                  fix=f"pass {name}={max(lo, 1000)}")

    def composer(self) -> Composer:
        weights = {"dataset_score": 1.0, "format": 0.1, **dict.fromkeys(_DETECTORS, 0.0)}
        return Composer(RewardSpec(weights=weights).override(self.reward_weights),
                        instances=[DatasetScore(), AnswerGuessing(), FormatGaming(),
                                   LengthGaming()])


def _load_dataset(config: ReasoningGymConfig) -> Any:
    if not reasoning_gym_available():
        raise DependencyNotInstalled(
            "ReasoningGym-v0 needs the optional reasoning-gym package", got="reasoning_gym",
            fix="pip install 'thinkgym[reasoning-gym]'")
    import reasoning_gym
    from reasoning_gym.factory import DATASETS

    if config.dataset not in DATASETS:
        import difflib

        close = difflib.get_close_matches(config.dataset, list(DATASETS), n=3)
        raise ConfigError("unknown reasoning-gym dataset", field="dataset", got=config.dataset,
                          fix=f"use one of {close or sorted(DATASETS)[:10]} "
                              "(all: reasoning_gym.factory.DATASETS)")
    try:
        return reasoning_gym.create_dataset(config.dataset, size=config.size,
                                            seed=config.dataset_seed, **config.dataset_config)
    except TypeError as exc:
        raise ConfigError(f"bad dataset_config for {config.dataset!r}: {exc}",
                          field="dataset_config", got=config.dataset_config,
                          fix="pass fields of the dataset's config class") from exc


class ReasoningGymEnv(TextEnv):
    r"""One item of a reasoning-gym dataset per episode, scored by the dataset's own scorer.

    ## Description
    Exposes any of reasoning-gym's procedural datasets (arithmetic, logic, puzzles,
    graphs, ...) by name. An episode is one item; the agent answers once.

    ## Action Space
    Text (``max_action_chars``): reasoning, then the answer in ``<answer></answer>``
    (default) or ``\boxed{}`` (``answer_format="boxed"``).

    ## Observation Space
    Text (``max_observation_chars``). ``reset``: the question plus the answer-format
    instruction; ``step``: ``""``.

    ## Rewards
    ``dataset_score`` (1.0): the dataset's ``score_answer`` (its own notion of
    equivalence and partial credit) on the last ``<answer>`` block or the single
    boxed answer; ``format`` (0.1): the ``answer_tag`` or ``boxed`` protocol;
    detectors ``answer_guessing``, ``format_gaming``, ``length_gaming`` at weight 0,
    with their fired rules in ``info["detectors"]``.

    ## Starting State
    Item index drawn from ``self.np_random`` in ``[0, size)``.

    ## Episode End
    Terminated after the one response; never truncated.

    ## Arguments
    See :class:`ReasoningGymConfig`: ``dataset``, ``dataset_config``, ``size``,
    ``dataset_seed``, ``answer_format``, ``reward_weights``.

    ## Version History
    * v0: initial version.

    Example (needs ``reasoning-gym``)::

        >>> import gymnasium as gym
        >>> import thinkgym
        >>> env = gym.make("ReasoningGym-v0", dataset="basic_arithmetic")  # doctest: +SKIP
        >>> prompt, info = env.reset(seed=0)  # doctest: +SKIP
        >>> _, reward, *_ = env.step(f"<answer>{info['answer']}</answer>")  # doctest: +SKIP
        >>> reward  # doctest: +SKIP
        1.1
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        self.config = config_from_kwargs(ReasoningGymConfig, "ReasoningGym-v0", kwargs)
        self.dataset = _load_dataset(self.config)
        super().__init__(max_observation_chars=self.config.max_observation_chars,
                         max_action_chars=self.config.max_action_chars, render_mode=render_mode)
        self.composer = self.config.composer()
        self.entry: dict[str, Any] | None = None

    def _reset_episode(self) -> tuple[str, dict[str, Any]]:
        index = int(self.np_random.integers(self.config.size))
        self.entry = self.dataset[index]
        prompt = f"{self.entry['question']}\n\n{_INSTRUCTIONS[self.config.answer_format]}\n"
        return prompt, {"index": index, "answer": str(self.entry["answer"]),
                        "dataset": self.config.dataset}

    def _extract(self, action: str) -> str | None:
        if self.config.answer_format == "boxed":
            return boxed_answer(action)
        blocks = tag_blocks(action, {"answer"})
        return blocks[-1].content.strip() if blocks else None

    def _step_episode(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        entry = self.entry or {}
        answer = self._extract(action)
        score = float(self.dataset.score_answer(answer, entry))
        protocol = "boxed" if self.config.answer_format == "boxed" else ANSWER_PROTOCOL
        inp = RewardInput(completion=self.transcript.text, prompt=self._prompt, answer=answer,
                          references=(str(entry.get("answer", "")),), protocol=protocol,
                          done=True, metadata={"dataset_score": score})
        result = self.composer.score(inp, turn=0)
        detectors = {n: self.composer.component(n).reasons(inp) for n in _DETECTORS
                     if n in self.composer.names}
        info = {"answer": str(entry.get("answer", "")), "extracted_answer": answer,
                "dataset_score": score, "detectors": detectors,
                "reward_components": result.components}
        return "", result.total, True, False, info
