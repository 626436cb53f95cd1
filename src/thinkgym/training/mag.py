"""Progressive training of :class:`~thinkgym.agents.mag.MAGPolicy`: detection, joint, RL.

* **Stage 1 — detection channel, generation frozen.** Logged SearchQA-v0 episodes
  (:func:`~thinkgym.agents.mag.search_qa.log_episode`: a hop-by-hop searcher, a
  candidate answer after every search) give, per step, the observed stop return
  ``U = R * 1[candidate right]``; the head is fitted to the TD targets of
  :func:`~thinkgym.agents.mag.detection.td_targets` (``V`` bootstrapped from its own
  detached estimate of the next step). The LM's weights get ``requires_grad=False``
  and its hidden states are computed once, so the LM is bit-for-bit unchanged.
  The stop threshold ``base_threshold`` is calibrated on validation episodes whose
  questions start from entities no training episode starts from
  (:func:`log_train_validation`: a stable hash holds out ``validation_entity_fraction``
  of the split's start entities, as the test split holds out its own), so the
  threshold is set under the shift it meets on new questions: the candidate
  (:func:`threshold_candidates`: 0 and quantiles of the channel's own normalised gains,
  so any head scale is covered) with the fewest mean steps whose success is within
  ``calibration_tolerance`` of the full budget's. With
  ``calibrate=False`` (or no validation episodes) it is the step cost,
  ``base_threshold = lambda``: keep reasoning only while the predicted gain of
  continuing exceeds what one more step costs (scaled by ``1 + H``). The validation
  table is written either way. (Calibration is the default because the value head's
  scale varies between training seeds: benchmarks/mag_halting.py measured one seed of
  six losing 24.5 points of success with ``base_threshold = lambda``; validation from
  held-out entities because on the training entities the channel looked safe at
  thresholds that lost up to 2.5 points on new ones.)
* **Stage 2 — joint fine-tuning.** The LM is unfrozen: loss = detection TD loss +
  ``lm_loss_weight`` * next-token NLL on the agent's action tokens of the same
  episodes (the generation channel keeps writing the searcher's moves while its
  hidden states adapt to the detection channel). The LM is saved with the block.
* **Stage 3 — RL.** GRPO on SearchQA-v0 through :func:`thinkgym.training.grpo.train_grpo`
  (stock TRL trainer, env rollout), with the env's query reward (``search_cost``
  weighted by ``search_cost_weight``); starts from the stage-2 directory, copies the
  MAG block and head along.

``thinkgym train mag --stage 1|2|3`` runs one stage (see :func:`configure`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import shutil
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from thinkgym.errors import ConfigError, NumericalError, check_int_fields

__all__ = [
    "EncodedEpisode",
    "HaltingResult",
    "MAGTrainConfig",
    "calibrate_threshold",
    "compare_stop_rules",
    "configure",
    "detect_all",
    "detection_loss",
    "encode_episodes",
    "evaluate_halting",
    "held_out_entity",
    "log_episodes",
    "log_train_validation",
    "rule_result",
    "run_mag",
    "stop_steps",
    "threshold_candidates",
    "train_detection",
    "train_mag",
    "train_stage3",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MAGTrainConfig:
    """One stage of MAG training (episodes, objective, optimiser, output)."""

    stage: Literal[1, 2, 3] = 1
    """1: detection only (LM frozen); 2: joint; 3: GRPO with the query reward."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    """``gym.make("SearchQA-v0", **env_kwargs)`` (e.g. ``split``, ``num_passages``)."""
    num_episodes: int = 256
    """Logged training episodes (seeds ``first_seed ..``)."""
    num_validation: int = 64
    """Logged validation episodes (the seeds after the training ones) for the threshold."""
    first_seed: int = 0
    """First env seed of the logged episodes."""
    budget: int = 6
    """Searches per logged episode (the full budget)."""
    max_steps: int = 200
    """Optimiser steps (stages 1-2) or GRPO steps (stage 3)."""
    batch_size: int = 16
    """Episodes per step."""
    learning_rate: float = 2e-3
    """AdamW learning rate of the detection channel."""
    lm_learning_rate: float = 1e-5
    """Stage 2: learning rate of the LM."""
    lm_loss_weight: float = 1.0
    """Stage 2: weight of the next-token NLL on action tokens."""
    gamma: float = 0.95
    """Discount ``gamma`` of ``V(s) = r(s) + gamma * max V(s')``."""
    step_cost: float = 0.05
    """``lambda``: reward ``-lambda`` per reasoning step."""
    success_reward: float = 1.0
    """``R``: the stop return of a right candidate."""
    calibrate: bool = True
    """Pick ``base_threshold`` on validation episodes (False: it is ``step_cost``)."""
    calibration_tolerance: float = 0.005
    """Threshold calibration: allowed success drop versus the full budget."""
    validation_entity_fraction: float = 0.2
    """Share of the split's start entities whose questions are validation-only."""
    thresholds: tuple[float, ...] | None = None
    """Candidate ``base_threshold`` values for the calibration; None: 0 and quantiles of
    the channel's own ``(V - U) / (1 + H)`` on the validation steps
    (:func:`threshold_candidates`), whatever the head's scale."""
    search_cost_weight: float = 1.0
    """Stage 3: weight of the env's ``search_cost`` reward component."""
    grpo: Mapping[str, Any] = field(default_factory=dict)
    """Stage 3: further :class:`~thinkgym.training.grpo.GRPOTrainConfig` fields."""
    seed: int = 0
    """Seed of batch order and initial weights."""
    output_dir: str = "runs/mag"
    """Where the stage writes its result."""

    def __post_init__(self) -> None:
        if self.stage not in (1, 2, 3):
            raise ConfigError("unknown stage", field="stage", got=self.stage, fix="use 1, 2 or 3")
        check_int_fields(self, {"num_episodes": 1, "num_validation": 0, "first_seed": 0,
                                "budget": 1, "max_steps": 1, "batch_size": 1})
        for name in ("learning_rate", "lm_learning_rate", "success_reward"):
            if not getattr(self, name) > 0:
                raise ConfigError("must be > 0", field=name, got=getattr(self, name),
                                  fix=f"pass a positive {name}")
        if not 0 < self.gamma <= 1:
            raise ConfigError("must lie in (0, 1]", field="gamma", got=self.gamma,
                              fix="pass e.g. gamma=0.95")
        if not 0 < self.validation_entity_fraction < 1:
            raise ConfigError("must lie in (0, 1)", field="validation_entity_fraction",
                              got=self.validation_entity_fraction, fix="pass e.g. 0.2")
        if self.step_cost < 0 or self.lm_loss_weight < 0:
            raise ConfigError("must be >= 0", field="step_cost/lm_loss_weight",
                              got=(self.step_cost, self.lm_loss_weight), fix="pass >= 0")
        object.__setattr__(self, "env_kwargs", MappingProxyType(dict(self.env_kwargs)))
        object.__setattr__(self, "grpo", MappingProxyType(dict(self.grpo)))
        if self.thresholds is not None:
            object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))


# -- data ------------------------------------------------------------------------------------
def _logged(seeds: Iterable[int], budget: int,
            env_kwargs: Mapping[str, Any] | None) -> Generator[Any, None, None]:
    """:func:`~thinkgym.agents.mag.search_qa.log_episode` per seed, on one env (closed after)."""
    import gymnasium as gym

    import thinkgym  # noqa: F401  (registers the envs)
    from thinkgym.agents.mag.search_qa import log_episode

    env = gym.make("SearchQA-v0", **dict(env_kwargs or {}))
    try:
        for seed in seeds:
            yield log_episode(env, int(seed), budget)
    finally:
        env.close()


def log_episodes(seeds: Sequence[int], *, budget: int,
                 env_kwargs: Mapping[str, Any] | None = None, progress: bool = False,
                 ) -> list[Any]:
    """:func:`~thinkgym.agents.mag.search_qa.log_episode` for each seed (one env)."""
    return list(_logged(_progress(seeds, progress, "logging episodes"), budget, env_kwargs))


def held_out_entity(name: str, fraction: float) -> bool:
    """Whether start entity ``name`` is validation-only: a stable hash bucket of its name."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def log_train_validation(num_train: int, num_validation: int, *, budget: int,
                         fraction: float = 0.2, first_seed: int = 0,
                         env_kwargs: Mapping[str, Any] | None = None,
                         progress: bool = False) -> tuple[list[Any], list[Any]]:
    """Training and validation episodes of one split with no start entity in common.

    Seeds from ``first_seed`` up are logged in order; an episode is validation when any
    start entity of its question is held out (:func:`held_out_entity`), training when
    none is, until ``num_train`` and ``num_validation`` are collected (extra episodes
    of the kind already full are dropped).
    """
    from tqdm.auto import tqdm

    wanted = {False: num_train, True: num_validation}
    sets: dict[bool, list[Any]] = {False: [], True: []}

    def full() -> bool:  # (tqdm does not count when disabled)
        return all(len(sets[k]) >= wanted[k] for k in sets)

    limit = first_seed + 20 * (num_train + num_validation) + 100
    stream = _logged(range(first_seed, limit), budget, env_kwargs)
    with contextlib.closing(stream), tqdm(total=num_train + num_validation,
                                          disable=not progress, desc="logging episodes",
                                          leave=False) as bar:
        for episode in stream:
            held = any(held_out_entity(n, fraction) for n in episode.start_entities)
            if len(sets[held]) < wanted[held]:
                sets[held].append(episode)
                bar.update(1)
            if full():
                break
    if not full():
        raise ConfigError("too few questions of one kind in the seeds tried",
                          field="num_validation",
                          got={"train": len(sets[False]), "validation": len(sets[True]),
                               "seeds_tried": limit - first_seed},
                          fix="lower num_validation/num_episodes or change "
                              "validation_entity_fraction")
    return sets[False], sets[True]


@dataclass
class EncodedEpisode:
    """An episode as tensors' raw material."""

    ids: list[int]
    ends: list[int]
    """Token index of each step's end."""
    agent_mask: list[int]
    correct: list[bool]
    has_candidate: list[bool]
    budget: int


def encode_episodes(episodes: Sequence[Any], tokenizer: Any, budget: int) -> list[EncodedEpisode]:
    """Token ids, step ends and labels of logged episodes (:func:`episode_tokens` layout)."""
    from thinkgym.agents.mag.policy import episode_tokens

    out = []
    for ep in episodes:
        ids, ends, mask = episode_tokens(tokenizer, ep.prompt,
                                         list(zip(ep.actions, ep.observations, strict=True)))
        out.append(EncodedEpisode(ids, ends, mask, list(ep.correct),
                                  [c is not None for c in ep.candidates], budget))
    return out


def _batch(items: Sequence[EncodedEpisode], success_reward: float, pad_id: int = 0,
           ) -> dict[str, Any]:
    import torch

    b, t, k = len(items), max(len(e.ids) for e in items), max(len(e.ends) for e in items)
    ids = torch.full((b, t), pad_id, dtype=torch.long)
    attn = torch.zeros(b, t)
    agent = torch.zeros(b, t)
    pos = torch.zeros(b, k, dtype=torch.long)
    valid = torch.zeros(b, k)
    ret = torch.zeros(b, k)
    frac = torch.zeros(b, k)
    for i, e in enumerate(items):
        n, m = len(e.ids), len(e.ends)
        ids[i, :n] = torch.tensor(e.ids)
        attn[i, :n] = 1
        agent[i, :n] = torch.tensor(e.agent_mask, dtype=torch.float)
        pos[i, :m] = torch.tensor(e.ends)
        valid[i, :m] = 1
        ret[i, :m] = torch.tensor(e.correct, dtype=torch.float) * success_reward
        frac[i, :m] = torch.arange(1, m + 1, dtype=torch.float) / e.budget
    return {"input_ids": ids, "attention_mask": attn, "agent_mask": agent, "positions": pos,
            "valid": valid, "stop_returns": ret, "step_fraction": frac}


def detection_loss(policy: Any, batch: Mapping[str, Any], config: MAGTrainConfig,
                   hidden: Any = None) -> tuple[Any, dict[str, float]]:
    """TD loss ``mean(((V - U) - (y_V - y_U))^2 + (U - y_U)^2)`` over valid steps, and metrics.

    The first term fits the gain of continuing, ``A = V - U`` (what the stop rule
    thresholds), to its target ``y_V - y_U = max(0, -lambda + gamma V' - y_U)``; with
    the second it fits ``V`` as ``U + A``.
    """
    from thinkgym.agents.mag.detection import td_targets

    if hidden is None:
        hidden = policy.hidden_states(batch["input_ids"], batch["attention_mask"])
    det = policy.detect(hidden, batch["positions"], batch["step_fraction"],
                        batch["attention_mask"])
    target_v, target_u = td_targets(batch["stop_returns"], batch["valid"], det.value.detach(),
                                    gamma=config.gamma, step_cost=config.step_cost)
    valid = batch["valid"]
    n = valid.sum().clamp(min=1)
    # V is fitted through the gain A = V - U (the quantity the stop rule thresholds)
    gain, target_gain = det.value - det.stop_value, target_v - target_u
    loss_v = ((gain - target_gain).pow(2) * valid).sum() / n
    loss_u = ((det.stop_value - target_u).pow(2) * valid).sum() / n
    return loss_v + loss_u, {"loss/value": float(loss_v.detach()),
                             "loss/stop_value": float(loss_u.detach())}


def _lm_nll(policy: Any, hidden: Any, batch: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    logits = policy.lm.get_output_embeddings()(hidden[:, :-1])  # (B, T-1, V)
    target = batch["input_ids"][:, 1:]
    weight = batch["agent_mask"][:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    return (nll * weight).sum() / weight.sum().clamp(min=1)


def _progress(items: Any, on: bool, desc: str) -> Any:
    if not on:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


def train_detection(policy: Any, episodes: Sequence[EncodedEpisode], config: MAGTrainConfig, *,
                    progress: bool = False, hidden: Sequence[Any] | None = None,
                    ) -> list[dict[str, float]]:
    """Stage 1 (LM frozen, hidden states computed once) or stage 2 (joint); the log.

    ``hidden``: stage 1 only, the LM's hidden states ``(T, H)`` per episode if already
    computed (they are a pure function of the frozen LM and the episode).
    """
    import torch

    if config.stage not in (1, 2):
        raise ConfigError("train_detection runs stages 1 and 2", field="stage",
                          got=config.stage, fix="use train_stage3 for GRPO")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng([config.seed, 18])
    joint = config.stage == 2
    policy.lm.requires_grad_(joint)
    policy.lm.train(joint)
    groups: list[dict[str, Any]] = [{"params": list(policy.detection_parameters()),
                                     "lr": config.learning_rate}]
    if joint:
        groups.append({"params": list(policy.generation_parameters()),
                       "lr": config.lm_learning_rate})
    optimiser = torch.optim.AdamW(groups, weight_decay=0.0)
    pad = getattr(policy.tokenizer, "pad_token_id", None) or 0
    cached: list[Any] | None = list(hidden) if hidden is not None and not joint else None
    if not joint and cached is None:  # the LM never changes in stage 1: one forward each
        with torch.no_grad():
            cached = [policy.hidden_states(torch.tensor([e.ids]))[0]
                      for e in _progress(episodes, progress, "LM hidden states")]
    log: list[dict[str, float]] = []
    policy.block.train()
    for step in _progress(range(config.max_steps), progress, f"MAG stage {config.stage}"):
        pick = rng.choice(len(episodes), size=min(config.batch_size, len(episodes)),
                          replace=False)
        batch = _batch([episodes[i] for i in pick], config.success_reward, pad)
        if cached is not None:
            states = torch.nn.utils.rnn.pad_sequence([cached[i] for i in pick],
                                                     batch_first=True)
        else:
            states = policy.hidden_states(batch["input_ids"], batch["attention_mask"])
        loss, metrics = detection_loss(policy, batch, config, states)
        if not torch.isfinite(loss):
            raise NumericalError(f"MAG stage {config.stage} loss became non-finite at step "
                                 f"{step}", got=metrics,
                                 fix="lower learning_rate or the block's theta / "
                                     "max_surprise_norm, or change seed")
        if joint and config.lm_loss_weight:
            nll = _lm_nll(policy, states, batch)
            loss = loss + config.lm_loss_weight * nll
            metrics["loss/lm_nll"] = float(nll.detach())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimiser.step()
        metrics["step"] = step
        log.append(metrics)
        if step % 50 == 0:
            logger.info("stage %d step %d: %s", config.stage, step, metrics)
    policy.eval()
    policy.lm.requires_grad_(False)
    return log


# -- evaluation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class HaltingResult:
    """Success and steps of one stopping rule over a set of episodes."""

    success: float
    mean_steps: float
    stops: tuple[int, ...]
    """Stop step index per episode."""


def rule_result(episodes: Sequence[EncodedEpisode], stops: Sequence[int]) -> HaltingResult:
    """Success and mean steps of stopping each episode at ``stops`` (step indices)."""
    stops = tuple(int(s) for s in stops)
    success = sum(e.correct[s] for e, s in zip(episodes, stops, strict=True)) / len(episodes)
    return HaltingResult(success, float(np.mean([s + 1 for s in stops])), stops)


def detect_all(policy: Any, episodes: Sequence[EncodedEpisode], *, batch_size: int = 8,
               hidden: Sequence[Any] | None = None, progress: bool = False) -> list[Any]:
    """Per episode, ``(V - U, H)`` arrays over its steps (no grad)."""
    import torch

    policy.eval()
    out = []
    with torch.no_grad():
        for start in _progress(range(0, len(episodes), batch_size), progress, "detection"):
            chunk = episodes[start:start + batch_size]
            batch = _batch(chunk, 1.0, getattr(policy.tokenizer, "pad_token_id", None) or 0)
            if hidden is not None:
                h = torch.nn.utils.rnn.pad_sequence(
                    list(hidden[start:start + batch_size]), batch_first=True)
            else:
                h = policy.hidden_states(batch["input_ids"], batch["attention_mask"])
            det = policy.detect(h, batch["positions"], batch["step_fraction"],
                                batch["attention_mask"])
            for i, e in enumerate(chunk):
                k = len(e.ends)
                out.append(((det.value - det.stop_value)[i, :k].numpy(),
                            det.entropy[i, :k].numpy()))
    return out


def stop_steps(advantages: Sequence[Any], base_threshold: float) -> list[int]:
    """First step where ``V - U < base_threshold * (1 + H)``, else the last step."""
    stops = []
    for adv, ent in advantages:
        hit = np.nonzero(adv < base_threshold * (1.0 + ent))[0]
        stops.append(int(hit[0]) if len(hit) else len(adv) - 1)
    return stops


def evaluate_halting(policy: Any, episodes: Sequence[EncodedEpisode],
                     base_threshold: float | None = None, **kwargs: Any) -> HaltingResult:
    """Success and mean steps of the detection channel's stop rule on logged episodes."""
    tau = policy.config.base_threshold if base_threshold is None else base_threshold
    return rule_result(episodes, stop_steps(detect_all(policy, episodes, **kwargs), tau))


def compare_stop_rules(episodes: Sequence[EncodedEpisode], advantages: Sequence[Any],
                       base_threshold: float) -> dict[str, HaltingResult]:
    """The detection channel's stops (``mag``) beside the two fixed rules, same episodes.

    ``full_budget`` answers after the last logged step; ``first_answer`` at the first
    step that holds any candidate; ``mag`` at :func:`stop_steps` of ``advantages``
    (from :func:`detect_all`) with ``base_threshold``.
    """
    last = [len(e.ends) - 1 for e in episodes]
    first = [next((k for k, c in enumerate(e.has_candidate) if c), n)
             for e, n in zip(episodes, last, strict=True)]
    return {"full_budget": rule_result(episodes, last),
            "first_answer": rule_result(episodes, first),
            "mag": rule_result(episodes, stop_steps(advantages, base_threshold))}


def threshold_candidates(advantages: Sequence[Any], levels: int = 24) -> list[float]:
    """0 and the ``levels`` quantiles (1/levels .. 1) of ``(V - U) / (1 + H)`` over all steps.

    The stop rule ``V - U < base * (1 + H)`` only changes where ``base`` crosses one of
    these ratios, so quantiles of the channel's own outputs span its decisions at any
    scale (a fixed grid missed a seed whose gains all exceeded its largest value).
    """
    ratios = np.concatenate([np.asarray(adv) / (1.0 + np.asarray(ent))
                             for adv, ent in advantages])
    quantiles = np.quantile(ratios, np.linspace(0.0, 1.0, levels + 1)[1:])
    return sorted({0.0, *(round(float(q), 6) for q in quantiles)})


def calibrate_threshold(advantages: Sequence[Any], episodes: Sequence[EncodedEpisode],
                        thresholds: Sequence[float] | None, tolerance: float,
                        ) -> tuple[float, dict]:
    """The ``base_threshold`` with the fewest steps within ``tolerance`` of full-budget success.

    ``thresholds`` None: :func:`threshold_candidates` of ``advantages``. Falls back to the
    most successful threshold when none is within tolerance.
    """
    if thresholds is None:
        thresholds = threshold_candidates(advantages)
    full = rule_result(episodes, [len(e.ends) - 1 for e in episodes]).success
    table = {t: rule_result(episodes, stop_steps(advantages, t)) for t in thresholds}
    ok = [t for t, r in table.items() if r.success >= full - tolerance]
    best = (min(ok, key=lambda t: (table[t].mean_steps, t)) if ok
            else max(table, key=lambda t: (table[t].success, -table[t].mean_steps)))
    return best, {str(t): {"success": r.success, "mean_steps": r.mean_steps}
                  for t, r in table.items()}


# -- stages ----------------------------------------------------------------------------------
def _episode_sets(config: MAGTrainConfig, progress: bool) -> tuple[list[Any], list[Any]]:
    return log_train_validation(config.num_episodes, config.num_validation,
                                budget=config.budget,
                                fraction=config.validation_entity_fraction,
                                first_seed=config.first_seed, env_kwargs=config.env_kwargs,
                                progress=progress)


def train_mag(config: MAGTrainConfig, model: str, *, policy_config: Any = None,
              progress: bool = True) -> Path:
    """Run stage 1 or 2 end to end (log episodes, train, calibrate, save); return the dir.

    Stage 1: ``model`` is an LM (directory or alias); the LM is not saved, its source
    is recorded. Stage 2: ``model`` is a stage-1 output (or any ``MAGPolicy.save`` dir);
    the jointly tuned LM is saved with the block. Stage 3: :func:`train_stage3`.
    """
    import dataclasses as dc

    import torch

    from thinkgym.agents.llm import load_model_and_tokenizer
    from thinkgym.agents.mag.policy import MAGPolicy, MAGPolicyConfig

    if config.stage == 3:
        return train_stage3(config, model, progress=progress)
    torch.manual_seed(config.seed)
    if config.stage == 1:
        lm, tokenizer = load_model_and_tokenizer(model)
        policy = MAGPolicy(lm, tokenizer, policy_config or MAGPolicyConfig())
    else:
        policy = MAGPolicy.load(model)
    train_eps, val_eps = _episode_sets(config, progress)
    enc = encode_episodes(train_eps, policy.tokenizer, config.budget)
    log = train_detection(policy, enc, config, progress=progress)
    report: dict[str, Any] = {"stage": config.stage, "final_loss": log[-1]}
    tau = config.step_cost
    if val_eps:
        val = encode_episodes(val_eps, policy.tokenizer, config.budget)
        picked, table = calibrate_threshold(detect_all(policy, val), val, config.thresholds,
                                            config.calibration_tolerance)
        tau = picked if config.calibrate else tau
        report.update(validation=table)
    policy.config = dc.replace(policy.config, base_threshold=tau)
    report.update(base_threshold=tau)
    out = Path(config.output_dir)
    source = model if config.stage == 1 else None
    policy.save(out, lm_source=source, save_lm=config.stage == 2)
    (out / "mag_train.json").write_text(json.dumps(report, indent=2, default=float))
    if config.stage == 2:
        from thinkgym.training.grpo import copy_lineage

        copy_lineage(_lm_dir(model), out)
    return out


def _lm_dir(mag_dir: str | Path) -> Path:
    meta = json.loads((Path(mag_dir) / "mag_config.json").read_text())
    source = meta.get("lm")
    if source in (None, "."):
        return Path(mag_dir)
    from thinkgym.agents.llm import resolve_model_dir

    return resolve_model_dir(source)


def train_stage3(config: MAGTrainConfig, model: str, *, progress: bool = True) -> Path:
    """GRPO on SearchQA-v0 with the query reward, from a stage-2 dir; MAG weights copied."""
    from thinkgym.training.grpo import GRPOTrainConfig, train_grpo

    lm_dir = _lm_dir(model) if (Path(model) / "mag_config.json").is_file() else Path(model)
    weights = dict(config.env_kwargs.get("reward_weights", {}))
    weights["search_cost"] = config.search_cost_weight
    env_kwargs = {**config.env_kwargs, "reward_weights": weights}
    fields = {"env_id": "SearchQA-v0", "env_kwargs": env_kwargs, "max_steps": config.max_steps,
              "seed": config.seed, "output_dir": config.output_dir, "curves_every": 0,
              "first_seed": config.first_seed, **config.grpo}
    out = train_grpo(GRPOTrainConfig(**fields), str(lm_dir), progress=progress)
    src = Path(model)
    if (src / "mag_config.json").is_file():
        shutil.copy2(src / "mag.pt", out / "mag.pt")
        meta = json.loads((src / "mag_config.json").read_text())
        meta["lm"] = "."
        (out / "mag_config.json").write_text(json.dumps(meta, indent=2))
    else:
        logger.warning("%s is not a MAG directory: GRPO ran on the LM alone", model)
    return out


# -- CLI -------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``thinkgym train mag``."""
    parser.add_argument("--stage", type=int, choices=(1, 2, 3), required=True,
                        help="1: detection (LM frozen); 2: joint; 3: GRPO with the query reward")
    parser.add_argument("--model", default=None,
                        help="stage 1: LM dir or alias (default: the tiny model); stages 2-3: "
                        "the previous stage's output directory")
    parser.add_argument("--split", default="train", help="SearchQA-v0 question split")
    parser.add_argument("--env-arg", action="append", metavar="KEY=VALUE",
                        help="any other gym.make argument (repeatable; JSON values)")
    parser.add_argument("--episodes", type=int, default=MAGTrainConfig.num_episodes,
                        help="logged training episodes")
    parser.add_argument("--validation", type=int, default=MAGTrainConfig.num_validation,
                        help="logged validation episodes (threshold calibration)")
    parser.add_argument("--validation-entities", type=float,
                        default=MAGTrainConfig.validation_entity_fraction,
                        help="share of start entities whose questions are validation-only")
    parser.add_argument("--first-seed", type=int, default=0, help="first env seed")
    parser.add_argument("--budget", type=int, default=MAGTrainConfig.budget,
                        help="searches per logged episode")
    parser.add_argument("--steps", type=int, default=MAGTrainConfig.max_steps,
                        help="optimiser steps (stage 3: GRPO steps)")
    parser.add_argument("--batch-size", type=int, default=MAGTrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=MAGTrainConfig.learning_rate,
                        help="detection-channel learning rate")
    parser.add_argument("--lm-lr", type=float, default=MAGTrainConfig.lm_learning_rate,
                        help="stage 2: LM learning rate")
    parser.add_argument("--gamma", type=float, default=MAGTrainConfig.gamma)
    parser.add_argument("--step-cost", type=float, default=MAGTrainConfig.step_cost,
                        help="lambda: cost per reasoning step")
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                        help="base_threshold = the step cost instead of the value picked on "
                        "the validation episodes")
    parser.add_argument("--search-cost-weight", type=float, default=1.0,
                        help="stage 3: weight of the env's search_cost reward")
    parser.add_argument("--generations", type=int, default=2, help="stage 3: G per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="stage 3: tokens per turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/mag", help="output directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_mag)


def run_mag(args: argparse.Namespace) -> int:
    """``thinkgym train mag``."""
    from thinkgym.ctm_core.cli import parse_assignments
    from thinkgym.training.cli import TINY_GRPO_LR, TINY_MAX_NEW_TOKENS

    env_kwargs = {"split": args.split, **parse_assignments(args.env_arg, "--env-arg")}
    model = args.model
    tiny = False
    if model is None:
        if args.stage != 1:
            raise ConfigError("stages 2 and 3 start from the previous stage's output",
                              field="--model", got=None, fix="pass --model runs/mag-stage1")
        from thinkgym.agents.tiny import tiny_model_path

        model, tiny = str(tiny_model_path()), True
    else:
        tiny = (_lm_dir(model) if (Path(model) / "mag_config.json").is_file()
                else Path(model)).joinpath("thinkgym_tiny.json").is_file()
    grpo = {"num_generations": args.generations, "prompts_per_step": 1}
    if tiny:
        grpo.update(learning_rate=TINY_GRPO_LR, max_new_tokens=TINY_MAX_NEW_TOKENS,
                    max_completion_tokens=512)
    if args.max_new_tokens:
        grpo["max_new_tokens"] = args.max_new_tokens
    config = MAGTrainConfig(
        stage=args.stage, env_kwargs=env_kwargs, num_episodes=args.episodes,
        num_validation=args.validation, first_seed=args.first_seed, budget=args.budget,
        validation_entity_fraction=args.validation_entities,
        max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
        lm_learning_rate=args.lm_lr, gamma=args.gamma, step_cost=args.step_cost,
        calibrate=args.calibrate,
        search_cost_weight=args.search_cost_weight, grpo=grpo, seed=args.seed,
        output_dir=args.out)
    out = train_mag(config, model, progress=not args.no_progress)
    print(f"MAG stage {args.stage} saved to {out}")
    return 0

