"""CTMThink-v0: thinking as an action. The agent decides how long a CTM thinks."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from thinkgym.errors import ConfigError, EnvStateError, InvalidAction, config_from_kwargs
from thinkgym.protocols import RewardInput
from thinkgym.rewards import Composer, RewardSpec, StepReward, StepTokenReward, TokenReward
from thinkgym.rewards.base import REWARDS
from thinkgym.spaces import text_space

if TYPE_CHECKING:
    import torch

__all__ = [
    "ACTIONS",
    "DEFAULT_CHECKPOINTS",
    "FEATURES",
    "CTMThinkConfig",
    "CTMThinkEnv",
    "TaskAccuracy",
]

ACTIONS: tuple[tuple[str, int], ...] = (("think_1", 1), ("think_2", 2), ("think_8", 8),
                                        ("answer", 0))
"""Action index -> (name, ticks). ``think_2`` runs one Two-Tick Unit step."""
ANSWER = 3

FEATURES: tuple[str, ...] = (
    "certainty", "certainty_delta", "margin", "ticks_used_frac", "budget_left_frac",
    "max_certainty", "changed_frac", "z_mean_abs", "z_std",
)
"""Names of the Box observation's features, in order (see the class docstring)."""
_LOW = np.array([0, -1, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
_HIGH = np.array([1, 1, 1, 1, 1, 1, 1, np.inf, np.inf], dtype=np.float32)

DEFAULT_CHECKPOINTS: dict[str, str] = {"parity": "parity16", "maze": "maze9",
                                        "digits": "digits16"}
"""Bundled checkpoint used when ``checkpoint`` is not given, per task."""

HOLDOUT_KEY = 20_261_123
"""Key of the content hash that halves the task's held-out items into ``validation`` and
``test`` (independent of the task's own train/test hash, which is keyed by its seed)."""
_MAX_DRAWS = 1_000


@dataclass(frozen=True)
class TaskAccuracy:
    """Correctness of the CTM's answer: the task's per-position accuracy in [0, 1].

    Read from ``RewardInput.metadata["accuracy"]``; None before the answer (and for
    inputs from other envs that do not carry it).
    """

    name: str = "task_accuracy"

    def __call__(self, inp: RewardInput) -> float | None:
        value = inp.metadata.get("accuracy")
        return None if value is None or not inp.done else float(value)


if "task_accuracy" not in REWARDS:
    REWARDS.register("task_accuracy", TaskAccuracy())


@dataclass(frozen=True)
class CTMThinkConfig:
    """Arguments of :class:`CTMThinkEnv` (all keyword arguments of ``gym.make``)."""

    task: Literal["parity", "maze", "sort", "digits"] = "parity"
    """CTM task an episode is drawn from."""
    checkpoint: str | None = None
    """Bundled name or path of a CTM checkpoint for ``task``; None: the task's default."""
    tick_budget: int | None = None
    """Ticks the CTM may think per episode; running out truncates with the answer scored.
    None: the ticks the checkpoint was trained for (its ``iterations``)."""
    obs_mode: Literal["box", "text"] = "box"
    """``"box"``: float features (``FEATURES``); ``"text"``: the same rendered as a line."""
    split: Literal["train", "validation", "test"] = "test"
    """Items an episode is drawn from. ``"validation"`` and ``"test"`` are disjoint halves
    (by a keyed content hash) of the task's held-out items, which the CTM never saw in
    training: tune halting policies on ``"validation"``, report on ``"test"``. ``"train"``
    items are the CTM's own training data (it is often over-confident on them)."""
    alpha: float = 0.7
    """Weight of R_steps in R = alpha * R_steps + beta * R_ticks."""
    beta: float = 0.3
    """Weight of R_ticks; alpha + beta must equal 1."""
    correctness_weight: float = 1.0
    """Weight of the answer's per-position accuracy."""
    valid_bonus: float = 0.1
    """R_steps: per thinking step whose certainty rose."""
    invalid_penalty: float = -0.5
    """R_steps: per thinking step whose certainty fell."""
    early_bonus: float = 1.0
    """R_steps: answering fully correct before the budget ran out."""
    certainty_tolerance: float = 1e-3
    """A step counts as rising/falling only if certainty moved by more than this."""
    tick_cost: float = 0.02
    """R_ticks: per tick above ``reference_ticks`` (the token reward's k)."""
    tick_saving: float = 0.01
    """R_ticks: per tick below ``reference_ticks``."""
    reference_ticks: int | None = None
    """Reference thinking length for R_ticks; None: half the tick budget."""
    reward_weights: dict[str, float] = field(default_factory=dict)
    """Overrides of the component weights (e.g. ``{"steps": 0.5}`` to optimise a part)."""
    torch_threads: int | None = 1
    """Torch threads while the env runs the CTM (set per call, then restored). Batch-1
    ticks gain nothing from more threads and lose a lot on a busy machine; None leaves
    torch's setting alone (e.g. for a large CTM)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Compute dtype of the CTM's ticks (``ContinuousThoughtMachine.set_inference_dtype``).
    ``"bfloat16"`` runs the tick's matmuls on the CPU's bf16 units: worth it for a large
    CTM; the bundled ones tick at batch 1, where it is no faster
    (``benchmarks/ctm_tick.py``). Accuracy moves by < 0.5 points either way."""

    def __post_init__(self) -> None:
        if self.task not in ("parity", "maze", "sort", "digits"):
            raise ConfigError("unknown task", field="task", got=self.task,
                              fix="use one of 'parity', 'maze', 'sort', 'digits'")
        if self.obs_mode not in ("box", "text"):
            raise ConfigError("unknown obs_mode", field="obs_mode", got=self.obs_mode,
                              fix="use 'box' (features) or 'text' (for LLM agents)")
        if self.split not in ("train", "validation", "test"):
            raise ConfigError("unknown split", field="split", got=self.split,
                              fix="use 'train', 'validation' or 'test'")
        if self.tick_budget is not None and (isinstance(self.tick_budget, bool)
                                             or not isinstance(self.tick_budget, int)
                                             or self.tick_budget < 1):
            raise ConfigError("must be an int >= 1", field="tick_budget", got=self.tick_budget,
                              fix="pass tick_budget=64")
        if self.dtype not in ("float32", "bfloat16"):
            raise ConfigError("unknown dtype", field="dtype", got=self.dtype,
                              fix="use 'float32' or 'bfloat16'")
        if self.torch_threads is not None and (not isinstance(self.torch_threads, int)
                                               or self.torch_threads < 1):
            raise ConfigError("must be an int >= 1 or None", field="torch_threads",
                              got=self.torch_threads, fix="pass torch_threads=1")
        if self.reference_ticks is not None and self.reference_ticks < 0:
            raise ConfigError("must be >= 0 or None", field="reference_ticks",
                              got=self.reference_ticks, fix="pass None for tick_budget // 2")
        if self.certainty_tolerance < 0:
            raise ConfigError("must be >= 0", field="certainty_tolerance",
                              got=self.certainty_tolerance, fix="pass 1e-3")
        if self.checkpoint is None and self.task not in DEFAULT_CHECKPOINTS:
            raise ConfigError(f"no bundled checkpoint for task {self.task!r}", field="checkpoint",
                              got=None, fix=f"train one with `thinkgym ctm train --task "
                              f"{self.task}` and pass checkpoint=PATH (bundled: "
                              f"{sorted(DEFAULT_CHECKPOINTS.values())})")

    @property
    def checkpoint_name(self) -> str:
        """The checkpoint that will be loaded."""
        return self.checkpoint or DEFAULT_CHECKPOINTS[self.task]

    def resolved(self, trained_ticks: int) -> tuple[int, int]:
        """(tick budget, reference ticks) once the checkpoint's training ticks are known."""
        budget = self.tick_budget if self.tick_budget is not None else trained_ticks
        reference = budget // 2 if self.reference_ticks is None else self.reference_ticks
        return budget, reference

    def composer(self) -> Composer:
        """Components: accuracy, the alpha/beta mix, and its two parts logged at weight 0."""
        steps = StepReward(valid_bonus=self.valid_bonus, early_bonus=self.early_bonus,
                           invalid_penalty=self.invalid_penalty)
        ticks = TokenReward(k_extra=self.tick_cost, k_saved=self.tick_saving, unit="tick",
                            name="ticks")
        mix = StepTokenReward(alpha=self.alpha, beta=self.beta, steps=steps, tokens=ticks,
                              name="step_tick")
        spec = RewardSpec(weights={"task_accuracy": self.correctness_weight, "step_tick": 1.0,
                                   "steps": 0.0, "ticks": 0.0}).override(self.reward_weights)
        return Composer(spec, instances=[steps, ticks, mix])


class CTMThinkEnv(gym.Env):
    """Thinking as an action: a Continuous Thought Machine thinks for as many ticks as you choose.

    ## Description
    An episode is one task instance (by default a 16-bit cumulative-parity problem)
    solved by a pretrained Continuous Thought Machine (CTM). The CTM has already read
    the input; each action either lets it think for more internal ticks (paying for
    them) or answers with its current prediction. The agent learns *halting*: keep
    thinking while it helps, answer as soon as the CTM is sure.

    ## Action Space
    ``Discrete(4)``: ``0`` think 1 tick, ``1`` think 2 ticks (one Two-Tick Thinking
    Unit step), ``2`` think 8 ticks, ``3`` answer now. Thinking never exceeds the
    budget: a think action with fewer ticks left runs only those.

    ## Observation Space
    ``obs_mode="box"``: ``Box(low, high, (9,), float32)`` with, in order (bounds
    ``[0, 1]`` except ``certainty_delta`` in ``[-1, 1]`` and the two z statistics
    in ``[0, inf)``):

    | idx | feature | meaning |
    |---|---|---|
    | 0 | certainty | 1 - normalised entropy of the current prediction, in [0, 1] |
    | 1 | certainty_delta | change of certainty over the last action |
    | 2 | margin | mean over positions of p(top-1) - p(top-2), in [0, 1] |
    | 3 | ticks_used_frac | ticks used / tick budget |
    | 4 | budget_left_frac | ticks left / tick budget |
    | 5 | max_certainty | highest certainty seen this episode |
    | 6 | changed_frac | share of output positions whose arg-max changed in the last action |
    | 7 | z_mean_abs | mean absolute post-activation of the CTM's neurons |
    | 8 | z_std | standard deviation of the post-activations |

    ``obs_mode="text"``: the same values rendered as one line for LLM agents.

    ## Rewards
    Through the rewards library, per component in ``info["reward_components"]``:
    ``task_accuracy`` (weight 1): the answer's per-position accuracy, at the end;
    ``step_tick`` (weight 1): ``alpha * R_steps + beta * R_ticks`` (0.7 / 0.3) where
    R_steps pays +0.1 per thinking step whose certainty rose, -0.5 per step whose
    certainty fell (moves under ``certainty_tolerance`` count as neither), and +1.0
    for a fully correct answer before the budget ran out; R_ticks, scored at the end,
    is -0.02 per tick above ``reference_ticks`` and +0.01 per tick below it. ``steps``
    and ``ticks`` are logged at weight 0. Override weights with ``reward_weights``.

    ## Starting State
    A task item drawn with ``self.np_random`` from ``split``: by default the ``"test"``
    half of the task's held-out items (``"validation"`` is the other half, for tuning
    halting policies); the CTM's learned start state, 0 ticks used. Small item pools
    (e.g. ``task="digits"``: a few hundred held-out images) are revisited across seeds.

    ## Episode End
    Terminated when the agent answers. Truncated when the tick budget is used up: the
    current prediction is scored as the answer. ``step`` after either raises
    :class:`thinkgym.errors.EnvStateError`.

    ## Arguments
    See :class:`CTMThinkConfig`: ``task``, ``checkpoint``, ``tick_budget``,
    ``obs_mode``, ``split``, the reward numbers, ``reward_weights``, ``torch_threads``
    and ``dtype`` (``"bfloat16"`` ticks).

    ## Version History
    * v0: initial version; held-out items split into ``validation`` and ``test`` halves.

    Example::

        >>> import gymnasium as gym
        >>> import thinkgym
        >>> env = gym.make("CTMThink-v0", tick_budget=32)
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape
        (9,)
        >>> obs, reward, terminated, truncated, info = env.step(2)   # think 8 ticks
        >>> info["ticks_used"]
        8
        >>> _, reward, terminated, _, info = env.step(3)              # answer
        >>> terminated, sorted(info["reward_components"])
        (True, ['step_tick', 'steps', 'task_accuracy', 'ticks'])
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError("unsupported render_mode", field="render_mode", got=render_mode,
                              fix="use 'ansi' or None")
        self.config = config_from_kwargs(CTMThinkConfig, "CTMThink-v0", kwargs)
        self.render_mode = render_mode
        # Loading runs under the thread limit too: in a forked async-vector worker, the
        # first multi-threaded torch op after fork can hang (the OpenMP pool is not fork-safe).
        with _torch_threads(self.config.torch_threads):
            self.model, self.task, self.checkpoint_meta = _load(self.config)
        self.tick_budget, self.reference_ticks = self.config.resolved(
            self.model.config.iterations)
        self.composer = self.config.composer()
        self.action_space = spaces.Discrete(len(ACTIONS))
        if self.config.obs_mode == "box":
            self.observation_space = spaces.Box(_LOW, _HIGH, dtype=np.float32)
        else:
            self.observation_space = text_space(512)
        self._over = True

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._over:
            raise EnvStateError("step() called after the episode ended (or before reset)",
                                fix="call reset() to start a new episode")
        action = self._check_action(action)
        name, ticks = ACTIONS[action]
        valid = invalid = 0
        if action != ANSWER:
            ticks = min(ticks, self._budget_left)
            previous = self._certainty
            with _torch_threads(self.config.torch_threads):
                self._think(ticks, two_tick=action == 1)
            delta = self._certainty - previous
            valid = int(delta > self.config.certainty_tolerance)
            invalid = int(delta < -self.config.certainty_tolerance)
        terminated = action == ANSWER
        truncated = not terminated and self._budget_left == 0
        done = terminated or truncated
        accuracy = self._accuracy() if done else None
        inp = RewardInput(
            valid_steps=valid, invalid_steps=invalid, done=done, truncated=truncated,
            goal_reached=done and accuracy == 1.0, steps_used=self._ticks_used,
            step_budget=self.tick_budget, num_tokens=self._ticks_used if done else None,
            reference_tokens=self.reference_ticks if done else None, protocol="ctm",
            metadata={"accuracy": accuracy})
        result = self.composer.score(inp, turn=self._turn)
        self._turn += 1
        self._over = done
        info = self._info(action=name, reward_components=result.components)
        if done:
            info["accuracy"] = accuracy
        return self._observation(), result.total, terminated, truncated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed, options=options)
        index = self._draw_index()
        self._batch = self.task.batch([index], split=self._task_split)
        with _torch_threads(self.config.torch_threads):
            self._kv = self.model.compute_kv(self._batch.inputs)
            self._state = self.model.init_state(self._kv)
            logits, certainty = self.model.readout(self._state)
            self._item_index = index
            self._item_id = hashlib.blake2b(self._batch.inputs.numpy().tobytes(),
                                            digest_size=8).hexdigest()
            self._ticks_used, self._turn = 0, 0
            self._certainty = self._max_certainty = float(certainty[0])
            self._prediction = None
            self._read(logits, certainty)
        self._over = False
        return self._observation(), self._info(action=None)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._text()
        return None

    # -- internals ------------------------------------------------------------------
    @property
    def _budget_left(self) -> int:
        return self.tick_budget - self._ticks_used

    @property
    def _task_split(self) -> str:
        return "train" if self.config.split == "train" else "test"

    def _draw_index(self) -> int:
        """Index of a ``split`` item: held-out items are kept only in their own half."""
        from thinkgym.ctm_core.tasks.base import content_split

        for _ in range(_MAX_DRAWS):
            index = int(self.np_random.integers(0, 2**31 - 1))
            if self.config.split == "train":
                return index
            x, y = self.task.sample_numpy(index, "test")
            half = content_split(self.task.split_key(x, y), 0.5, HOLDOUT_KEY)
            if half == ("test" if self.config.split == "test" else "train"):
                return index
        raise ConfigError(f"no {self.config.split} item in {_MAX_DRAWS} draws: the task's "
                          "held-out pool is too small to halve", field="split",
                          got=self.config.split, fix="raise the task's test_fraction or use "
                          "split='train'")

    def _check_action(self, action: Any) -> int:
        try:
            index = int(action)
        except (TypeError, ValueError):
            index = -1
        if index != action or not 0 <= index < len(ACTIONS):
            raise InvalidAction("action must be an int in [0, 3] "
                                "(0 think 1, 1 think 2, 2 think 8, 3 answer)", got=action,
                                fix="sample from env.action_space")
        return index

    def _think(self, ticks: int, *, two_tick: bool) -> None:
        from thinkgym.ctm_core import TwoTickUnit

        if two_tick and ticks == 2:
            self._state, logits, certainty = TwoTickUnit(self.model)(self._state, self._kv)
        else:
            for _ in range(ticks):
                self._state, logits, certainty = self.model.tick(self._state, self._kv)
        self._ticks_used += ticks
        self._read(logits, certainty)

    def _read(self, logits: torch.Tensor, certainty: torch.Tensor) -> None:
        """Update every observed quantity from the newest prediction (one softmax per step)."""
        probs = self.task.split_logits(logits)[0, :, :, 0].softmax(-1)  # (P, C)
        top2 = probs.topk(2, dim=-1)
        prediction = top2.indices[:, 0]
        new = float(certainty[0])
        self._delta = new - self._certainty
        self._certainty = new
        self._max_certainty = max(self._max_certainty, new)
        self._changed = 0.0 if self._prediction is None else \
            float((prediction != self._prediction).float().mean())
        self._prediction = prediction
        self._logits = logits
        self._margin = float((top2.values[:, 0] - top2.values[:, 1]).mean())
        z = self._state.z[0]
        self._z_stats = (float(z.abs().mean()), float(z.std()))

    def _accuracy(self) -> float:
        values = self.task.metric_values(self._logits.unsqueeze(-1), self._batch)
        return float(values["accuracy"][0, 0])

    def _features(self) -> np.ndarray:
        budget = self.tick_budget
        return np.array([
            self._certainty, self._delta, self._margin, self._ticks_used / budget,
            self._budget_left / budget, self._max_certainty, self._changed, *self._z_stats,
        ], dtype=np.float32)

    def _text(self) -> str:
        f = dict(zip(FEATURES, self._features().tolist(), strict=True))
        return (f"ticks {self._ticks_used}/{self.tick_budget} | certainty "
                f"{f['certainty']:.3f} ({f['certainty_delta']:+.3f}) | max {f['max_certainty']:.3f}"
                f" | margin {f['margin']:.3f} | changed {f['changed_frac']:.2f} | actions: "
                "0 think 1 tick, 1 think 2 ticks, 2 think 8 ticks, 3 answer")

    def _observation(self) -> Any:
        return self._features() if self.config.obs_mode == "box" else self._text()

    def _info(self, *, action: str | None, **extra: Any) -> dict[str, Any]:
        return {"ticks_used": self._ticks_used, "budget_left": self._budget_left,
                "certainty": self._certainty, "action": action, "item_index": self._item_index,
                "item_id": self._item_id,
                **extra}


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block without autograd and, if ``n`` is set, with ``n`` torch threads."""
    import torch

    previous = torch.get_num_threads()
    if n is not None and n != previous:
        torch.set_num_threads(n)
    try:
        with torch.no_grad():
            yield
    finally:
        if n is not None and n != previous:
            torch.set_num_threads(previous)


def _load(config: CTMThinkConfig) -> tuple[Any, Any, Any]:
    """Load the checkpoint and check it solves the configured task."""
    from thinkgym.ctm_core.checkpoint import load_checkpoint

    model, task, meta = load_checkpoint(config.checkpoint_name)
    model.requires_grad_(False)  # the env only runs the CTM; no autograd graph per tick
    model.set_inference_dtype(config.dtype)
    if meta.task_name != config.task:
        raise ConfigError(f"checkpoint {config.checkpoint_name!r} was trained on task "
                          f"{meta.task_name!r}, not {config.task!r}", field="checkpoint",
                          got=config.checkpoint_name,
                          fix=f"pass task={meta.task_name!r} or a {config.task} checkpoint")
    return model, task, meta
