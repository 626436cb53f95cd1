"""Claim under test: after a clean cold start, GRPO beats SFT given the same extra compute.

Issue 6's question, asked honestly on the tiny Qwen2 model (the same
save_pretrained path as DeepSeek-R1-Distill-Qwen-1.5B) on SearchQA-v0's easy
split:

1. **Stage 1, cold start** (``--cold-start oracle``, the default): SFT from the
   untrained model on episodes of SearchQA's scripted oracle, with
   ``min_reward`` dropping the oracle's failed episodes (``sft_episodes_kept``).
2. **Stage 2, two arms from the same stage-1 model and the same compute**:
   (a) SFT continued on fresh oracle episodes (new env seeds), (b) GRPO. Compute
   is the process CPU time (``time.process_time()``) of the arm, everything
   included (data, model loading, rollouts, optimiser steps); both arms run torch
   on ``--threads`` threads, and one :func:`cpu_budget` callback stops each arm
   when it has used ``--arm-cpu-minutes``. CPU time, not wall time, because the
   machine is shared and wall time depends on the neighbours; wall time is
   reported too.
3. **One test set for all three models**: the held-out seeds of the earlier runs
   (seeds from 1,000,000 up whose question is not among the stage-1 or GRPO
   questions), scored by exact match (EM, the env's success) and by a second
   metric, ``contains``: the normalised answer contains a normalised gold answer
   as a whole-word span (``The answer is 1818.`` contains ``1818``; ``18181`` does
   not).
4. **Hyperparameters on validation, never on test**: GRPO's learning rate and
   temperature and the continued SFT's learning rate were chosen in short pilots
   scored on a validation set (seeds from 2,000,000 up whose questions are outside
   training *and* test); ``--eval-set validation`` runs such a pilot, and
   ``--arms-from`` takes each arm's model from the pilot with the best validation
   EM and scores it on test (the committed run).
   Both arms are also scored on the first ``--probe-episodes`` validation
   seeds every ``--probe-every-minutes`` of arm CPU time (the probes' own time is
   taken off the arm's clock): the learning curves of ``grpo_learning.png``.

Target: ``em_grpo - em_sft_equal_compute >= 0.05`` (``target_met``).

GRPO diagnostics (``grpo_diagnostics``): per step, the fraction of groups whose
G episodes all got the same return (they carry no advantage; masked out with
``filter_zero_variance``), the mean within-group standard deviation of the return
(population std), the gradient norm, the policy entropy and the KL to the
reference model (only with ``--grpo-beta > 0``), from the trainer's log_history
and the rollout's episodes.

Result (``results/grpo_learning.json``, ``grpo_learning.png``): target not met.
Stage 1 kept 4,096 of 4,096 oracle episodes (``min_reward`` 0.5 dropped none: with
``top_k=1`` the oracle answers every easy question right) and reached 74.0% test EM
after 6,000 steps (13.1 CPU-minutes). From it, with 5 CPU-minutes each, continued
SFT reached 83.5% and GRPO 71.5%: GRPO - SFT at equal compute = -12.0 EM points
(``contains`` equals EM for every model, so no answer was right in substance but
wrong in form). The arms were planned at 12 CPU-minutes each, but two other timed
benchmarks held both cores (this one ran at nice 19). So the committed run scores
the 5-CPU-minute validation pilots on test (``--arms-from``; pilots in
``results/grpo_learning_pilots.json``), the budget the hyperparameters were chosen
at. Validation EM from stage 1's 76.0%: GRPO lr 1e-4 T=0.6 75.5%, **lr 1e-4 T=1.0
77.0%**, lr 3e-4 T=1.0 72.5%; continued SFT **lr 1e-3 87.5%**, lr 3e-3 76.0%.

Why GRPO adds nothing here:

- At T=0.6 the stage-1 policy is nearly deterministic (0.018 nats/token), so 83% of
  the groups score all G episodes the same and carry no advantage. At T=1.0 the
  figure is 50%, with a mean within-group return std of 0.21.
- A GRPO step costs ~1.7 CPU-s (32 episodes sampled token by token, then trained
  on), a continued-SFT step ~0.15. In the budget GRPO took 173 steps on 5,536
  sampled episodes (half of them in informative groups), SFT 2,050 steps on 16,400
  demonstrations.
- The errors left are wrong values: mostly another name or number altogether, a few
  near misses (1656 for 1658). EM gives one bit per episode; SFT labels every token
  of the right search and copy. By type, SFT gains on years (64 -> 73 of 77) and
  authors (13 -> 18 of 21); GRPO loses three year questions (64 -> 61).
- lr and T were chosen on validation. At lr 3e-4 GRPO's training EM fell, and at
  1e-4 it barely moved. The gradient norms (0.7-0.8) were under the clip of 1.0,
  and there is no KL term (beta 0).
- Batch- instead of group-scaled advantages were not measured: that pilot could
  not finish on the shared machine.

The chatty ablation (``--cold-start chatty``): the demonstrator is the oracle
that in 75% of episodes (``--chatty-rate``) writes its answer as a sentence,
``<answer> The answer is 1818. </answer>``, which EM scores 0. There SFT imitates
the habit and GRPO, which sees only the reward, unlearns it: SFT 1.0% -> GRPO 24.0%
held-out EM with the earlier version of this script
(``results/grpo_learning_chatty_cold_start.json``; seed 1:
``results/grpo_learning_seed1.json``). That shows RL optimises the verifier's reward
when the demonstrations are off-target; it is an ablation, not the headline, because
nobody would choose a cold start that the verifier scores 0.

Settings and why: a tiny Qwen2 of width 128 x 2 blocks (430k parameters);
``top_k=1`` passage per search and a 64-token prompt budget (cut from the left,
keeping the question: the from-scratch model cannot read the instructions and
learns the protocol from the demonstrations). Stage 1: 6,000 steps of 8 episodes
over 4,096 seeds, lr 3e-3 with cosine decay (copying digits is what takes long:
3,000 steps reached ~42% held-out EM in an earlier pilot; 6,000 is about 13
CPU-minutes on one thread). The continued SFT draws 8,192 fresh oracle episodes
(seeds from 200,000 up, test and validation questions excluded) and its learning
rate warms up and decays by a cosine over the CPU budget, not over steps, so the
schedule ends when the budget does. GRPO: G=8, four questions per step, DAPO loss,
group-scaled advantages, zero-variance groups masked, the env's default rewards, no
KL term, constant learning rate.

Rollout speed: ``group_speedup``, a group of G episodes played one by one over the same
group in lockstep (:func:`thinkgym.training.rollout.play_group` with ``envs``). The
rollout overhead (env steps against the same sampler without them) is its own claim,
measured by ``benchmarks/rollout_overhead.py`` (``results/rollout_overhead.json``); the
``rollout_overhead*`` keys in older JSON here (e.g. ``grpo_learning_chatty_cold_start.json``)
compared the rollout with ``model.generate``, a different decoder, and do not measure env
overhead.

    # everything in one process (stage 1, both arms at 12 CPU-minutes, test):
    nice -n 19 env HF_HUB_OFFLINE=1 python benchmarks/grpo_learning.py --threads 1 \\
        --json benchmarks/results/grpo_learning.json
    # a validation pilot from an existing stage-1 model (test seeds never scored):
    nice -n 19 env HF_HUB_OFFLINE=1 python benchmarks/grpo_learning.py --threads 1 \\
        --stage1-dir runs/bench_grpo_learning/stage1 --eval-set validation \\
        --arms grpo --arm-cpu-minutes 5 --grpo-lr 1e-4 --grpo-temperature 1.0 \\
        --base-eval-episodes 0 --overhead-episodes 0 --png runs/pilot.png \\
        --out-dir runs/pilot_g2 --json runs/pilot_g2/pilot.json
    # the committed run: each arm's best pilot (validation EM), scored on test
    nice -n 19 env HF_HUB_OFFLINE=1 python benchmarks/grpo_learning.py --threads 1 \\
        --stage1-dir runs/bench_grpo_learning/stage1 \\
        --arms-from runs/pilot_{g1,g2,g3,s1,s2}/pilot.json --arm-cpu-minutes 5 \\
        --probe-every-minutes 0 --base-eval-episodes 0 --overhead-episodes 0 \\
        --json benchmarks/results/grpo_learning.json

The full pilot commands are in docs/training.md ("What the CPU recipe shows").
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
EVAL_SEED_BASE = 1_000_000
VAL_SEED_BASE = 2_000_000
GRPO_SEED_BASE = 100_000
ARM_SFT_SEED_BASE = 200_000
CHATTY_PREFIX = "The answer is "
ARMS = ("sft", "grpo")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model dir (default: a tiny model, below)")
    p.add_argument("--hidden", type=int, default=128, help="tiny model width")
    p.add_argument("--layers", type=int, default=2, help="tiny model blocks")
    p.add_argument("--top-k", type=int, default=1, help="SearchQA passages per search")
    p.add_argument("--max-prompt-tokens", type=int, default=64,
                   help="prompt budget (cut from the left: the question is kept)")
    p.add_argument("--cold-start", choices=("oracle", "chatty"), default="oracle",
                   help="demonstrator of both SFT stages: the scripted oracle, or (ablation) the "
                   "oracle answering in a sentence with probability --chatty-rate")
    p.add_argument("--chatty-rate", type=float, default=0.75)
    p.add_argument("--min-reward", type=float, default=0.5,
                   help="oracle cold start: drop demonstrations whose return is below this "
                   "(a correct answer returns >= 0.6, a wrong one <= 0.2); not applied to "
                   "the chatty ablation, whose sentence answers all return ~0.1")
    p.add_argument("--sft-episodes", type=int, default=4096, help="stage 1: env seeds 0..N-1")
    p.add_argument("--sft-steps", type=int, default=6000, help="stage 1 optimiser steps")
    p.add_argument("--sft-lr", type=float, default=3e-3, help="stage 1 peak lr (cosine)")
    p.add_argument("--stage1-dir", default=None,
                   help="reuse the stage-1 model an earlier run of this script saved (its "
                   "bench_stage1.json holds its costs) instead of training it again")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    p.add_argument("--arms-from", nargs="+", default=None, metavar="PILOT_JSON",
                   help="instead of training the arms, take each arm's model from the "
                   "validation pilot (a --json of an --eval-set validation run on the same "
                   "--stage1-dir) with the best validation EM, and score it on test")
    p.add_argument("--arm-cpu-minutes", type=float, default=12.0,
                   help="process CPU time of each stage-2 arm")
    p.add_argument("--arm-sft-lr", type=float, default=1e-3,
                   help="continued SFT: peak lr of a fresh cosine schedule")
    p.add_argument("--arm-sft-episodes", type=int, default=8192,
                   help="continued SFT: fresh oracle episodes (cycled if the budget allows "
                   "more steps than one pass)")
    p.add_argument("--grpo-prompts", type=int, default=1024)
    p.add_argument("--grpo-lr", type=float, default=1e-4)
    p.add_argument("--grpo-temperature", type=float, default=1.0)
    p.add_argument("--grpo-beta", type=float, default=0.0, help="KL coefficient")
    p.add_argument("--grpo-scale-rewards", choices=("group", "batch", "none"), default="group")
    p.add_argument("--grpo-reward-weights", default="",
                   help="SearchQA reward_weights for GRPO's env only, e.g. format=0,search_cost=0 "
                   "(evaluation always uses the env's defaults)")
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--eval-set", choices=("test", "validation"), default="test",
                   help="score the final models on the test seeds, or (pilots) on validation")
    p.add_argument("--eval-episodes", type=int, default=200, help="test questions")
    p.add_argument("--val-episodes", type=int, default=200, help="validation questions")
    p.add_argument("--probe-episodes", type=int, default=100,
                   help="validation questions scored during the arms (learning curves)")
    p.add_argument("--probe-every-minutes", type=float, default=3.0,
                   help="arm CPU minutes between validation probes (0: none)")
    p.add_argument("--base-eval-episodes", type=int, default=50,
                   help="the untrained model: first N test seeds (it rambles to the budget)")
    p.add_argument("--eval-temperature", type=float, default=0.6)
    p.add_argument("--overhead-episodes", type=int, default=16,
                   help="0: skip the group speed-up measurement (any other value runs it)")
    p.add_argument("--overhead-rounds", type=int, default=3, help="group speed-up rounds")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads for everything (training, generation, retrieval)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of SFT, GRPO and the chatty draws (the model and eval sets stay)")
    p.add_argument("--out-dir", default="runs/bench_grpo_learning")
    p.add_argument("--png", default=str(RESULTS / "grpo_learning.png"))
    p.add_argument("--json", default=None)
    p.add_argument("--smoke", action="store_true", help="minutes-long run of every phase")
    p.add_argument("--overhead-model", default=None,
                   help="only measure the group speed-up with this model dir and update the "
                   "group_* keys of --json (rollout overhead: benchmarks/rollout_overhead.py)")
    return p.parse_args()


def reward_weights(text: str) -> dict[str, float]:
    """``"format=0,search_cost=0"`` -> ``{"format": 0.0, "search_cost": 0.0}``."""
    pairs = [kv.split("=") for kv in text.split(",") if kv.strip()]
    return {k.strip(): float(v) for k, v in pairs}


class ChattyOracle:
    """SearchQA's oracle, but with probability ``rate`` it answers in a sentence.

    ``<answer> 1818 </answer>`` becomes ``<answer> The answer is 1818. </answer>``: the
    same search, the same passage read, the same value copied, in a form exact match
    scores 0 (F1 gives partial credit). Which answers are chatty is drawn per episode
    from ``seed``, so the SFT data is fixed.
    """

    def __init__(self, rate: float, seed: int = 0) -> None:
        import numpy as np

        from thinkgym.agents.search_qa import OracleAgent

        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"chatty rate must lie in [0, 1], got {rate}")
        self.rate, self._oracle = rate, OracleAgent()
        self._rng = np.random.default_rng([seed, 5])
        self._chatty = False

    def reset(self) -> None:
        self._oracle.reset()
        self._chatty = bool(self._rng.random() < self.rate)

    def act(self, observation: str) -> str:
        action = self._oracle.act(observation)
        head, sep, rest = action.partition("<answer>")
        if not (sep and self._chatty):
            return action
        answer, close, tail = rest.partition("</answer>")
        return f"{head}<answer>{CHATTY_PREFIX}{answer.strip()}.{close}{tail}"


# -- seeds and the second metric ----------------------------------------------------------
def question_ids(env: Any, seeds: range | list[int]) -> set[str]:
    return {env.reset(seed=s)[1]["question_id"] for s in seeds}


def held_out_seeds(env: Any, n: int, exclude: set[str], start: int) -> list[int]:
    """The first ``n`` seeds from ``start`` with distinct questions outside ``exclude``."""
    seeds, seen, s = [], set(), start
    while len(seeds) < n:
        qid = env.reset(seed=s)[1]["question_id"]
        if qid not in exclude and qid not in seen:
            seeds.append(s)
            seen.add(qid)
        s += 1
    return seeds


def fresh_seeds(env: Any, n: int, exclude: set[str], start: int) -> list[int]:
    """``n`` training seeds from ``start`` whose question is outside ``exclude`` (repeats
    allowed: they are new episodes, and the stage-1 questions may recur)."""
    seeds, s = [], start
    while len(seeds) < n:
        if env.reset(seed=s)[1]["question_id"] not in exclude:
            seeds.append(s)
        s += 1
    return seeds


def gold_answers(env: Any, seeds: list[int]) -> list[tuple[str, ...]]:
    golds = []
    for s in seeds:
        env.reset(seed=s)
        golds.append(tuple(env.unwrapped.question.answers))
    return golds


def contains_gold(answer: str | None, golds: tuple[str, ...]) -> bool:
    """The normalised answer holds a normalised gold answer as whole words.

    >>> contains_gold("The answer is 1,818.", ("1818",)), contains_gold("18181", ("1818",))
    (True, False)
    """
    from thinkgym.rewards.correctness import normalize_answer

    text = f" {normalize_answer(answer or '')} "
    return any(g and f" {g} " in text for g in map(normalize_answer, golds))


def evaluate(model: Any, tok: Any, env: Any, seeds: list[int], golds: list[tuple[str, ...]],
             args: argparse.Namespace) -> dict[str, Any]:
    from thinkgym.training.evaluate import evaluate_policy

    was_training = model.training
    model.eval()
    cpu = time.process_time()
    r = evaluate_policy(model, tok, env, seeds, temperature=args.eval_temperature,
                        max_new_tokens=64, max_prompt_tokens=args.max_prompt_tokens,
                        max_completion_tokens=512, seed=0)
    model.train(was_training)
    n = max(1, r.episodes)
    return {"em": r.success, "contains": sum(map(contains_gold, r.answers, golds)) / n,
            "f1": r.components.get("f1"), "mean_reward": r.mean_reward,
            "sentence_answers": sum(a is not None and a.startswith(CHATTY_PREFIX)
                                    for a in r.answers) / n,
            "format": r.format_rate, "turns": r.mean_turns,
            "completion_tokens": r.mean_completion_tokens, "seconds": r.seconds,
            "cpu_seconds": time.process_time() - cpu, "episodes": r.episodes}


def evaluate_dir(path: Path, env: Any, seeds: list[int], golds: list[tuple[str, ...]],
                 args: argparse.Namespace) -> dict[str, Any]:
    from thinkgym.agents.llm import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(path))
    return evaluate(model, tok, env, seeds, golds, args)


# -- the compute budget and the diagnostics ------------------------------------------------
class _CpuBudget:
    """The logic of :func:`cpu_budget` (mixed into a ``TrainerCallback`` there)."""

    def __init__(self, seconds: float, probe: Any, probe_every: float, cosine_lr: float | None,
                 warmup: float) -> None:
        self.seconds, self.probe, self.probe_every = seconds, probe, probe_every
        self.cosine_lr, self.warmup = cosine_lr, warmup
        self.start, self.wall_start = time.process_time(), time.perf_counter()
        self.excluded = self.excluded_wall = 0.0
        self.next_probe = probe_every
        self.curve: list[dict[str, Any]] = []
        self.steps, self.stopped_by_budget, self.lr = 0, False, 0.0

    def used(self) -> float:
        return time.process_time() - self.start - self.excluded

    def wall(self) -> float:
        return time.perf_counter() - self.wall_start - self.excluded_wall

    def run_probe(self, model: Any, tok: Any, step: int) -> None:
        used, cpu, wall = self.used(), time.process_time(), time.perf_counter()
        self.curve.append({"cpu_seconds": used, "step": step, **self.probe(model, tok)})
        self.excluded += time.process_time() - cpu
        self.excluded_wall += time.perf_counter() - wall

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any,
                              optimizer: Any = None, **kw: Any) -> None:
        if self.cosine_lr is None or optimizer is None:
            return
        frac = min(1.0, self.used() / self.seconds)
        self.lr = (self.cosine_lr * min(1.0, frac / self.warmup)
                   * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in optimizer.param_groups:
            group["lr"] = self.lr

    def on_log(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        # The trainer logs its (constant) scheduler's rate; log the one applied instead.
        if self.cosine_lr is not None and state.log_history:
            state.log_history[-1]["learning_rate"] = self.lr

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None,
                    processing_class: Any = None, **kw: Any) -> None:
        self.steps = state.global_step
        if self.probe is not None and self.probe_every and self.used() >= self.next_probe:
            self.run_probe(model, processing_class, state.global_step)
            while self.next_probe <= self.used():
                self.next_probe += self.probe_every
        if self.used() >= self.seconds:
            control.should_training_stop = True
            self.stopped_by_budget = True


def cpu_budget(seconds: float, probe: Any = None, probe_every: float = 0.0,
               cosine_lr: float | None = None, warmup: float = 0.03) -> Any:
    """A TrainerCallback that stops training once the arm has used ``seconds`` of CPU.

    The clock starts when the callback is made: build it before the arm's data and
    model so that they count. Every ``probe_every`` CPU seconds ``probe(model, tok)``
    scores the model (validation); its time is taken off the clock. With
    ``cosine_lr`` it also sets the learning rate before each optimiser step: linear
    warm-up over the first ``warmup`` of the budget, then cosine decay to 0 at the
    budget's end, so the schedule ends when the budget does however fast the steps
    run (train with a constant scheduler: this overrides it).
    """
    from transformers import TrainerCallback

    class CpuBudget(_CpuBudget, TrainerCallback):
        pass

    return CpuBudget(seconds, probe, probe_every, cosine_lr, warmup)


def group_stats(g: int) -> Any:
    """A TrainerCallback recording, per GRPO step, the groups' return spread (set
    ``.rollout`` to the trainer's EnvRollout after building the trainer)."""
    from transformers import TrainerCallback

    class GroupStats(TrainerCallback):
        def __init__(self) -> None:
            self.rollout: Any = None
            self.rows: list[dict[str, float]] = []

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            episodes = getattr(self.rollout, "last_episodes", [])
            groups = [episodes[i:i + g] for i in range(0, len(episodes), g)]
            if not groups:
                return
            stds = [statistics.pstdev([e.reward for e in grp]) for grp in groups]
            em = [e.reward_components.get("exact_match") or 0.0 for e in episodes]
            self.rows.append({"step": state.global_step,
                              "zero_variance_groups": sum(s <= 1e-9 for s in stds) / len(stds),
                              "group_reward_std": statistics.mean(stds),
                              "train_em": statistics.mean(em)})

    return GroupStats()


def grpo_diagnostics(rows: list[dict[str, float]], log: list[dict[str, Any]]) -> dict[str, Any]:
    def mean_of(values: list[float]) -> float | None:
        values = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
        return statistics.mean(values) if values else None

    out: dict[str, Any] = {
        "zero_variance_group_fraction": mean_of([r["zero_variance_groups"] for r in rows]),
        "group_reward_std_mean": mean_of([r["group_reward_std"] for r in rows]),
        "train_em_first_quarter": mean_of([r["train_em"] for r in rows[:max(1, len(rows) // 4)]]),
        "train_em_last_quarter": mean_of([r["train_em"] for r in rows[-max(1, len(rows) // 4):]]),
        "per_step": rows}
    for key in ("grad_norm", "kl", "entropy", "reward", "reward_std", "frac_reward_zero_std",
                "clip_ratio/region_mean"):
        values = [e[key] for e in log if key in e]
        out[f"{key.replace('/', '_')}_mean"] = mean_of(values)
        if key in ("grad_norm", "kl", "entropy"):
            out[f"{key}_per_step"] = values
    return out


# -- stage 1 and the two arms --------------------------------------------------------------
def pilot_arm(paths: list[str], arm: str, stage1_dir: str) -> tuple[Path, dict[str, Any]]:
    """``arm``'s model and record from the validation pilot with the best validation EM."""
    name = "sft_equal_compute" if arm == "sft" else "grpo"
    pilots = {p: json.loads(Path(p).read_text()) for p in paths}
    pilots = {p: d for p, d in pilots.items() if d.get("eval_set") == "validation"
              and name in d.get("arms", {}) and Path(d["settings"]["stage1_dir"] or Path(
                  d["settings"]["out_dir"]) / "stage1") == Path(stage1_dir)}
    if not pilots:
        raise SystemExit(f"no validation pilot of the {arm} arm from {stage1_dir} in {paths}")
    path, best = max(pilots.items(), key=lambda kv: kv[1][f"em_{name}"])
    out = Path(best["settings"]["out_dir"]) / f"arm_{arm}"
    info = {**best["arms"][name], "pilot": path, "val_em": best[f"em_{name}"],
            "curve_start": best["val_curve_start"],
            "val_em_of_candidates": {p: d[f"em_{name}"] for p, d in pilots.items()},
            "log_history": json.loads((out / "trainer_state.json").read_text())["log_history"]}
    if arm == "grpo":
        info["diagnostics"] = {**best["grpo_diagnostics"], **best["grpo_diagnostics_per_step"]}
    return out, info


def save(trainer: Any, out: Path, source: Path) -> Path:
    """What ``train_sft``/``train_grpo`` save: model, tokenizer, log history, lineage."""
    from thinkgym.training.grpo import copy_lineage

    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    trainer.state.save_to_json(str(out / "trainer_state.json"))
    copy_lineage(source, out)
    return out


def demonstrator(args: argparse.Namespace) -> Any:
    return ChattyOracle(args.chatty_rate, seed=args.seed) if args.cold_start == "chatty" else None


def sft_config(args: argparse.Namespace, env_kwargs: dict, out: Path, **kw: Any) -> Any:
    from thinkgym.training.sft import SFTTrainConfig

    kw = {"lr_scheduler_type": "cosine", "warmup_ratio": 0.03, **kw}
    return SFTTrainConfig(
        env_id="SearchQA-v0", env_kwargs=env_kwargs, per_device_batch_size=8,
        max_completion_tokens=512,
        max_prompt_tokens=args.max_prompt_tokens, output_dir=str(out), logging_steps=10,
        seed=args.seed, min_reward=args.min_reward if args.cold_start == "oracle" else None, **kw)


def stage1(args: argparse.Namespace, env: Any, env_kwargs: dict, base: Path) -> dict[str, Any]:
    """Cold-start SFT from ``base``; returns its costs (also saved as bench_stage1.json)."""
    from thinkgym.agents.llm import load_model_and_tokenizer
    from thinkgym.training.sft import build_sft_trainer, oracle_episodes, quiet_trainer

    cpu, wall = time.process_time(), time.perf_counter()
    out = Path(args.out_dir) / "stage1"
    cfg = sft_config(args, env_kwargs, out, num_episodes=args.sft_episodes,
                     max_steps=args.sft_steps, learning_rate=args.sft_lr)
    _, tok = load_model_and_tokenizer(str(base))
    render = time.process_time()
    episodes = oracle_episodes(cfg, tok, env, progress=False, policy=demonstrator(args))
    render = time.process_time() - render
    trainer = build_sft_trainer(cfg, base, episodes=episodes, progress=False)
    quiet_trainer(trainer)
    train = time.process_time()
    trainer.train()
    train = time.process_time() - train
    save(trainer, out, base)
    meta = {"dir": str(out), "episodes": args.sft_episodes, "episodes_kept": len(episodes),
            "min_reward": cfg.min_reward, "steps": trainer.state.global_step,
            "cpu_seconds": time.process_time() - cpu, "wall_seconds": time.perf_counter() - wall,
            "render_cpu_per_episode": render / args.sft_episodes,
            "train_cpu_per_step": train / max(1, trainer.state.global_step),
            "lr": args.sft_lr, "cold_start": args.cold_start, "threads": args.threads}
    (out / "bench_stage1.json").write_text(json.dumps(meta, indent=1))
    return meta


def arm_sft(args: argparse.Namespace, env: Any, env_kwargs: dict, s1: dict[str, Any],
            exclude: set[str], probe: Any) -> tuple[Path, dict[str, Any]]:
    """(a) SFT continued from stage 1 on fresh oracle episodes for the CPU budget."""
    from thinkgym.agents.llm import load_model_and_tokenizer
    from thinkgym.training.sft import build_sft_trainer, oracle_episodes, quiet_trainer

    budget = cpu_budget(60 * args.arm_cpu_minutes, probe, 60 * args.probe_every_minutes,
                        cosine_lr=args.arm_sft_lr)
    n_eps = args.arm_sft_episodes
    out = Path(args.out_dir) / "arm_sft"
    # The budget stops the run and schedules the lr (cosine over CPU time, not steps).
    cfg = sft_config(args, env_kwargs, out, num_episodes=n_eps, max_steps=10**7,
                     learning_rate=args.arm_sft_lr, lr_scheduler_type="constant",
                     warmup_ratio=0.0)
    _, tok = load_model_and_tokenizer(s1["dir"])
    seeds = fresh_seeds(env, n_eps, exclude, ARM_SFT_SEED_BASE)
    episodes = oracle_episodes(cfg, tok, env, seeds=seeds, progress=False,
                               policy=demonstrator(args))
    trainer = build_sft_trainer(cfg, s1["dir"], episodes=episodes, progress=False)
    quiet_trainer(trainer)
    trainer.add_callback(budget)
    trainer.train()
    cpu, wall = budget.used(), budget.wall()
    save(trainer, out, Path(s1["dir"]))
    if probe is not None and not (budget.curve and budget.curve[-1]["step"] == budget.steps):
        budget.run_probe(trainer.model, tok, trainer.state.global_step)
    return out, {"cpu_seconds": cpu, "wall_seconds": wall, "steps": trainer.state.global_step,
                 "epochs": trainer.state.epoch, "episodes": n_eps,
                 "episodes_kept": len(episodes), "lr": args.arm_sft_lr,
                 "stopped_by_budget": budget.stopped_by_budget, "curve": budget.curve,
                 "log_history": trainer.state.log_history}


def arm_grpo(args: argparse.Namespace, env_kwargs: dict, s1: dict[str, Any],
             probe: Any) -> tuple[Path, dict[str, Any]]:
    """(b) GRPO from stage 1 for the CPU budget."""
    from thinkgym.training.grpo import GRPOTrainConfig, build_trainer
    from thinkgym.training.sft import quiet_trainer

    budget = cpu_budget(60 * args.arm_cpu_minutes, probe, 60 * args.probe_every_minutes)
    stats = group_stats(args.generations)
    out = Path(args.out_dir) / "arm_grpo"
    cfg = GRPOTrainConfig(
        env_id="SearchQA-v0", num_prompts=args.grpo_prompts,
        env_kwargs={**env_kwargs, "reward_weights": reward_weights(args.grpo_reward_weights)},
        first_seed=GRPO_SEED_BASE, num_generations=args.generations,
        prompts_per_step=args.prompts_per_step, max_steps=100_000,  # the budget stops it
        learning_rate=args.grpo_lr, temperature=args.grpo_temperature, beta=args.grpo_beta,
        scale_rewards=args.grpo_scale_rewards, max_new_tokens=64,
        max_prompt_tokens=args.max_prompt_tokens, max_completion_tokens=512,
        filter_zero_variance=True, num_threads=args.threads, output_dir=str(out),
        seed=args.seed, logging_steps=1, curves_every=0)
    trainer = build_trainer(cfg, s1["dir"], callbacks=[budget, stats])
    stats.rollout = trainer.rollout_func
    quiet_trainer(trainer)
    trainer.train()
    cpu, wall = budget.used(), budget.wall()
    save(trainer, out, Path(s1["dir"]))
    if probe is not None and not (budget.curve and budget.curve[-1]["step"] == budget.steps):
        budget.run_probe(trainer.model, trainer.processing_class, trainer.state.global_step)
    log = trainer.state.log_history
    return out, {"cpu_seconds": cpu, "wall_seconds": wall, "steps": trainer.state.global_step,
                 "episodes": trainer.state.global_step * cfg.per_device_batch_size,
                 "lr": args.grpo_lr, "temperature": args.grpo_temperature,
                 "beta": args.grpo_beta, "scale_rewards": args.grpo_scale_rewards,
                 "stopped_by_budget": budget.stopped_by_budget, "curve": budget.curve,
                 "diagnostics": grpo_diagnostics(stats.rows, log), "log_history": log}
def _gens(r: int, g: int) -> list[Any]:
    import torch

    return [torch.Generator().manual_seed(r * 100 + i) for i in range(g)]


def group_speedup(path: Path, env: Any, seeds: list[int], g: int, rounds: int,
                  temperature: float, max_prompt_tokens: int) -> dict[str, Any]:
    """Wall time of a GRPO group played one episode after another over the same group in
    lockstep (:func:`play_group` with ``envs``): same seeds, generators and episodes."""

    from thinkgym.agents.llm import LLMPolicy, LLMPolicyConfig, load_model_and_tokenizer
    from thinkgym.training.rollout import clone_env, play_group

    model, tok = load_model_and_tokenizer(str(path))
    model.eval()
    policy = LLMPolicy(model, tok, LLMPolicyConfig(model=str(path), temperature=temperature,
                                                   top_p=1.0, max_new_tokens=64,
                                                   max_context_tokens=2560))
    envs = [env] + [clone_env(env) for _ in range(g - 1)]
    kw = {"max_prompt_tokens": max_prompt_tokens, "max_completion_tokens": 512}
    ratios, same = [], 0
    for r in range(rounds):
        t_seq = t_bat = 0.0
        for seed in seeds:
            t = time.perf_counter()
            seq = play_group(env, policy, seed=seed, n=g, generators=_gens(r, g), **kw)
            t_seq += time.perf_counter() - t
            t = time.perf_counter()
            bat = play_group(env, policy, seed=seed, n=g, generators=_gens(r, g), envs=envs, **kw)
            t_bat += time.perf_counter() - t
            same += sum(a.completion_ids == b.completion_ids
                        for a, b in zip(seq, bat, strict=True))
        ratios.append(t_seq / t_bat)
    return {"group_speedup": min(ratios), "group_speedup_median": statistics.median(ratios),
            "group_speedup_rounds": ratios, "group_size": g,
            "group_identical_episodes": same / (rounds * len(seeds) * g)}


def update_overhead(args: argparse.Namespace, env: Any, seeds: list[int]) -> None:
    """``--overhead-model``: re-measure the group speed-up and merge it into ``--json``."""
    over = group_speedup(Path(args.overhead_model), env, seeds[:4], args.generations,
                         args.overhead_rounds, args.grpo_temperature, args.max_prompt_tokens)
    for key, value in over.items():
        print(f"{key}: {value}")
    if args.json:
        path = Path(args.json)
        result = json.loads(path.read_text()) if path.is_file() else {}
        result.update(over, group_speedup_model=args.overhead_model,
                      group_speedup_load_avg=os.getloadavg())
        path.write_text(json.dumps(result, indent=1, sort_keys=True, default=str))


def _smooth(ys: list[float], k: int = 10) -> list[float]:
    return [statistics.mean(ys[max(0, i - k + 1):i + 1]) for i in range(len(ys))]


def plot(result: dict[str, Any], details: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from thinkgym.training.curves import series

    fig, ax = plt.subplots(1, 4, figsize=(20, 4))
    colors = {"sft": "#69c", "grpo": "#c63"}
    start = details.get("stage1_probe") or {}
    for arm in ARMS:
        curve = details.get(f"arm_{arm}", {}).get("curve", [])
        if not curve:
            continue
        pts = ([{"cpu_seconds": 0.0, **start}] if start else []) + curve
        xs = [p["cpu_seconds"] / 60 for p in pts]
        ax[0].plot(xs, [100 * p["em"] for p in pts], "o-", color=colors[arm], label=f"{arm} EM")
        ax[0].plot(xs, [100 * p["contains"] for p in pts], "x--", color=colors[arm],
                   label=f"{arm} contains")
    ax[0].set_title("validation % during the arms (from the same stage-1 model)")
    ax[0].set_xlabel("arm CPU minutes")
    stages = [s for s in ("sft", "sft_equal_compute", "grpo") if f"em_{s}" in result]
    xs = range(len(stages))
    ax[1].bar([x - 0.2 for x in xs], [100 * result[f"em_{s}"] for s in stages], 0.4, label="EM",
              color="#69c")
    ax[1].bar([x + 0.2 for x in xs], [100 * result[f"contains_{s}"] for s in stages], 0.4,
              label="contains gold", color="#9c6")
    ax[1].set_xticks(list(xs), ["stage 1" if s == "sft" else s.replace("_", " ")
                                for s in stages], fontsize=8)
    ax[1].set_title(f"{result['eval_set']} % ({result['eval_episodes']} questions, "
                    f"T={result['eval_temperature']})")
    for name, log in (("stage 1", details.get("stage1_log", [])),
                      ("continued SFT", details.get("arm_sft", {}).get("log_history", []))):
        ax[2].plot(*series(log, "loss"), label=f"{name} loss")
    ax[2].set_title("SFT loss (agent tokens; each run from step 0)")
    rows = details.get("arm_grpo", {}).get("diagnostics", {}).get("per_step", [])
    if rows:
        steps = [r["step"] for r in rows]
        for key in ("train_em", "zero_variance_groups", "group_reward_std"):
            ax[3].plot(steps, _smooth([r[key] for r in rows]), label=key)
    ax[3].set_title("GRPO per step (moving average 10)")
    for a in ax:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
        a.grid(alpha=0.3)
    for a in ax[2:]:
        a.set_xlabel("step")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(res: dict[str, dict[str, Any]], result: dict[str, Any]) -> None:
    print(f"{'model':<20}{'EM':>7}{'contains':>10}{'F1':>7}{'return':>8}{'sentence':>10}"
          f"{'turns':>7}{'CPU s':>8}{'wall s':>8}{'steps':>7}")
    for name, r in res.items():
        print(f"{name:<20}{r['em']:>7.3f}{r['contains']:>10.3f}{r['f1'] or 0:>7.3f}"
              f"{r['mean_reward']:>8.3f}{r['sentence_answers']:>10.3f}{r['turns']:>7.2f}"
              f"{r.get('train_cpu', 0):>8.0f}{r.get('train_wall', 0):>8.0f}"
              f"{r.get('steps', 0):>7}")
    if "em_grpo" in result and "em_sft_equal_compute" in result:
        print(f"GRPO - SFT at equal compute: {result['em_gain_points']:+.1f} EM points, "
              f"{result['contains_gain_points']:+.1f} contains points "
              f"(target +5 EM: {'met' if result['target_met'] else 'not met'})")


def main() -> None:  # noqa: C901  (one pipeline, read top to bottom)
    args = parse_args()
    if args.smoke:
        args.sft_episodes, args.sft_steps, args.grpo_prompts = 16, 4, 8
        args.arm_sft_episodes, args.arm_cpu_minutes, args.probe_every_minutes = 16, 0.3, 0.15
        args.eval_episodes, args.val_episodes, args.probe_episodes = 6, 6, 4
        args.base_eval_episodes, args.overhead_episodes, args.overhead_rounds = 3, 2, 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no CPU outside the torch threads
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Every prompt is cut to --max-prompt-tokens on purpose (the tiny model cannot read the
    # protocol instructions; it learns the protocol from the oracle): one warning per episode.
    logging.getLogger("thinkgym.agents.llm").setLevel(logging.ERROR)
    # Episodes cut by the token budget are counted (rollout/context_truncated), not logged.
    logging.getLogger("thinkgym.training.rollout").setLevel(logging.ERROR)
    import torch

    from thinkgym.agents.llm import load_model_and_tokenizer
    from thinkgym.agents.tiny import TinyModelConfig, tiny_model_path
    from thinkgym.training.grpo import GRPOTrainConfig, make_env

    # Both arms (and everything else) on the same number of threads: CPU seconds are then
    # comparable between them whatever else the machine is doing.
    torch.set_num_threads(args.threads)
    cpu0, t0 = time.process_time(), time.perf_counter()
    env_kwargs = {"split": "easy", "top_k": args.top_k}
    tiny = TinyModelConfig(hidden_size=args.hidden, num_layers=args.layers,
                           intermediate_size=2 * args.hidden)
    base = Path(args.model) if args.model else tiny_model_path(tiny)
    env = make_env(GRPOTrainConfig(env_id="SearchQA-v0", env_kwargs=env_kwargs))
    trained = question_ids(env, range(args.sft_episodes)) | question_ids(
        env, range(GRPO_SEED_BASE, GRPO_SEED_BASE + args.grpo_prompts))
    test = held_out_seeds(env, args.eval_episodes, trained, EVAL_SEED_BASE)
    if args.overhead_model:
        update_overhead(args, env, test)
        return
    val = held_out_seeds(env, args.val_episodes, trained | question_ids(env, test),
                         VAL_SEED_BASE)
    exclude = question_ids(env, test) | question_ids(env, val)  # never trained on
    seeds = test if args.eval_set == "test" else val
    golds = gold_answers(env, seeds)
    probe_seeds = val[:args.probe_episodes]
    probe_golds = gold_answers(env, probe_seeds)

    def probe(model: Any, tok: Any) -> dict[str, float]:
        r = evaluate(model, tok, env, probe_seeds, probe_golds, args)
        return {"em": r["em"], "contains": r["contains"]}

    res: dict[str, dict[str, Any]] = {}
    details: dict[str, Any] = {}
    wall: dict[str, float] = {}
    if args.eval_set == "test" and args.base_eval_episodes:
        res["base"] = evaluate_dir(base, env, test[:args.base_eval_episodes],
                                   golds[:args.base_eval_episodes], args)

    if args.stage1_dir:
        s1 = json.loads((Path(args.stage1_dir) / "bench_stage1.json").read_text())
        if s1["cold_start"] != args.cold_start:
            raise SystemExit(f"--stage1-dir was made with --cold-start {s1['cold_start']}")
        s1["reused"] = True
    else:
        s1 = stage1(args, env, env_kwargs, base)
    details["stage1_log"] = json.loads(
        (Path(s1["dir"]) / "trainer_state.json").read_text())["log_history"]
    model, tok = load_model_and_tokenizer(s1["dir"])
    res["sft"] = {**evaluate(model, tok, env, seeds, golds, args), "steps": s1["steps"],
                  "train_cpu": s1["cpu_seconds"], "train_wall": s1["wall_seconds"]}
    details["stage1_probe"] = probe(model, tok) if args.probe_every_minutes else {}
    wall["stage1"] = s1["wall_seconds"]

    arm_dirs: dict[str, Path] = {}
    for arm in args.arms:
        name = "sft_equal_compute" if arm == "sft" else "grpo"
        if args.arms_from:
            arm_dirs[arm], info = pilot_arm(args.arms_from, arm, args.stage1_dir)
        elif arm == "sft":
            arm_dirs[arm], info = arm_sft(args, env, env_kwargs, s1, exclude,
                                          probe if args.probe_every_minutes else None)
        else:
            arm_dirs[arm], info = arm_grpo(args, env_kwargs, s1,
                                           probe if args.probe_every_minutes else None)
        details[f"arm_{arm}"] = info
        wall[name] = info["wall_seconds"]
        res[name] = {**evaluate_dir(arm_dirs[arm], env, seeds, golds, args),
                     "steps": info["steps"], "train_cpu": info["cpu_seconds"],
                     "train_wall": info["wall_seconds"]}

    if args.arms_from and not details["stage1_probe"]:  # the pilots probed stage 1 already
        details["stage1_probe"] = details[f"arm_{args.arms[0]}"]["curve_start"]
    result: dict[str, Any] = {"eval_set": args.eval_set, "cold_start": args.cold_start}
    for name, r in res.items():
        for key in ("em", "contains", "f1", "sentence_answers"):
            result[f"{key}_{name}"] = r[key]
        result[f"reward_{name}"] = r["mean_reward"]
    if "grpo" in res and "sft_equal_compute" in res:
        gain = res["grpo"]["em"] - res["sft_equal_compute"]["em"]
        result.update(em_gain_points=100 * gain, target_em_gain_points=5.0,
                      target_met=gain >= 0.05 - 1e-9, contains_gain_points=100 * (
                          res["grpo"]["contains"] - res["sft_equal_compute"]["contains"]))
    if "grpo" in res:
        result["em_gain_grpo_over_sft_points"] = 100 * (res["grpo"]["em"] - res["sft"]["em"])
        result["grpo_diagnostics"] = {k: v for k, v in details["arm_grpo"]["diagnostics"].items()
                                      if not k.endswith("per_step")}
    arms = {("sft_equal_compute" if a == "sft" else a): details[f"arm_{a}"] for a in args.arms}
    result.update(
        cpu_seconds_per_arm={k: v["cpu_seconds"] for k, v in arms.items()},
        cpu_budget_seconds_per_arm=60 * args.arm_cpu_minutes,
        wall_seconds=wall, threads=args.threads,
        arms={k: {kk: vv for kk, vv in v.items() if kk not in ("log_history", "diagnostics")}
              for k, v in arms.items()},
        stage1={k: v for k, v in s1.items() if k != "dir"},
        sft_episodes_kept=s1["episodes_kept"], sft_episodes=s1["episodes"],
        val_curve_start=details["stage1_probe"],
        eval_episodes=len(seeds), eval_temperature=args.eval_temperature,
        eval_seeds=(f"{len(seeds)} seeds >= {EVAL_SEED_BASE} with questions outside training"
                    if args.eval_set == "test" else
                    f"{len(seeds)} validation seeds >= {VAL_SEED_BASE}, questions outside "
                    "training and test"),
        probe_episodes=len(probe_seeds), val_episodes=len(val),
        contains_metric="normalised answer contains a normalised gold answer as whole words",
        details={k: {kk: vv for kk, vv in v.items()} for k, v in res.items()},
        settings={k: v for k, v in vars(args).items() if k not in ("json", "png")},
        env={"id": "SearchQA-v0", **env_kwargs}, model=str(base),
        total_cpu_seconds=time.process_time() - cpu0, total_seconds=time.perf_counter() - t0,
        machine={"cpus": os.cpu_count(), "load_avg_end": os.getloadavg(),
                 "torch": torch.__version__, "python": platform.python_version()})
    if "grpo" in arms:
        result["grpo_diagnostics_per_step"] = {
            k: v for k, v in details["arm_grpo"]["diagnostics"].items() if k.endswith("per_step")}
    print_table(res, result)
    if args.png:
        plot(result, details, args.png)

    def write() -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True, default=str))

    write()  # before the speed-up measurement: the comparison is the claim
    if args.eval_set == "test" and args.overhead_episodes and "grpo" in arm_dirs:
        over = group_speedup(arm_dirs["grpo"], env, test[:4], args.generations,
                             args.overhead_rounds, args.grpo_temperature, args.max_prompt_tokens)
        result.update(over, group_speedup_model=str(arm_dirs["grpo"]))
        print(f"a group of {over['group_size']} in lockstep is {over['group_speedup']:.2f}x "
              "faster than one by one")
        write()


if __name__ == "__main__":
    main()
